"""A durable record of a `restore-all` swap, so a killed restore is undone or finished.

Before restore-all changes anything live it writes `BACKUP_DIR/.restore-all.journal.json`
(atomically: temporary file, fsync, rename, fsync of the folder) naming every swap —
the live path, the staged path that replaces it, and the hidden `.NAME.replaced-TOKEN`
copy the live entry moves to — plus the database step. The state is `swapping` until
the commit point, then `committed`.

The commit point, and so the recovery rule:
- SQLite: all renames (the database file's included) are done and the journal is
  rewritten as `committed`. Before that, recovery rolls back; after, it rolls forward
  (deletes the replaced copies).
- PostgreSQL: the restore's transaction COMMIT. The transaction's id is written into the
  journal (`pg_xid`) and the file renames happen just before it, while the transaction
  is still open. Recovery first ends any session still running under the journal's
  application name (a killed restore's orphan `psql`), then asks PostgreSQL about that
  id (`txid_status`, a fresh session): committed → roll forward; aborted, or no id
  recorded (COMMIT is never sent before it is) → PostgreSQL rolled back, so the files
  are rolled back too. Nothing is left in the database to clean up. (Journals of older
  versions name a marker schema instead: present → committed; it is dropped.)

Replaced copies are deleted only after the commit point, so the before-state always
survives until the restored state is complete. The pre-restore snapshot is never
touched. Every command that takes the backup folder's lock runs `recover_interrupted`
first (`flows.locking.job_lock` hands it to tasks/core/lock.py), with the live database's
URL passed down from the flow's settings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tasks.core.atomic import exchange_paths, fsync_dir, same_entry, write_text_atomic
from tasks.core.errors import RestoreError
from tasks.restore.markers import INCOMING_MARKER, remove_entry
from tasks.sources.postgres import parse_database_url

JOURNAL_NAME = ".restore-all.journal.json"
SWAPPING = "swapping"
COMMITTED = "committed"
MARKER_PREFIX = "chatbot_backup_restore_committed_"
APP_NAME_PREFIX = "chatbot-backup-restore-"

# TEST-ONLY fault injection: the process SIGKILLs itself at the N-th step of the swap
# phase. Honoured only when the value is exactly "restore-all:N" AND the process runs
# under pytest (PYTEST_CURRENT_TEST is set), so a production environment cannot trip it.
TEST_KILL_VARIABLE = "CHATBOT_BACKUP_TEST_ONLY_SIGKILL_AT"

log = logging.getLogger("chatbot_backup")
_steps_taken = 0


def fault_point(step: str) -> None:
    """One step of the swap phase is done; a test may ask to be killed here (see above)."""
    global _steps_taken
    _steps_taken += 1
    wanted = os.environ.get(TEST_KILL_VARIABLE, "")
    if not wanted.startswith("restore-all:") or "PYTEST_CURRENT_TEST" not in os.environ:
        return
    if wanted.split(":", 1)[1] == str(_steps_taken):
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class JournalSwap:
    target: str  # the live path
    incoming: str | None  # the staged replacement (None: the backup does not have it)
    stash: str  # where the live entry goes aside: .NAME.replaced-TOKEN
    label: str
    had_target: bool  # whether a live entry existed when the journal was written
    incoming_inode: int | None = None  # tells an exchanged-in restored entry at `target`


@dataclass
class Journal:
    token: str
    state: str
    swaps: list[JournalSwap]
    discard: list[str] = field(default_factory=list)  # staging left to delete at the end
    db_kind: str = "sqlite"
    pg_dbname: str | None = None  # which database the transaction ran in (no secrets here)
    pg_xid: int | None = None  # the restore transaction's id, recorded before its COMMIT

    @property
    def marker(self) -> str:
        """The marker schema older versions created right before COMMIT."""
        return MARKER_PREFIX + self.token

    @property
    def app_name(self) -> str:
        return APP_NAME_PREFIX + self.token


def journal_path(backup_dir: Path) -> Path:
    return backup_dir / JOURNAL_NAME


def write_journal(backup_dir: Path, journal: Journal) -> None:
    """Durably (fsync'd file and folder) record the journal before the next live change."""
    write_text_atomic(journal_path(backup_dir), json.dumps(asdict(journal), indent=1))


def remove_journal(backup_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        journal_path(backup_dir).unlink()
        fsync_dir(backup_dir)


def read_journal(backup_dir: Path) -> Journal | None:
    path = journal_path(backup_dir)
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
        swaps = [JournalSwap(**s) for s in raw.pop("swaps")]
        return Journal(swaps=swaps, **raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise RestoreError(
            f"{path} records an interrupted restore-all but cannot be read ({exc}); "
            "the hidden .NAME.replaced-* copies beside the live paths hold the data from "
            "before it — move them back by hand, then delete the journal"
        ) from None


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def _remove(path: Path) -> None:
    if _exists(path):
        remove_entry(path)


def roll_back(journal: Journal) -> None:
    """Put the before-state back, judging each swap from what is on disk (idempotent)."""
    for swap in reversed(journal.swaps):
        target, stash = Path(swap.target), Path(swap.stash)
        incoming = Path(swap.incoming) if swap.incoming else None
        if (
            incoming is not None
            and not _exists(stash)
            and _exists(incoming)
            and same_entry(target, swap.incoming_inode)
        ):
            # Killed between the exchange and moving the live entry aside: swap back.
            exchange_paths(target, incoming)
            fsync_dir(target.parent)
            continue
        moved_aside = _exists(stash) or not swap.had_target
        if incoming is not None and not _exists(incoming) and _exists(target) and moved_aside:
            # The restored entry took the live name: send it back where it came from.
            if incoming.parent.is_dir():
                os.rename(target, incoming)
            else:
                _remove(target)
        elif incoming is None and _exists(stash) and _exists(target):
            _remove(target)  # cannot happen through our renames; never lose the stash
        if _exists(stash):
            os.rename(stash, target)
        if target.parent.is_dir():
            fsync_dir(target.parent)


def finish(journal: Journal, recovering: bool = False) -> None:
    """After the commit point: delete the replaced copies and the staging left over."""
    for swap in journal.swaps:
        _remove(Path(swap.stash))
        if not recovering:
            fault_point("replaced copy deleted")
    discard_leftovers(journal)


def discard_leftovers(journal: Journal) -> None:
    for swap in journal.swaps:
        if swap.incoming and _is_own_copy(Path(swap.incoming), journal.token):
            _remove(Path(swap.incoming))
    for entry in journal.discard:
        _remove(Path(entry))


def _is_own_copy(path: Path, token: str) -> bool:
    """A copy this restore made beside a live path (not a path inside staging)."""
    return path.name.startswith(".") and path.name.endswith(INCOMING_MARKER + token)


def postgres_committed(journal: Journal, params: dict[str, str]) -> bool:
    """Whether the restore's transaction committed: end its orphan session, then ask a
    fresh session about the transaction id recorded before COMMIT."""
    import psycopg

    from tasks.sources.postgres import connect
    from tasks.sources.psql import transaction_status

    if journal.pg_dbname is not None and params.get("dbname") != journal.pg_dbname:
        raise RestoreError(
            f"an interrupted restore-all of database {journal.pg_dbname!r} needs recovery, "
            f"but ADMIN_DATABASE_URL names {params.get('dbname')!r}; point it back and rerun"
        )
    try:
        with connect(params) as conn:
            conn.autocommit = True
            deadline = time.monotonic() + 60
            while True:
                alive = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND pid <> pg_backend_pid()",
                    (journal.app_name,),
                ).fetchall()
                if not alive:
                    break
                if time.monotonic() > deadline:
                    raise RestoreError(
                        "a killed restore-all's PostgreSQL session does not end; "
                        "stop it and run the command again"
                    )
                time.sleep(0.2)
            if journal.pg_xid is None:  # COMMIT not sent yet; or an older version's journal
                row = conn.execute(
                    "SELECT 1 FROM pg_namespace WHERE nspname = %s", (journal.marker,)
                ).fetchone()
                return row is not None
    except psycopg.Error as exc:
        raise RestoreError(
            f"cannot check an interrupted restore-all's database transaction: {exc}"
        ) from None
    status = transaction_status(params, journal.pg_xid)
    if status is None or status == "in progress":
        raise RestoreError(
            f"cannot tell whether the interrupted restore-all's transaction {journal.pg_xid} "
            f"committed (PostgreSQL says: {status or 'unknown'}); the journal in BACKUP_DIR "
            "names every path involved"
        )
    return status == "committed"


def drop_marker(journal: Journal, params: dict[str, str]) -> None:
    """Drop an older version's marker schema (a no-op for journals with `pg_xid`)."""
    if journal.pg_xid is not None:
        return
    from psycopg import sql

    from tasks.sources.postgres import connect

    with connect(params) as conn:
        conn.autocommit = True
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(journal.marker))
        )


def recover_interrupted(backup_dir: Path, database_url: Callable[[], str]) -> str | None:
    """Undo or finish a restore-all that was killed mid-swap. Call under the backup lock.

    `database_url` gives the live PostgreSQL database (asked only for a PostgreSQL
    journal). Returns the line logged, or None when there was nothing to recover.
    """
    journal = read_journal(backup_dir)
    if journal is None:
        return None
    try:
        params = parse_database_url(database_url()) if journal.db_kind == "postgres" else {}
        forward = journal.state == COMMITTED
        if not forward and journal.db_kind == "postgres":
            forward = postgres_committed(journal, params)
            if forward:  # record the decision before acting on it
                journal.state = COMMITTED
                write_journal(backup_dir, journal)
        if forward:
            if journal.db_kind == "postgres":
                drop_marker(journal, params)
            finish(journal, recovering=True)
            outcome = "rolled forward to the restored state (it had passed its commit point)"
        else:
            roll_back(journal)
            discard_leftovers(journal)
            outcome = "rolled back to the state before it (it had not reached its commit point)"
    except OSError as exc:
        raise RestoreError(
            f"cannot recover an interrupted restore-all ({exc}); {journal_path(backup_dir)} "
            "names every path involved"
        ) from None
    remove_journal(backup_dir)
    line = f"recovered an interrupted restore-all: {outcome}; {len(journal.swaps)} paths checked"
    log.warning(line)
    print(f"chatbot-backup: {line}", file=sys.stderr)
    return line
