"""restore-all's swap phase: every live change, journalled, in one short burst.

Everything is staged and checked before this runs (files beside their live paths, the
SQLite copy beside the live database, the pre-restore snapshot written). Here: write
the durable journal, then the renames in quick succession, then the commit point, then
delete the replaced copies. See tasks/restore/journal.py for the commit point and the
recovery rule; a failure here in-process is handled by the same rule at once.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from tasks.core.errors import RestoreError, VerifyError
from tasks.restore.all_postgres import restore_postgres_with_files
from tasks.restore.files import Swap, SwapJournal, SwapPlan, stash_path
from tasks.restore.journal import (
    COMMITTED,
    SWAPPING,
    Journal,
    JournalSwap,
    drop_marker,
    fault_point,
    finish,
    postgres_committed,
    remove_journal,
    roll_back,
    write_journal,
)
from tasks.restore.sqlite import StagedSqlite, live_db_file, settle_live_database
from tasks.sources.ownership import AS_DUMPED, Ownership

DATABASE_LABEL = "database"


def _inode(path: Path | None) -> int | None:
    try:
        return os.lstat(path).st_ino if path is not None else None
    except FileNotFoundError:
        return None


def new_journal(
    plan: SwapPlan, token: str, discard: list[Path], db_kind: str, pg_dbname: str | None = None
) -> Journal:
    swaps = [
        JournalSwap(
            target=str(s.target),
            incoming=str(s.incoming) if s.incoming is not None else None,
            stash=str(stash_path(s.target, token)),
            label=s.label,
            had_target=os.path.lexists(s.target),
            incoming_inode=_inode(s.incoming),
        )
        for s in plan.swaps
    ]
    return Journal(token, SWAPPING, swaps, [str(p) for p in discard], db_kind, pg_dbname)


def _commit(backups: Path, journal: Journal) -> None:
    journal.state = COMMITTED
    write_journal(backups, journal)
    fault_point("commit recorded")


def _undo(backups: Path, journal: Journal, cause: BaseException) -> BaseException:
    """Roll back now; the error to raise (the cause, saying the files were put back)."""
    try:
        roll_back(journal)
    except OSError as exc:
        return RestoreError(
            f"restore failed and could not put everything back ({exc}); the next command "
            f"retries from the journal in {backups}"
        )
    remove_journal(backups)
    if isinstance(cause, RestoreError | VerifyError):
        return type(cause)(f"{cause} — uploads, configuration and data were put back")
    return cause


def swap_in_with_sqlite(
    backups: Path,
    plan: SwapPlan,
    swapper: SwapJournal,
    staged: StagedSqlite,
    db_path: Path,
    readable: bool,
    snapshot: Path | None,
    discard: list[Path],
) -> list[str]:
    """Files and the SQLite database swapped in together; commit point: all renamed.
    A linked ADMIN_DB_PATH stays a link: the swap renames over its target."""
    db_path = live_db_file(db_path)
    settle_live_database(db_path, readable, snapshot)  # refuses, changing nothing, if in use
    with contextlib.suppress(FileNotFoundError):  # the restored file keeps the live one's mode
        live = db_path.stat()
        os.chmod(staged.path, stat.S_IMODE(live.st_mode))
        if os.geteuid() == 0:
            os.chown(staged.path, live.st_uid, live.st_gid)
    full = SwapPlan(swaps=[*plan.swaps, Swap(db_path, staged.path, DATABASE_LABEL)])
    journal = new_journal(full, swapper.token, discard, "sqlite")
    write_journal(backups, journal)
    fault_point("journal written")
    try:
        swapped = swapper.apply(full)
    except BaseException as exc:
        raise _undo(backups, journal, exc) from None
    _commit(backups, journal)
    finish(journal)
    remove_journal(backups)
    return [label for label in swapped if label != DATABASE_LABEL]


def swap_in_with_postgres(
    backups: Path,
    plan: SwapPlan,
    swapper: SwapJournal,
    params: dict[str, str],
    artifact: Path,
    compression: str,
    sha256: str,
    expected: dict[str, int] | None,
    discard: list[Path],
    ownership: Ownership = AS_DUMPED,
) -> tuple[list[str], dict[str, int] | None]:
    """Files swapped in just before the database's COMMIT; commit point: that COMMIT.

    Returns the labels swapped and the row counts the committed transaction found (None
    when the restore committed but the process could not read them back)."""
    journal = new_journal(plan, swapper.token, discard, "postgres", params.get("dbname"))
    write_journal(backups, journal)
    fault_point("journal written")
    swapped: list[str] = []

    def before_commit(xid: int) -> None:
        journal.pg_xid = xid  # durable before COMMIT is sent: recovery asks about it
        write_journal(backups, journal)
        swapped.extend(swapper.apply(plan))

    failure: BaseException | None = None
    tables: dict[str, int] | None = None
    try:
        tables = restore_postgres_with_files(
            params,
            artifact,
            compression,
            sha256,
            expected,
            journal.token,
            journal.app_name,
            before_commit,
            ownership,
        ).tables
    except BaseException as exc:
        # Usually the transaction did not commit (the restore said so after asking a
        # fresh session); but a connection lost during COMMIT may have committed.
        # PostgreSQL decides, as it would for a killed restore.
        try:
            committed = postgres_committed(journal, params)
        except RestoreError:
            raise RestoreError(
                "restore failed and whether PostgreSQL committed cannot be told now; the "
                "next command decides from the journal and rolls back or finishes"
            ) from None
        if not committed:
            raise _undo(backups, journal, exc) from None
        failure = exc  # committed, files swapped: finish, then still report what failed
    fault_point("database committed")
    _commit(backups, journal)
    drop_marker(journal, params)  # only an older version's journal has one
    finish(journal)
    remove_journal(backups)
    if failure is not None:
        raise failure
    return swapped, tables
