"""Restoring PostgreSQL all or nothing, and proving it: one guarded transaction.

The guide drops all tables and then restores, which loses everything when the restore
fails halfway. Here `psql` (tasks/sources/psql.py) runs one explicit transaction:
- a prologue opens it, installs a commit guard and announces the transaction's id; for a
  live database it then empties it — every user schema, large object and database-level
  object a plain pg_dump emits (publications, event triggers, extensions in system
  schemas, foreign-data wrappers and servers, access methods, casts, transforms) — and
  recreates `public` as it was (owner, privileges, comment). What the restoring role
  cannot replace (a subscription, a superuser's event trigger, ...) is refused first, in
  one line, before anything is touched;
- the plain dump follows, streamed, its sha256 and its end (tasks/sources/plain_dump.py) checked
  as it passes;
- a check block counts every table's rows, fails unless they are the rows the backup
  recorded, reports them, and only then allows the COMMIT that comes last.
The commit guard is a deferred constraint trigger on a temporary table: any COMMIT but
the one the check block allowed — a COMMIT inside the dump — fails, and PostgreSQL rolls
everything back. The restore counts as done only when a fresh session, after psql ended,
finds that transaction committed (`txid_status`): psql's exit code proves nothing (it
quits silently, exit 0, at a lone `;` after COPY data). A failure anywhere leaves the
database as it was; it leaves nothing behind in it either. The prologue's and the check
block's SQL are `tasks.restore.pg_script`'s.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, cast

import psycopg

from tasks.backup.db_artifact import unused_moment
from tasks.core.errors import RestoreError, VerifyError
from tasks.core.naming import sidecar_name, timestamp
from tasks.restore.pg_script import check_block, fresh_prologue, new_token, reset_prologue
from tasks.restore.roles import missing_roles_message, not_member_message
from tasks.sources.ownership import AS_DUMPED, KEEP_ALL, Leave, Ownership, OwnershipFilter
from tasks.sources.plain_dump import PlainDumpStream
from tasks.sources.postgres import (
    connect,
    first_line,
    keyed_like,
    run_pg_dump,
)
from tasks.sources.psql import (
    create_database,
    run_guarded_transaction,
    transaction_status,
)
from tasks.stream.compress import BLOCK_SIZE
from tasks.stream.inflate import InflatingReader
from tasks.stream.pipeline import Artifact, write_artifact

# A scratch database is loaded by a role that need not hold the backup's roles: it
# proves the data, so the objects simply belong to that role.
SCRATCH = Ownership(Leave(owners=True, privileges=True))


def snapshot_name(moment_stamp: str) -> str:
    return f"admin_postgres_before_restore_{moment_stamp}.sql.gz"


def database_exists(params: dict[str, str]) -> bool:
    """Whether the URL's database exists (asked of the `postgres` maintenance database)."""
    try:
        with connect(params, dbname="postgres") as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (params.get("dbname", ""),)
            ).fetchone()
            return row is not None
    except Exception:
        return True  # cannot ask: let the restore itself report what is wrong


def ensure_database(params: dict[str, str]) -> bool:
    """Create the database when it is gone (disaster recovery). True when it was created."""
    if database_exists(params):
        return False
    create_database(params, params.get("dbname", ""))
    return True


def snapshot_before_restore(params: dict[str, str], backup_dir: Path) -> Artifact[None]:
    """`$BACKUP_DIR/admin_postgres_before_restore_YYYYMMDD_HHMMSS.sql.gz`, 0600, with sidecar."""

    def name_for(moment: datetime) -> str:
        return snapshot_name(timestamp(moment))

    moment = unused_moment(backup_dir, name_for)
    return write_artifact(
        backup_dir / name_for(moment), lambda out: run_pg_dump(params, out), "gzip"
    )


def discard_snapshot(snapshot: Path) -> None:
    """Remove a pre-restore snapshot this run wrote, with its sidecar — only when the restore
    it preceded changed nothing (it failed before COMMIT on a damaged file)."""
    for path in (snapshot, snapshot.with_name(sidecar_name(snapshot.name))):
        path.unlink(missing_ok=True)


# -- the dump, checked as it streams ----------------------------------------------------------


class GatedDump(io.RawIOBase):
    """The decompressed dump, ending only once the whole file matched its sha256 and the
    SQL passed tasks.sources.plain_dump's checks (else it raises: the check and COMMIT are never
    sent).

    The file is read once (tasks.stream.inflate: hashed and inflated in a background
    thread while psql is fed), so damage or a sha256 mismatch shows only as the stream
    ends. `expected_sha256` None (a hand-made file without a sidecar, or one verified
    already): only the stream's own integrity is checked; `sha256` is the digest found.
    """

    def __init__(
        self,
        artifact: Path,
        compression: str,
        expected_sha256: str | None,
        leave: Leave = KEEP_ALL,
    ) -> None:
        self._inflater = InflatingReader(artifact, compression)
        self._plain = PlainDumpStream(artifact.name)
        self._ownership = OwnershipFilter(leave) if leave else None
        self._expected = expected_sha256
        self._done = False
        self._left = b""
        self.dump_bytes = 0
        self.sha256: str | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        size = BLOCK_SIZE if size is None or size < 0 else size
        while not self._left and not self._done:
            block = self._inflater.next_block()
            if block:
                self.dump_bytes += len(block)
                self._left = self._plain.feed(block)
                if self._ownership is not None:
                    self._left = self._ownership.feed(self._left)
                continue
            self.sha256 = self._inflater.finish(self._expected)
            if self.dump_bytes == 0:
                raise VerifyError("the SQL dump is empty; nothing was applied")
            self._left = self._plain.finish()
            if self._ownership is not None:
                self._left = self._ownership.feed(self._left) + self._ownership.finish()
            self._done = True
        chunk, self._left = self._left[:size], self._left[size:]
        return chunk

    def close(self) -> None:
        if not self.closed:
            self._inflater.close()
            super().close()


# -- the restore -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedDump:
    """What a committed restore read and left: the file's sha256, the SQL size, the tables
    (keyed as the backup keyed them), and the committed transaction's id."""

    sha256: str
    content_size: int
    tables: dict[str, int]
    xid: int


def load_checked(
    params: dict[str, str],
    artifact: Path,
    compression: str,
    sha256: str | None,
    expected_tables: dict[str, int] | None,
    *,
    reset: bool = True,
    dbname: str | None = None,
    application_name: str | None = None,
    token: str | None = None,
    before_commit: Callable[[int], None] | None = None,
    ownership: Ownership = AS_DUMPED,
) -> LoadedDump:
    """Replace the content of the database (the URL's, or `dbname`) with the dump in
    `artifact`, in one guarded transaction; done only when a fresh session sees it
    committed. `reset` False: the database is new and empty (nothing to drop). `ownership`:
    the dump's owners and privileges to leave out (tasks/sources/ownership.py), or those
    the backup recorded, which the check block compares before COMMIT. The
    outcome is decided by the database (see tasks/sources/psql.py), whatever psql's exit code."""
    token = token or new_token()
    target = {**params, **({"dbname": dbname} if dbname else {})}
    with connect(target) as connection:
        user = connection.info.user
        try:
            prologue = reset_prologue(connection, token) if reset else fresh_prologue(token)
            check = check_block(connection, expected_tables, token, ownership.proved)
        except psycopg.Error as exc:
            raise RestoreError(
                f"cannot read the live database's schemas: {first_line(str(exc))}"
            ) from None
    dump = GatedDump(artifact, compression, sha256, ownership.leave)
    try:
        outcome = run_guarded_transaction(
            params,
            prologue,
            cast(BinaryIO, dump),
            check,
            token,
            dbname=dbname,
            application_name=application_name,
            before_commit=before_commit,
        )
    finally:
        dump.close()
    xid = outcome.xid
    status = transaction_status(params, xid, dbname) if xid is not None else None
    if xid is None or status != "committed":
        if outcome.code < 0:
            # Killed (the OOM killer, an operator): its stderr ends with whatever notice
            # came last ("drop cascades to table ..."), which is not why it stopped.
            raise RestoreError(
                f"psql was killed (signal {-outcome.code}) before COMMIT; nothing was applied"
            )
        if outcome.code != 0:
            raise RestoreError(_explained(outcome.error, user))
        if status is None and xid is not None:
            raise RestoreError(
                f"cannot tell whether the restore's transaction {xid} committed: "
                "PostgreSQL no longer knows it; check the database"
            )
        raise RestoreError(
            "psql stopped before COMMIT (it ended with exit 0 without running the whole "
            "dump, e.g. at a lone ';' after COPY data); nothing was changed"
        )
    assert dump.sha256 is not None  # COMMIT is sent only after the whole file was read
    if outcome.found is None:
        raise RestoreError(
            "the restore committed, but its check did not report the row counts; "
            "compare the database with the backup"
        )
    tables = keyed_like(expected_tables, outcome.found)
    if expected_tables is not None and tables != expected_tables:
        raise RestoreError(  # the check inside the transaction makes this unreachable
            "the restore committed, but the row counts it reported differ from the backup's"
        )
    return LoadedDump(dump.sha256, dump.dump_bytes, tables, xid)


_NOT_MEMBER = re.compile(r'must be member of role "((?:[^"]|"")+)"')
_NO_SUCH_ROLE = re.compile(r'role "((?:[^"]|"")+)" does not exist')


def _explained(error: str, user: str) -> str:
    """psql's error as one line; the two that a backup's owners and privileges cause on
    another server, with what to do about them."""
    if found := _NOT_MEMBER.search(error):
        return not_member_message([found.group(1)], user)
    if found := _NO_SUCH_ROLE.search(error):
        return missing_roles_message([found.group(1)])
    return f"psql stopped on an error, nothing was applied: {error}"


def restore_postgres(
    params: dict[str, str],
    artifact: Path,
    compression: str,
    sha256: str | None,
    expected_tables: dict[str, int] | None,
    ownership: Ownership = AS_DUMPED,
) -> LoadedDump:
    """Replace the live database's content with the dump in `artifact` (read once: its
    stream, sha256 and end are checked while it loads, before COMMIT)."""
    return load_checked(params, artifact, compression, sha256, expected_tables, ownership=ownership)
