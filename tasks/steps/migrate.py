"""Prefect tasks of the SQLite → PostgreSQL migration (thin wrappers over tasks.migrate).

Each takes the settings (secrets are `SecretStr`, masked in any repr) or plain paths,
never the target URL itself, so no secret reaches Prefect's task-run parameters. None
retries: a check is cheap to repeat by hand, and the migration is all or nothing — a
failed attempt leaves nothing behind, and the operator decides when to try again.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.settings import Settings
from tasks.migrate.envfile import EnvChange, update_env_file
from tasks.migrate.outcome import MigrationOutcome
from tasks.migrate.report import write_report
from tasks.migrate.source import SourceWatch, watch_source
from tasks.migrate.target import TargetInfo, check_target, describe, target_params
from tasks.migrate.transaction import Log, migrate


@task(name="check-migration-target", cache_policy=NO_CACHE)
def check_migration_target(settings: Settings) -> TargetInfo:
    """The target is reachable, UTF-8, writable and holds no tables (else exit 3)."""
    return check_target(settings.migration_target_url())


@task(name="watch-sqlite-source", cache_policy=NO_CACHE)
def watch_sqlite_source(path: Path) -> SourceWatch:
    """Open the SQLite database before the final backup, to see later whether it changed."""
    return watch_source(path)


@task(name="migrate-sqlite-to-postgres", cache_policy=NO_CACHE)
def migrate_database(watch: SourceWatch, settings: Settings, log: Log) -> MigrationOutcome:
    """Create, copy, verify and COMMIT in one transaction; MigrationFailed otherwise."""
    params = target_params(settings.migration_target_url())
    return migrate(watch, params, describe(params), log)


@task(name="write-migration-report", cache_policy=NO_CACHE)
def write_migration_report(backup_dir: Path, moment: dt.datetime, text: str) -> Path:
    return write_report(backup_dir, moment, text)


@task(name="update-env-file", cache_policy=NO_CACHE)
def point_env_at_postgres(settings: Settings, moment: dt.datetime) -> EnvChange:
    """`.env` gets ADMIN_DB_TYPE=postgres and the target URL; the old one is kept."""
    return update_env_file(settings.app_root / ".env", settings.migration_target_url(), moment)
