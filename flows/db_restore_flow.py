"""`db-restore`: the database-only restore (the guide's `db_restore.sh`), safe by construction.

Order: confirm; then, holding the backup folder's lock, verify the backup, stage and
check the restored copy (SQLite), write the pre-restore snapshot, swap in (SQLite: one
rename; PostgreSQL: one transaction that checks the recorded row counts before it
commits), and verify the live result. SQLite verifies the whole file first; PostgreSQL
checks its format and sidecar sha256 first and its stream while it loads (one read of
the file instead of two), withholding COMMIT until the whole file was read and matched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow

from flows.hooks import FAILURE_HOOKS
from flows.locking import job_lock
from flows.offsite_flow import release_fetched
from flows.reporting import publish_table, with_progress
from flows.restore_confirm import cancel_when_declined
from flows.restore_job import start_restore
from tasks.catalog.listing import LATEST
from tasks.core.errors import RestoreError, VerifyError
from tasks.core.settings import Settings
from tasks.restore.postgres import discard_snapshot
from tasks.restore.source import (
    ContentKind,
    RecordedCounts,
    recorded_counts,
)
from tasks.restore.sqlite import discard_staged
from tasks.sources.ownership import KEEP_ALL, Leave, Ownership
from tasks.sources.postgres import PostgresSource
from tasks.steps.backup import verify_backup
from tasks.steps.restore import (
    check_backup_checksum,
    check_roles,
    check_sqlite,
    identify_backup,
    load_postgres,
    snapshot_postgres,
    snapshot_sqlite,
    stage_sqlite_copy,
    swap_sqlite,
)
from tasks.verify.backup_file import VerifiedFile


@dataclass(frozen=True)
class RestoreResult:
    """What a restore did: from which file, into what, and where the old state was kept."""

    job: str
    backup_file: str
    sha256: str
    checksum: str  # what the sha256 was checked against
    db_type: str
    database: str  # the restored database, without secrets
    pre_restore_snapshot: str | None
    tables: dict[str, int]
    counts_checked_against: str | None
    seconds: float
    confirmed_by: str
    restored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    replaced_state_copy: str | None = None  # restore-all: full_before_restore_*.tar.gz
    privileges: str | None = None  # PostgreSQL: the owners-and-privileges check
    live_only_removed: int | None = None  # restore-all: live files not in the backup

    def summary_lines(self) -> list[str]:
        rows = sum(self.tables.values())
        lines = [
            "Restore completed",
            f"  from:      {self.backup_file}",
            f"  sha256:    {self.sha256} ({self.checksum})",
            f"  database:  {self.database}",
            f"  tables:    {len(self.tables)} ({rows} rows)",
            "  row counts: "
            + (
                f"match {self.counts_checked_against}"
                if self.counts_checked_against
                else "not recorded in the backup; not compared"
            ),
            "  pre-restore snapshot: "
            + (self.pre_restore_snapshot or "none (there was no live database)"),
        ]
        if self.privileges is not None:
            lines.insert(6, f"  owners and privileges: {self.privileges}")
        if self.restored:
            lines.append(f"  restored:  {', '.join(self.restored)}")
        if self.replaced_state_copy is not None:
            lines.append(
                f"  replaced state kept: {self.replaced_state_copy} (restore-all brings it back)"
            )
            lines.append(
                f"  live-only files removed: {self.live_only_removed or 0} "
                "(not in the backup; in the copy above)"
            )
        lines += [f"  note:      {note}" for note in self.notes]
        lines.append(f"  duration:  {self.seconds:.1f} s")
        return lines

    def table_rows(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = [
            {"item": "backup", "value": self.backup_file},
            {"item": "sha256", "value": f"{self.sha256} ({self.checksum})"},
            {"item": "database", "value": self.database},
            {"item": "tables", "value": len(self.tables)},
            {"item": "rows", "value": sum(self.tables.values())},
            {"item": "row counts", "value": self.counts_checked_against or "not recorded"},
            {"item": "pre-restore snapshot", "value": self.pre_restore_snapshot or "none"},
            {"item": "restored", "value": ", ".join(self.restored) or "database"},
            {"item": "confirmed by", "value": self.confirmed_by},
            {"item": "duration_s", "value": f"{self.seconds:.2f}"},
        ]
        if self.privileges is not None:
            rows.insert(6, {"item": "owners and privileges", "value": self.privileges})
        if self.replaced_state_copy is not None:
            rows.append({"item": "replaced state kept", "value": self.replaced_state_copy})
            rows.append({"item": "live-only files removed", "value": self.live_only_removed or 0})
        rows += [{"item": "note", "value": note} for note in self.notes]
        return rows


def describe_database(settings: Settings) -> str:
    if settings.db_type == "postgres":
        return PostgresSource(settings.database_url()).describe()
    return f"SQLite {settings.db_path}"


def check_kind_matches(kind: ContentKind, settings: Settings, name: str) -> None:
    """The backup must hold the kind of database this installation runs."""
    if kind == "tar":
        raise RestoreError(f"{name} is a full backup; restore it with `restore-all`")
    held = "sqlite" if kind == "sqlite" else "postgres"
    if held != settings.db_type:
        what = "a SQLite database" if held == "sqlite" else "a PostgreSQL dump"
        raise RestoreError(
            f"{name} holds {what}, but ADMIN_DB_TYPE={settings.db_type}; nothing was changed"
        )


def checksum_label(verified: VerifiedFile, against: str) -> str:
    return against if verified.sidecar_checked else "no checksum recorded; stream checked"


@dataclass(frozen=True)
class DatabaseRestore:
    snapshot: Path | None
    tables: dict[str, int]


def restore_database(
    settings: Settings,
    verified: VerifiedFile,
    kind: ContentKind,
    expected: dict[str, int] | None,
    recorded_in: str,
) -> DatabaseRestore:
    """The database part shared by both restores (called inside a flow, under the lock)."""
    if kind == "sqlite":
        db_path = settings.db_path
        staged = stage_sqlite_copy(
            verified.path, verified.compression, db_path, expected, recorded_in
        )
        try:
            snapshot, readable = snapshot_sqlite(db_path)
            swap_sqlite(staged, db_path, readable, snapshot)
        finally:
            discard_staged(staged.path)  # gone already when the swap succeeded
        return DatabaseRestore(snapshot, check_sqlite(db_path))
    pg_snapshot = snapshot_postgres(settings)
    loaded = load_postgres(settings, verified.path, verified.compression, verified.sha256, expected)
    return DatabaseRestore(pg_snapshot, loaded.tables)


def left_out_note(leave: Leave) -> list[str]:
    """The summary's word on what a restore was asked to leave out."""
    notes = []
    if leave.owners:
        notes.append(
            "the backup's owners were left out, as asked: its objects belong to the restoring role"
        )
    if leave.privileges:
        notes.append("the backup's GRANTs and REVOKEs were left out, as asked: default privileges")
    return notes


@dataclass(frozen=True)
class VerifiedRestore:
    verified: VerifiedFile
    recorded: RecordedCounts
    done: DatabaseRestore


def restore_postgres_in_one_pass(
    settings: Settings, path: Path, leave: Leave = KEEP_ALL
) -> VerifiedRestore:
    """PostgreSQL: the file is read once, its stream checked and hashed while it loads.

    Before anything is touched only what needs no inflating is checked (format, sidecar
    sha256); damage found during the load rolls the transaction back, and the snapshot
    this run just wrote — of a database that did not change — is removed again, so that a
    bad file leaves everything as it was.
    """
    checked = check_backup_checksum(path)
    kind = identify_backup(path, checked.compression)
    check_kind_matches(kind, settings, path.name)
    recorded = (
        recorded_counts(path, checked.sha256)
        if checked.sha256 is not None
        else RecordedCounts(None, "none recorded")
    )
    ownership = Ownership(leave, recorded.privileges)
    check_roles(settings, ownership)
    snapshot = snapshot_postgres(settings)
    try:
        loaded = load_postgres(
            settings, path, checked.compression, checked.sha256, recorded.tables, ownership
        )
    except VerifyError:
        if snapshot is not None:
            discard_snapshot(snapshot)
        raise
    verified = VerifiedFile(
        path,
        path.stat().st_size,
        loaded.sha256,
        loaded.content_size,
        checked.compression,
        checked.sha256 is not None,
    )
    return VerifiedRestore(verified, recorded, DatabaseRestore(snapshot, loaded.tables))


def privileges_line(leave: Leave, recorded: dict[str, list[Any]] | None) -> str:
    """What the summary says of the restored tables' owners and privileges (PostgreSQL).
    A committed restore with a record passed its check block's comparison."""
    if leave:
        return "left out, as asked (not compared)"
    if recorded is None:
        return "not recorded in the backup; not compared"
    return f"match the backup ({len(recorded)} tables)"


@flow(name="db-restore", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
@with_progress("db-restore")
@cancel_when_declined
def db_restore(
    backup_file: str = LATEST,
    confirm: bool = False,
    as_of: str | None = None,
    no_owner: bool = False,
    no_privileges: bool = False,
) -> RestoreResult:
    """Restore the admin database from a `.db.gz`/`.sql.gz` backup (ours or hand-made).
    PostgreSQL: `no_owner` leaves the backup's owners out (the objects belong to the
    restoring role), `no_privileges` its GRANTs and REVOKEs, as pg_restore's -O and -x."""
    leave = Leave(owners=no_owner, privileges=no_privileges)
    start = start_restore(backup_file, confirm, "db-restore", full=False, as_of=as_of)
    settings, path, logger = start.settings, start.path, start.logger
    with job_lock(settings, "db-restore"):
        if settings.db_type == "postgres":
            one_pass = restore_postgres_in_one_pass(settings, path, leave)
            verified, recorded, done = one_pass.verified, one_pass.recorded, one_pass.done
        else:
            verified = verify_backup(path)
            kind = identify_backup(path, verified.compression)
            check_kind_matches(kind, settings, path.name)
            recorded = recorded_counts(path, verified.sha256)
            done = restore_database(settings, verified, kind, recorded.tables, recorded.source)
    release_fetched(path, settings)
    result = RestoreResult(
        job="db-restore",
        backup_file=start.shown_as,
        sha256=verified.sha256,
        checksum=checksum_label(verified, "sidecar"),
        db_type=settings.db_type,
        database=describe_database(settings),
        pre_restore_snapshot=str(done.snapshot) if done.snapshot else None,
        tables=done.tables,
        counts_checked_against=recorded.source if recorded.tables is not None else None,
        seconds=time.monotonic() - start.started,
        confirmed_by=start.confirmed_by,
        restored=["database"],
        notes=left_out_note(leave) if settings.db_type == "postgres" else [],
        privileges=(
            privileges_line(leave, recorded.privileges) if settings.db_type == "postgres" else None
        ),
    )
    for line in result.summary_lines():
        logger.info(line)
    publish_table("db-restore-summary", result.table_rows(), f"Database restore from {path.name}")
    return result
