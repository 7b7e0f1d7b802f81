"""Prefect `@task` wrappers of the `pitr` wing (tasks/pitr/): base backups and recovery.

Thin: each calls one building block. Every one has a side effect or reads files that
change, so every one has `cache_policy=NO_CACHE`. None retries: pg_basebackup, an
extraction or a recovery run that failed is not cured by running it again at once.
Tasks take the settings object (secrets stay `SecretStr`), never a bare password.
wal-push and wal-fetch have no task: PostgreSQL calls them without Prefect.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.settings import Settings
from tasks.pitr.base_catalog import list_bases
from tasks.pitr.base_manifest import BaseContents, read_base_archive
from tasks.pitr.basebackup import BaseWal, take_base_backup, wait_for_base_wal
from tasks.pitr.pgserver import Owner
from tasks.pitr.recovery import LaidOut, RecoveryPlan, lay_out, plan_recovery
from tasks.pitr.recovery_verify import RecoveryCheck, run_pg_verifybackup, verify_recovery
from tasks.pitr.retention import BasePolicy
from tasks.pitr.rotation import PitrRotation, rotate_pitr
from tasks.pitr.wal_catalog import list_archive, read_histories
from tasks.sources.postgres import parse_database_url
from tasks.stream.pipeline import Artifact


@task(name="take-base-backup", cache_policy=NO_CACHE)
def take_base_backup_step(settings: Settings) -> Artifact[None]:
    """pg_basebackup streamed into base_postgres_*.tar.gz with its sidecar."""
    return take_base_backup(
        parse_database_url(settings.pitr_url()),
        settings.backups,
        settings.compression,
        settings.backup_compression_level,
    )


@task(name="verify-base-backup", cache_policy=NO_CACHE)
def verify_base_backup_step(path: Path, sha256: str) -> BaseContents:
    """Read the file back and check every member against the server's backup_manifest."""
    return read_base_archive(path, sha256)


@task(name="check-base-wal", cache_policy=NO_CACHE)
def check_base_wal_step(archive_dir: Path, contents: BaseContents) -> BaseWal:
    """Every segment from the base's start to its end is archived and sound."""
    return wait_for_base_wal(archive_dir, contents)


@task(name="rotate-pitr", cache_policy=NO_CACHE)
def rotate_pitr_step(settings: Settings, retention_days: int, now: datetime) -> PitrRotation:
    """Base backups past their tier's retention, and the WAL no kept base needs."""
    policy = BasePolicy(retention_days=retention_days)
    return rotate_pitr(settings.backups, settings.wal_archive, policy, now)


@task(name="plan-recovery", cache_policy=NO_CACHE)
def plan_recovery_step(settings: Settings, target: datetime) -> RecoveryPlan:
    """Choose the base, check the WAL from it to the target (nothing is written)."""
    archive = list_archive(settings.wal_archive)
    return plan_recovery(target, list_bases(settings.backups), archive, read_histories(archive))


@task(name="lay-out-data-dir", cache_policy=NO_CACHE)
def lay_out_step(
    plan: RecoveryPlan, data_dir: Path, restore_command: str, owner: Owner | None, now: datetime
) -> LaidOut:
    """Extract the base (checked file by file) and add the recovery settings."""
    return lay_out(plan, data_dir, restore_command, owner, now)


@task(name="pg-verifybackup", cache_policy=NO_CACHE)
def pg_verifybackup_step(bindir: Path, data_dir: Path) -> None:
    """The server's own check of the extracted files against the manifest."""
    run_pg_verifybackup(bindir, data_dir)


@task(name="verify-recovery", cache_policy=NO_CACHE)
def verify_recovery_step(
    data_dir: Path,
    target: datetime,
    bindir: Path,
    owner: Owner | None,
    dbname: str | None,
    users: tuple[str, ...],
) -> RecoveryCheck:
    """Start the restored directory on a free loopback port, wait for the target, check, stop."""
    return verify_recovery(data_dir, target, bindir, owner, dbname=dbname, users=users)
