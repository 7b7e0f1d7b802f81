"""`restore-all`: the full restore (the guide's `restore_all.sh`), all or nothing.

Order: confirm; then, holding the backup folder's lock: verify the archive (checksum and
stream); extract it safely into a staging folder beside the live data and check every
file against MANIFEST.json; verify and stage the database artifact it holds; plan the
swaps (uploads, configuration files, application data — never the live database file,
its snapshots, pre-restore snapshots anywhere in the folders, or the backup folder);
write the pre-restore snapshots (the database's, and `full_before_restore_*.tar.gz` of
everything the swap replaces, read back). Only then the swap phase (tasks/restore/all_swap.py): a
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
    left_out_note,
    privileges_line,
)
from flows.hooks import FAILURE_HOOKS
from flows.locking import job_lock
from flows.offsite_flow import release_fetched
from flows.reporting import publish_table, with_progress
from flows.restore_confirm import cancel_when_declined
from flows.restore_job import start_restore
from tasks.catalog.listing import LATEST
from tasks.core.errors import VerifyError
from tasks.restore.archive import discard_staging, new_staging_dir, prove_restored_tree
from tasks.restore.files import (
    SwapJournal,
    SwapPlan,
    discard_incoming,
    remove_stale_staging,
    stage_beside,
)
from tasks.restore.plan import live_only_files, plan_file_swaps, restored_parts, set_id_note
from tasks.restore.sqlite import discard_staged
from tasks.sources.ownership import Leave, Ownership
from tasks.steps.backup import verify_backup
from tasks.steps.full_backup import snapshot_full_before_restore
from tasks.steps.restore import (
    check_roles,
    check_sqlite,
    identify_backup,
    snapshot_postgres,
    snapshot_sqlite,
    stage_full_backup,
    stage_sqlite_copy,
)
from tasks.steps.restore_all import swap_all_postgres, swap_all_sqlite


@flow(name="restore-all", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
@with_progress("restore-all")
@cancel_when_declined
def restore_all(
    backup_file: str = LATEST,
    confirm: bool = False,
    as_of: str | None = None,
    no_owner: bool = False,
    no_privileges: bool = False,
) -> RestoreResult:
    """Restore database, uploads, configuration and application data from a full backup.
    PostgreSQL: `no_owner`/`no_privileges` as db-restore's."""
    leave = Leave(owners=no_owner, privileges=no_privileges)
    start = start_restore(backup_file, confirm, "restore-all", full=True, as_of=as_of)
    settings, path, logger = start.settings, start.path, start.logger
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
            ownership = Ownership(leave, manifest.database.privileges if manifest.database else None)
            recorded_in = "MANIFEST.json"
            sqlite_copy = None
            if db_kind == "sqlite":
                sqlite_copy = stage_sqlite_copy(
                    db_file.path, db_file.compression, settings.db_path, expected, recorded_in
                )
                staged_db = sqlite_copy.path
            plan, notes = plan_file_swaps(settings, staged, staged_db)
            notes += set_id_note(staged)
            removed = live_only_files(plan)  # counted before anything moves
            plan = stage_beside(plan, swapper.token)

            discard = [staging, *([staged_db] if staged_db is not None else [])]
            if sqlite_copy is not None:
                snapshot, readable = snapshot_sqlite(settings.db_path)
            else:
                check_roles(settings, ownership)
                snapshot, readable = snapshot_postgres(settings), True
            # What the swap replaces, kept first in the full-backup format: the live-only
            # files it removes are deleted only after this copy is complete and read back.
            kept = snapshot_full_before_restore(settings, readable)
            logger.info("current state kept as %s before the swap", kept.path)
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
                    ownership,
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
        backup_file=start.shown_as,
        sha256=verified.sha256,
        checksum=checksum_label(verified, "sidecar") + "; every file against MANIFEST.json",
        db_type=settings.db_type,
        database=describe_database(settings),
        pre_restore_snapshot=str(snapshot) if snapshot else None,
        tables=tables,
        counts_checked_against=recorded_in,
        seconds=time.monotonic() - start.started,
        confirmed_by=start.confirmed_by,
        restored=restored_parts(manifest, swapped),
        notes=notes + (left_out_note(leave) if settings.db_type == "postgres" else []),
        replaced_state_copy=str(kept.path),
        privileges=(
            privileges_line(leave, manifest.database.privileges if manifest.database else None)
            if settings.db_type == "postgres"
            else None
        ),
        live_only_removed=removed,
    )
    for line in result.summary_lines():
        logger.info(line)
    publish_table("restore-all-summary", result.table_rows(), f"Full restore from {path.name}")
    return result
