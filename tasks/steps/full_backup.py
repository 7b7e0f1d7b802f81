"""Prefect `@task` wrappers for the full backup (`backup-all`).

Thin and side-effecting, so `cache_policy=NO_CACHE`; only a transient database error
(busy SQLite, dropped connection) is retried — the whole write starts again, and a
failed attempt leaves nothing under a final name.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.archive.full_content import ArchiveSummary
from tasks.archive.scan import ArchiveScan, scan_archive
from tasks.backup.full_backup import plan_from_settings, write_full_backup
from tasks.backup.read_back import take_read_behind
from tasks.backup.set_aside import set_aside_unproven
from tasks.core.atomic import partial_path
from tasks.core.errors import VerifyError
from tasks.core.naming import full_snapshot_name
from tasks.core.settings import Settings
from tasks.core.tiers import DEFAULT_TIER
from tasks.sources.base import DatabaseSource
from tasks.sources.sqlite import SqliteSource
from tasks.steps.backup import retry_transient_only, source_for
from tasks.stream.pipeline import Artifact


@task(
    name="write-full-backup",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient_only,
)
def write_full_backup_task(settings: Settings, tier: str) -> Artifact[ArchiveSummary]:
    """Database snapshot + uploads + config + data → one archive with its manifest."""
    return write_full_backup(
        source_for(settings), plan_from_settings(settings), tier, read_back=True
    )


@task(name="verify-full-backup", cache_policy=NO_CACHE)
def verify_full_backup(artifact: Artifact[ArchiveSummary]) -> ArchiveScan:
    """Read the new archive back once: checksum, stream, tar headers, manifest last."""
    return proven_read_back(artifact, "the archive")


def proven_read_back(artifact: Artifact[ArchiveSummary], what: str) -> ArchiveScan:
    """The read-back, and that what it read is the archive written: its one top folder
    is the backup's name and its manifest is the last member (a VerifyError if not)."""
    scan = read_back(artifact)
    if not scan.manifest_is_last or scan.top != artifact.detail.name:
        raise VerifyError(f"{artifact.path.name}: {what} read back is not the one written")
    return scan


def read_back(artifact: Artifact[ArchiveSummary]) -> ArchiveScan:
    """The read that followed the write from the disk (the same process wrote it), else
    a read of the file now."""
    behind = take_read_behind(artifact.path)
    if behind is None:
        return scan_archive(artifact.path, artifact.sha256)
    return behind.result(artifact.sha256)


@task(name="snapshot-full-before-restore", cache_policy=NO_CACHE)
def snapshot_full_before_restore(
    settings: Settings, database_readable: bool
) -> Artifact[ArchiveSummary]:
    """restore-all's copy of the live state, `full_before_restore_*.tar.gz`, read back
    once like a backup. A live SQLite database that is missing or unreadable (its raw
    copy is the `.before_restore.` file) goes in as an empty one, so the copy still
    restores with restore-all; a PostgreSQL dump that fails stops the restore."""
    plan = plan_from_settings(settings)
    with live_source(settings, database_readable) as source:
        artifact = write_full_backup(
            source, plan, DEFAULT_TIER["full"], full_snapshot_name, read_back=True
        )
    try:
        proven_read_back(artifact, "the pre-restore copy")
    except BaseException as exc:
        # Unproven, it must not count among the newest snapshots rotation keeps.
        error = set_aside_unproven(artifact.path, exc, "the pre-restore copy")
        if isinstance(error, VerifyError):
            error = VerifyError(f"{error}; nothing was restored")
        raise error from None
    return artifact


@contextlib.contextmanager
def live_source(settings: Settings, database_readable: bool) -> Iterator[DatabaseSource]:
    db = settings.db_path
    if settings.db_type == "postgres" or (db.is_file() and database_readable):
        yield source_for(settings)
        return
    empty = partial_path(settings.backups / "empty_live_database.db")
    connection = sqlite3.connect(empty)
    try:  # a table made and dropped: the file gets its SQLite header and no content
        connection.executescript("CREATE TABLE placeholder (x); DROP TABLE placeholder;")
    finally:
        connection.close()
    try:
        yield SqliteSource(empty, settings.backups)
    finally:
        empty.unlink(missing_ok=True)
