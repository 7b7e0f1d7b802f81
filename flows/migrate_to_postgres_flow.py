"""`migrate-sqlite-to-postgres`: the guide's migration steps 1–9, verified value by value.

Order: the target is checked (reachable, UTF-8, writable, holding no tables: else exit 3,
nothing written) before the operator is asked; then the SQLite database is watched, its
final db-backup taken (guide step 1, tier `monthly` so that rotation keeps it for a
year), and, holding the backup folder's lock, the migration runs in one PostgreSQL
transaction that COMMITs only after every table compared equal (else exit 6, nothing
committed). The report goes to stdout, to a Prefect markdown artifact and to
`$BACKUP_DIR/reports/migration_YYYYMMDD_HHMMSS.md`. With `update_env`, `.env` is pointed
at PostgreSQL (the old one kept) and the first PostgreSQL db-backup is taken (step 9).

The target URL is a secret, so it is no flow parameter: the flow reads it from the
settings (`MIGRATE_TARGET_DATABASE_URL`, which the CLI's `--target-url` sets in its own
process environment, or `.env` / the worker's environment for a deployment run).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.input import RunInput
from pydantic import Field

from flows.db_backup_flow import db_backup
from flows.hooks import FAILURE_HOOKS
from flows.reporting import run_logger
from flows.restore_confirm import (
    QUESTION,
    cancel_when_declined,
    is_yes,
    started_by_deployment,
    wait_for_operator,
)
from tasks.core import clock
from tasks.core.errors import AbortedByOperator, ConfigError
from tasks.core.lock import backup_dir_lock
from tasks.core.redact import redact
from tasks.core.settings import Settings, load_settings
from tasks.migrate.envfile import shown_lines
from tasks.migrate.outcome import MigrationFailed, MigrationOutcome
from tasks.migrate.report import ReportContext, render
from tasks.migrate.target import TargetInfo, check_target, target_params
from tasks.migrate.transaction import still_empty
from tasks.steps.migrate import (
    check_migration_target,
    migrate_database,
    point_env_at_postgres,
    watch_sqlite_source,
    write_migration_report,
)

TARGET_VARIABLE = "MIGRATE_TARGET_DATABASE_URL"
FINAL_BACKUP_TIER = "monthly"
CONFIRM_TIMEOUT_SECONDS = 3600
CONFIRM_POLL_SECONDS = 2


@dataclass(frozen=True)
class MigrationResult:
    source: str
    target: str  # user@host:port/db, no secret
    tables: dict[str, int]  # PostgreSQL table -> rows
    not_translated: int
    final_backup: str
    report: str  # the report file
    report_text: str
    env_updated: bool
    env_kept_as: str | None
    first_postgres_backup: str | None
    seconds: float
    confirmed_by: str
    notes: list[str] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        return [self.report_text.rstrip(), "", f"Report written to {self.report}"]


# -- confirmation -------------------------------------------------------------------------


def warning_lines(target: TargetInfo, settings: Settings, update_env: bool) -> list[str]:
    lines = [
        f"⚠️  This will copy the SQLite database {settings.db_path} into {target.description} "
        f"(schema {target.schema}, empty).",
        "A final backup of the SQLite database is taken first; the SQLite database itself is not changed.",
        "Stop the application first: the migration refuses to commit if SQLite changes while it runs.",
    ]
    if update_env:
        lines.append(
            f"Then {settings.app_root / '.env'} is pointed at PostgreSQL (the old one is kept) "
            "and the first PostgreSQL backup is taken."
        )
    return lines


def ask_operator(
    target: TargetInfo, settings: Settings, update_env: bool,
    stdin: TextIO | None = None, stdout: TextIO | None = None,
) -> bool:
    """Print what will happen, read one line; True only for `yes`. End of input is a no."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    stdout.write("\n".join([*warning_lines(target, settings, update_env), ""]) + "\n" + QUESTION)
    stdout.flush()
    try:
        answer = stdin.readline()
    except (OSError, ValueError):
        answer = ""
    if not answer.endswith("\n"):
        stdout.write("\n")
        stdout.flush()
    return is_yes(answer)


def not_confirmed() -> AbortedByOperator:
    return AbortedByOperator(
        "migrate-to-postgres aborted: not confirmed, nothing was written "
        "(answer yes, pass --yes, or call it with confirm=True)"
    )


class MigrationConfirmation(RunInput):
    """The form the Prefect UI shows when a migration run pauses."""

    confirm: bool = Field(
        default=False,
        description="Tick to copy the SQLite database into the empty PostgreSQL target. Leave unticked to abort.",
    )


def require_confirmation(confirm: bool, target: TargetInfo, settings: Settings, update_env: bool) -> str:
    if confirm:
        return "confirm=True"
    if not started_by_deployment():
        raise not_confirmed()
    description = "\n\n".join(
        [*warning_lines(target, settings, update_env), "Tick **confirm** and resume to continue; resume without it to abort."]
    )
    form = MigrationConfirmation.with_initial_data(description=description, confirm=False)
    wait_for_operator(form, "migrate-to-postgres", "nothing was written")
    return "operator, in the Prefect UI"


# -- checks shared by the CLI (before its question) and the flow ---------------------------


def source_settings() -> Settings:
    settings = load_settings()
    if settings.db_type != "sqlite":
        raise ConfigError(
            "ADMIN_DB_TYPE is postgres already: the migration copies the SQLite database "
            "ADMIN_DB_PATH into PostgreSQL, so run it while ADMIN_DB_TYPE=sqlite"
        )
    settings.migration_target_url()  # ConfigError when there is none
    if not settings.db_path.is_file():
        raise ConfigError(f"ADMIN_DB_PATH: SQLite database {settings.db_path} does not exist")
    return settings


def check_before_asking() -> tuple[Settings, TargetInfo]:
    """What the CLI checks before its question: settings, source, target (exit 3)."""
    settings = source_settings()
    return settings, check_target(settings.migration_target_url())


# -- the flow ----------------------------------------------------------------------------


def _publish(text: str, description: str) -> None:
    if FlowRunContext.get() is not None:
        create_markdown_artifact(markdown=redact(text), key="migration-report", description=redact(description))


def _failure_text(failed: MigrationFailed, settings: Settings, final: str) -> str:
    empty = still_empty(target_params(settings.migration_target_url()))
    state = {
        True: "A new session sees the target empty.",
        False: "WARNING: a new session sees relations in the target; look at it before trying again.",
        None: "The target could not be reached to confirm it is empty.",
    }[empty]
    context = ReportContext(clock.utc_now(), final_backup=final, extra=(state,))
    return render(failed.outcome, context)


def _environment_override(url: str) -> str | None:
    """After `.env` was written: None when the settings now read PostgreSQL at the target,
    else why not (the environment wins over `.env`)."""
    fresh = load_settings()
    if fresh.db_type == "postgres" and fresh.admin_database_url is not None and fresh.database_url() == url:
        return None
    return (
        "ADMIN_DB_TYPE or ADMIN_DATABASE_URL is set in the environment and wins over .env: "
        "change it there too"
    )


@contextlib.contextmanager
def _settings_for_target(url: str) -> Iterator[None]:
    """db-backup reads its settings itself: for the first PostgreSQL backup (step 9) they
    must name the target whatever the environment says, so this process's environment
    names it for the length of that call."""
    names = ("ADMIN_DB_TYPE", "ADMIN_DATABASE_URL")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({"ADMIN_DB_TYPE": "postgres", "ADMIN_DATABASE_URL": url})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@flow(name="migrate-sqlite-to-postgres", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
@cancel_when_declined
def migrate_to_postgres(confirm: bool = False, update_env: bool = False) -> MigrationResult:
    """Copy the SQLite admin database into an empty PostgreSQL database, verified value by
    value before COMMIT (the target comes from MIGRATE_TARGET_DATABASE_URL)."""
    started = time.monotonic()
    moment = clock.utc_now()
    settings = source_settings()
    logger = run_logger()
    target = check_migration_target(settings)
    confirmed_by = require_confirmation(confirm, target, settings, update_env)
    watch = watch_sqlite_source(settings.db_path)
    try:
        final = db_backup(tier=FINAL_BACKUP_TIER)
        logger.info("final SQLite backup: %s", final.path)
        with backup_dir_lock(settings.backups, "migrate-to-postgres", settings.backup_lock_timeout, must_write=True):
            try:
                outcome: MigrationOutcome = migrate_database(watch, settings, logger.info)
            except MigrationFailed as failed:
                text = _failure_text(failed, settings, final.path)
                path = write_migration_report(settings.backups, moment, text)
                _publish(text, "SQLite → PostgreSQL migration: rolled back")
                raise type(failed.error)(f"{failed.error} (report: {path})") from None
    finally:
        watch.close()
    url = settings.migration_target_url()
    change = None
    first_backup = None
    env_problem = None
    if update_env:
        change = point_env_at_postgres(settings, moment)
        env_problem = _environment_override(url)
        with _settings_for_target(url):
            first_backup = db_backup().path
    context = ReportContext(
        moment,
        final_backup=final.path,
        env_lines=shown_lines(url),
        env_written=(str(change.kept_as) if change and change.kept_as else ("(there was no .env)" if change else None)),
        env_note=env_problem,
        first_postgres_backup=first_backup,
    )
    text = render(outcome, context)
    path = write_migration_report(settings.backups, moment, text)
    _publish(text, f"SQLite → PostgreSQL migration into {target.description}")
    refused = sum(1 for s in outcome.steps if not s.done)
    logger.info(
        "migrated %d tables, %d rows into %s; %d item(s) not translated; report %s",
        len(outcome.tables), outcome.rows, target.description, refused, path,
    )
    if env_problem is not None:
        raise ConfigError(
            f"migrated and committed, .env updated and the first PostgreSQL backup taken, but "
            f"{env_problem} (report: {path})"
        )
    return MigrationResult(
        source=str(settings.db_path),
        target=target.description,
        tables={t.plan.pg_name: t.check.pg_rows for t in outcome.tables},
        not_translated=refused,
        final_backup=final.path,
        report=str(path),
        report_text=text,
        env_updated=change is not None,
        env_kept_as=str(change.kept_as) if change and change.kept_as else None,
        first_postgres_backup=first_backup,
        seconds=time.monotonic() - started,
        confirmed_by=confirmed_by,
    )
