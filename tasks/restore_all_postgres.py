"""restore-all's PostgreSQL step: one transaction whose COMMIT is the whole restore's.

Built from `tasks.restore_postgres`'s pieces (prologue that empties the database, the
sha256-gated dump, the row-count check), with two additions that tie the files to the
transaction (see tasks/restore_journal.py):
- once the whole dump has been read and matched its sha256, and before the check and
  COMMIT are sent, `before_commit` runs — restore-all swaps the files in there, so the
  mixed window is those renames plus COMMIT;
- right before COMMIT the transaction creates a marker schema, which becomes visible
  exactly when the restored data does: recovery reads it to know whether the database
  committed. It is dropped once the journal records the commit.
`psql` runs under the journal's application name, so recovery can find and end the
session of a killed restore before deciding.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast

import psycopg
from psycopg import sql

from tasks.compress import BLOCK_SIZE
from tasks.errors import RestoreError
from tasks.psql import load_sql_dump
from tasks.restore_postgres import GatedDump, check_epilogue, reset_prologue
from tasks.sources.postgres import connect, first_line, row_counts

_COMMIT = b"COMMIT;\n"


class _CommitGate(io.RawIOBase):
    """The verified dump, then `before_commit()`, then the check + marker + COMMIT."""

    def __init__(self, dump: GatedDump, before_commit: Callable[[], None], tail: bytes) -> None:
        self._dump = dump
        self._before_commit = before_commit
        self._tail = tail
        self._gate_passed = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        size = BLOCK_SIZE if size is None or size < 0 else size
        if not self._gate_passed:
            chunk = self._dump.read(size)  # raises VerifyError on a sha256 mismatch
            if chunk:
                return chunk
            self._before_commit()
            self._gate_passed = True
        chunk, self._tail = self._tail[:size], self._tail[size:]
        return chunk


def restore_postgres_with_files(
    params: dict[str, str],
    artifact: Path,
    compression: str,
    sha256: str,
    expected_tables: dict[str, int] | None,
    marker: str,
    app_name: str,
    before_commit: Callable[[], None],
) -> None:
    """Replace the database's content; `before_commit` runs just before COMMIT is sent.

    Returns once psql has committed. An exception leaves the outcome to be asked of the
    marker: a connection lost during COMMIT may or may not have committed."""
    with connect(params) as connection:
        try:
            prologue = reset_prologue(connection)
            epilogue = check_epilogue(connection, expected_tables)
            create_marker = (
                sql.SQL("CREATE SCHEMA {};\n").format(sql.Identifier(marker)).as_string(connection)
            )
        except psycopg.Error as exc:
            raise RestoreError(
                f"cannot read the live database's schemas: {first_line(str(exc))}"
            ) from None
    if not epilogue.endswith(_COMMIT):  # tasks.restore_postgres changed its epilogue
        raise RestoreError("internal: the restore check does not end with COMMIT")
    tail = epilogue[: -len(_COMMIT)] + create_marker.encode() + _COMMIT
    dump = GatedDump(artifact, compression, sha256, b"")
    try:
        load_sql_dump(
            {**params, "application_name": app_name},
            cast(BinaryIO, _CommitGate(dump, before_commit, tail)),
            prologue=[prologue],
            single_transaction=False,
        )
    finally:
        dump.close()


def live_row_counts(params: dict[str, str]) -> dict[str, int]:
    with connect(params) as connection:
        return row_counts(connection)
