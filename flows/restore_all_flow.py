"""`restore-all`: the full restore (the guide's `restore_all.sh`), all or nothing.

Order: confirm; then, holding the backup folder's lock: verify the archive (checksum and
stream); extract it safely into a staging folder beside the live data and check every
file against MANIFEST.json; verify and stage the database artifact it holds; plan the
swaps (uploads, configuration files, application data — never the live database file,
its snapshots, pre-restore snapshots anywhere in the folders, or the backup folder);
write the pre-restore snapshot. Only then the swap phase (tasks/restore/all_swap.py): a
durable journal in BACKUP_DIR, the renames in quick succession (SQLite: the database
file is one of them; PostgreSQL: they run just before the checked transaction's COMMIT),
the proof that the live tree is what was staged and checked (`prove_restored_tree`),
the commit point, then the replaced copies deleted.
A failure before the commit point puts everything back; a kill -9 is rolled back or
finished by the next command that takes the backup lock (tasks/restore/journal.py).
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from prefect import flow

from flows.db_restore_flow import (
    RestoreResult,
    check_kind_matches,
    checksum_label,
    describe_database,
)
from flows.hooks import FAILURE_HOOKS
from flows.locking import job_lock
from flows.offsite_flow import fetch_for_restore, release_fetched
from flows.reporting import publish_table, run_logger
from flows.restore_confirm import require_confirmation
from tasks.archive.manifest.model import Manifest
from tasks.core.errors import VerifyError
from tasks.core.settings import Settings, load_settings
from tasks.restore.archive import (
    StagedArchive,
    discard_staging,
    new_staging_dir,
    prove_restored_tree,
)
from tasks.restore.files import (
    Swap,
    SwapJournal,
    SwapPlan,
    discard_incoming,
    find_pre_restore_snapshots,
    normal,
    plan_tree,
    remove_stale_staging,
    stage_beside,
)
from tasks.restore.source import resolve_backup_file
from tasks.restore.sqlite import SNAPSHOT_MARKER, companions, discard_staged
from tasks.steps.backup import verify_backup
from tasks.steps.restore import (
    check_sqlite,
    identify_backup,
    snapshot_postgres,
    snapshot_sqlite,
    stage_full_backup,
    stage_sqlite_copy,
)
from tasks.steps.restore_all import swap_all_postgres, swap_all_sqlite
from tasks.storage.destination import is_remote_url


def live_snapshots(settings: Settings, staging: Path) -> list[Path]:
    """Pre-restore snapshots in the restored folders (beside the database, or anywhere):
    in no backup, yet not live-only files to remove — they stay where they are."""
    db = settings.db_path
    beside_db = (
        [p for p in db.parent.iterdir() if p.name.startswith(db.name + SNAPSHOT_MARKER)]
        if db.parent.is_dir()
        else []
    )
    found = [*beside_db]
    found += find_pre_restore_snapshots(
        settings.app_data, exclude=[settings.backups, staging, settings.uploads]
    )
    found += find_pre_restore_snapshots(settings.uploads, exclude=[settings.backups, staging])
    return found


def protected_paths(
    settings: Settings, staging: Path, staged_db: Path | None, snapshots: list[Path]
) -> list[Path]:
    """What a data-folder swap must never move: restored on its own, or not ours to touch."""
    db = settings.db_path
    return [
        db,
        *companions(db),
        *snapshots,
        settings.uploads,
        settings.backups,
        *settings.config_paths,
        staging,
        *([staged_db] if staged_db is not None else []),
    ]


def _inside(path: Path, folder: Path) -> bool:
    return normal(folder) in normal(path).parents


def plan_file_swaps(
    settings: Settings, staged: StagedArchive, staged_db: Path | None
) -> tuple[SwapPlan, list[str]]:
    """Uploads, configuration files and application data, each from its archive folder."""
    root = staged.root
    plan = SwapPlan()
    notes: list[str] = []
    snapshots = live_snapshots(settings, staged.staging)
    in_uploads = [p for p in snapshots if _inside(p, settings.uploads)]
    if (root / "uploads").is_dir() and not (root / "uploads").is_symlink():
        if in_uploads:  # swapped entry by entry around the snapshots, which stay
            uploads = plan_tree(settings.uploads, root / "uploads", in_uploads, "uploads")
            plan.swaps += uploads.swaps
            notes += uploads.skipped
        else:
            plan.swaps.append(Swap(settings.uploads, root / "uploads", "uploads"))
    else:
        notes.append("uploads: not in the backup; live uploads kept")
    config_dir = root / "config"
    wanted = {path.name for path in settings.config_paths}
    for path in settings.config_paths:
        incoming = config_dir / path.name
        if incoming.exists() or incoming.is_symlink():  # a file, or a folder named in CONFIG_FILES
            plan.swaps.append(Swap(path, incoming, f"config/{path.name}"))
        else:
            notes.append(f"config/{path.name}: not in the backup; live file kept")
    if config_dir.is_dir():
        notes += [
            f"config/{extra.name}: in the backup but not in CONFIG_FILES; not restored"
            for extra in sorted(config_dir.iterdir())
            if extra.name not in wanted
        ]
    if (root / "data").is_dir() and not (root / "data").is_symlink():
        data = plan_tree(
            settings.app_data,
            root / "data",
            protected_paths(settings, staged.staging, staged_db, snapshots),
            "data",
        )
        plan.swaps += data.swaps
        notes += data.skipped
    else:
        notes.append("data: not in the backup; live application data kept")
    return plan, notes


def restored_parts(manifest: Manifest, swapped: list[str]) -> list[str]:
    """One short phrase per part, e.g. 'uploads (12 files)'."""
    parts = ["database"] if manifest.database is not None else []
    for section in ("uploads", "config", "data"):
        if any(label == section or label.startswith(section + "/") for label in swapped):
            count = manifest.entries.count(section=section, kind="file")
            parts.append(f"{section} ({count} files)")
    return parts


@flow(name="restore-all", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
def restore_all(backup_file: str, confirm: bool = False) -> RestoreResult:
    """Restore database, uploads, configuration and application data from a full backup."""
    started = time.monotonic()
    settings = load_settings()
    if is_remote_url(backup_file):  # s3://..., user@host:/...: fetched, verified, decrypted
        path = fetch_for_restore(backup_file, settings)
    else:
        path = resolve_backup_file(backup_file, settings.backups)
    confirmed_by = require_confirmation(confirm, "restore-all", path.name, full=True)
    logger = run_logger()
    with job_lock(settings, "restore-all"):
        verified = verify_backup(path)
        if identify_backup(path, verified.compression) != "tar":
            raise VerifyError(
                f"{path.name} is not a full backup archive; restore a database backup with `db-restore`"
            )
        remove_stale_staging(settings.app_data.parent)
        staging = new_staging_dir(settings.app_data)
        swapper = SwapJournal()
        staged_db: Path | None = None
        plan = SwapPlan()
        try:
            staged = stage_full_backup(path, staging)
            manifest = staged.manifest
            # Once renamed in, the live tree must be proven to be what was staged and
            # checked, before the restore's commit point (else it is all put back).
            swapper.proof = partial(prove_restored_tree, staged)
            if staged.database is None:
                raise VerifyError(f"{path.name}: the manifest records no database backup")
            db_file = verify_backup(staged.database, manifest.database.sha256)  # type: ignore[union-attr]
            db_kind = identify_backup(staged.database, db_file.compression)
            check_kind_matches(db_kind, settings, f"{path.name}: {staged.database.name}")
            expected = manifest.database.tables if manifest.database else None  # always set here
            recorded_in = "MANIFEST.json"
            sqlite_copy = None
            if db_kind == "sqlite":
                sqlite_copy = stage_sqlite_copy(
                    db_file.path, db_file.compression, settings.db_path, expected, recorded_in
                )
                staged_db = sqlite_copy.path
            plan, notes = plan_file_swaps(settings, staged, staged_db)
            plan = stage_beside(plan, swapper.token)

            discard = [staging, *([staged_db] if staged_db is not None else [])]
            if sqlite_copy is not None:
                snapshot, readable = snapshot_sqlite(settings.db_path)
            else:
                snapshot = snapshot_postgres(settings)
            # From here on every live change is journalled in BACKUP_DIR; a kill is
            # undone or finished by the next command that takes the lock.
            if sqlite_copy is not None:
                swapped = swap_all_sqlite(
                    settings, plan, swapper, sqlite_copy, readable, snapshot, discard
                )
                tables: dict[str, int] = {}
            else:
                swapped, tables = swap_all_postgres(
                    settings,
                    plan,
                    swapper,
                    db_file.path,
                    db_file.compression,
                    db_file.sha256,
                    expected,
                    discard,
                )
            if sqlite_copy is not None:
                tables = check_sqlite(settings.db_path)
        finally:
            if staged_db is not None:
                discard_staged(staged_db)
            discard_incoming(plan)
            discard_staging(staging)
    release_fetched(path, settings)
    result = RestoreResult(
        job="restore-all",
        backup_file=backup_file if is_remote_url(backup_file) else str(path),
        sha256=verified.sha256,
        checksum=checksum_label(verified, "sidecar") + "; every file against MANIFEST.json",
        db_type=settings.db_type,
        database=describe_database(settings),
        pre_restore_snapshot=str(snapshot) if snapshot else None,
        tables=tables,
        counts_checked_against=recorded_in,
        seconds=time.monotonic() - started,
        confirmed_by=confirmed_by,
        restored=restored_parts(manifest, swapped),
        notes=notes,
    )
    for line in result.summary_lines():
        logger.info(line)
    publish_table("restore-all-summary", result.table_rows(), f"Full restore from {path.name}")
    return result
