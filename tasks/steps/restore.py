"""Prefect `@task` wrappers for the restores: one visible step each in the flow run.

Every task changes something or reads a file whose content may change, so every one has
`cache_policy=NO_CACHE`. None is retried: a restore step that failed has been rolled
back, and running it again unasked is the operator's decision. Tasks take the settings
object (secrets stay `SecretStr`), never a bare URL or password.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.atomic import OUT_OF_SPACE
from tasks.core.errors import OutOfSpaceError
from tasks.core.settings import Settings
from tasks.restore.archive import StagedArchive, stage_archive
from tasks.restore.postgres import (
    LoadedDump,
    ensure_database,
    restore_postgres,
    snapshot_before_restore,
)
from tasks.restore.roles import check_restore_roles
from tasks.restore.source import CheckedFile, ContentKind, check_before_load, sniff_content
from tasks.restore.sqlite import (
    StagedSqlite,
    check_counts,
    check_live,
    discard_staged,
    no_space_for_restore,
    settle_live_database,
    stage_sqlite,
    swap_in,
)
from tasks.restore.sqlite import snapshot_before_restore as sqlite_snapshot
from tasks.sources.ownership import AS_DUMPED, Ownership
from tasks.sources.postgres import parse_database_url


def postgres_params(settings: Settings) -> dict[str, str]:
    return parse_database_url(settings.database_url())


@task(name="check-backup-checksum", cache_policy=NO_CACHE)
def check_backup_checksum(path: Path) -> CheckedFile:
    """Format and sidecar sha256 before anything is touched; the stream is checked as it loads."""
    return check_before_load(path)


@task(name="identify-backup", cache_policy=NO_CACHE)
def identify_backup(path: Path, compression: str) -> ContentKind:
    return sniff_content(path, compression)


@task(name="stage-sqlite", cache_policy=NO_CACHE)
def stage_sqlite_copy(
    artifact: Path,
    compression: str,
    db_path: Path,
    expected: dict[str, int] | None,
    recorded_in: str,
) -> StagedSqlite:
    """Decompress beside the live file, integrity_check, compare row counts."""
    staged = stage_sqlite(artifact, compression, db_path)
    if expected is not None:
        try:
            check_counts(staged.tables, expected, recorded_in)
        except BaseException:
            discard_staged(staged.path)
            raise
    return staged


@task(name="pre-restore-snapshot-sqlite", cache_policy=NO_CACHE)
def snapshot_sqlite(db_path: Path) -> tuple[Path | None, bool]:
    return sqlite_snapshot(db_path)


@task(name="swap-in-sqlite", cache_policy=NO_CACHE)
def swap_sqlite(staged: StagedSqlite, db_path: Path, readable: bool, snapshot: Path | None) -> None:
    settle_live_database(db_path, readable, snapshot)
    swap_in(staged, db_path)


@task(name="verify-restored-sqlite", cache_policy=NO_CACHE)
def check_sqlite(db_path: Path) -> dict[str, int]:
    return check_live(db_path)


@task(name="pre-restore-snapshot-postgres", cache_policy=NO_CACHE)
def snapshot_postgres(settings: Settings) -> Path | None:
    """The live database dumped to BACKUP_DIR; None when it did not exist (it is created)."""
    params = postgres_params(settings)
    if ensure_database(params):
        return None
    try:
        return snapshot_before_restore(params, settings.backups).path
    except OutOfSpaceError as exc:
        raise no_space_for_restore(exc.folder, "for the pre-restore snapshot") from None


@task(name="check-restore-roles", cache_policy=NO_CACHE)
def check_roles(settings: Settings, ownership: Ownership) -> None:
    """The roles the backup's owners and GRANTs name exist, and the restoring role may
    act for every owner — asked before the pre-restore snapshot is taken."""
    check_restore_roles(postgres_params(settings), ownership)


@task(name="restore-postgres", cache_policy=NO_CACHE)
def load_postgres(
    settings: Settings,
    artifact: Path,
    compression: str,
    sha256: str | None,
    expected: dict[str, int] | None,
    ownership: Ownership = AS_DUMPED,
) -> LoadedDump:
    """One transaction: empty, reload (reading, checking and hashing the file in the same
    pass), check row counts, commit — or change nothing."""
    return restore_postgres(
        postgres_params(settings), artifact, compression, sha256, expected, ownership
    )


@task(name="stage-full-backup", cache_policy=NO_CACHE)
def stage_full_backup(archive: Path, staging: Path) -> StagedArchive:
    """Unpack and check beside the live data; a full disk there is a restore error that
    names the folder (the flow removes the staging folder: nothing live was touched)."""
    try:
        return stage_archive(archive, staging)
    except OSError as exc:
        if exc.errno in OUT_OF_SPACE:
            raise no_space_for_restore(
                staging.parent, f"to unpack {archive.name} beside the live data"
            ) from None
        raise
