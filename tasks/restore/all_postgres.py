"""restore-all's PostgreSQL step: one transaction whose COMMIT is the whole restore's.

The same guarded transaction as db-restore (tasks/restore/postgres.py: prologue that
empties the database, the sha256- and trailer-checked dump, the row-count check, the
commit guard), with one addition that ties the files to it (see
tasks/restore/journal.py): once the whole dump has been read and matched its sha256,
and before the check and COMMIT are sent, `before_commit(xid)` runs — restore-all
records the transaction's id in its journal, then swaps the files in, so the mixed
window is those renames plus COMMIT. Recovery asks PostgreSQL about that id
(`txid_status`) to know whether the database committed. `psql` runs under the
journal's application name, so recovery can find and end the session of a killed
restore before deciding.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tasks.restore.postgres import LoadedDump, load_checked
from tasks.sources.ownership import AS_DUMPED, Ownership
from tasks.sources.postgres import connect, row_counts


def restore_postgres_with_files(
    params: dict[str, str],
    artifact: Path,
    compression: str,
    sha256: str,
    expected_tables: dict[str, int] | None,
    token: str,
    app_name: str,
    before_commit: Callable[[int], None],
    ownership: Ownership = AS_DUMPED,
) -> LoadedDump:
    """Replace the database's content; `before_commit(xid)` runs just before COMMIT is sent.

    Returns once a fresh session saw the transaction committed. An exception leaves the
    outcome to be asked of PostgreSQL: a connection lost during COMMIT may or may not
    have committed."""
    return load_checked(
        params,
        artifact,
        compression,
        sha256,
        expected_tables,
        application_name=app_name,
        token=token,
        before_commit=before_commit,
        ownership=ownership,
    )


def live_row_counts(params: dict[str, str]) -> dict[str, int]:
    with connect(params) as connection:
        return row_counts(connection)
