"""Restoring PostgreSQL all or nothing: one transaction that empties, reloads and checks.

The guide drops all tables and then restores, which loses everything when the restore
fails halfway. Here `psql` runs one explicit transaction: a prologue drops every user
schema (and large object) of the live database and recreates `public` as it was (owner,
privileges, comment); the plain dump follows, streamed; an epilogue checks the table row
counts the backup recorded; and `COMMIT` comes last. `COMMIT` is written only after the
whole compressed file has been read and its sha256 matched — `psql --single-transaction`
would instead commit whatever it had received when its input ends, so a restore killed
halfway would commit half a database. Any failure (a bad statement, a count mismatch,
a killed process, a dropped connection) ends the session without `COMMIT`, and
PostgreSQL rolls everything back: the live database stays exactly as it was.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, cast

import psycopg
from psycopg import sql

from tasks.compress import BLOCK_SIZE
from tasks.db_artifact import unused_moment
from tasks.errors import RestoreError, VerifyError
from tasks.naming import sidecar_name, timestamp
from tasks.pipeline import Artifact, write_artifact
from tasks.psql import create_database, load_sql_dump
from tasks.restore_stream import InflatingReader
from tasks.sources.postgres import connect, first_line, row_counts, run_pg_dump

# How long the prologue waits for the application's locks before giving up cleanly.
LOCK_TIMEOUT = "60s"
_VERIFY_TAG = "$chatbot_backup_verify$"
_SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema', 'pg_toast')"


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


def reset_prologue(connection: psycopg.Connection) -> bytes:
    """SQL that opens the transaction and empties the live database, keeping `public`'s shape."""
    schemas = [
        str(row[0])
        for row in connection.execute(
            f"SELECT nspname FROM pg_namespace WHERE nspname NOT IN {_SYSTEM_SCHEMAS} "
            "AND nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%' "
            "ORDER BY nspname"
        )
    ]
    statements = ["BEGIN", f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"]
    statements += [
        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(s)).as_string(connection)
        for s in schemas
    ]
    statements.append("SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata")
    statements.append("CREATE SCHEMA public")
    statements += _public_schema_shape(connection)
    return ("\n".join(f"{s};" for s in statements) + "\n").encode()


def _public_schema_shape(connection: psycopg.Connection) -> list[str]:
    """Owner, privileges and comment of today's `public`, to give the recreated one."""
    row = connection.execute(
        "SELECT pg_get_userbyid(nspowner), obj_description(oid, 'pg_namespace'), "
        "nspacl IS NULL, current_user FROM pg_namespace WHERE nspname = 'public'"
    ).fetchone()
    if row is None:
        return []
    owner, comment, default_acl, me = row
    statements = []
    if owner != me:
        statements.append(
            sql.SQL("ALTER SCHEMA public OWNER TO {}")
            .format(sql.Identifier(owner))
            .as_string(connection)
        )
    if not default_acl:
        grants = connection.execute(
            "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, "
            "a.privilege_type, a.is_grantable FROM pg_namespace n, aclexplode(n.nspacl) a "
            "WHERE n.nspname = 'public' ORDER BY 1 NULLS FIRST, 2"
        ).fetchall()
        for grantee, privilege, grantable in grants:
            who = sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)
            statements.append(
                sql.SQL("GRANT {} ON SCHEMA public TO {}{}")
                .format(sql.SQL(privilege), who, sql.SQL(" WITH GRANT OPTION" if grantable else ""))
                .as_string(connection)
            )
    if comment is not None:
        statements.append(
            sql.SQL("COMMENT ON SCHEMA public IS {}")
            .format(sql.Literal(comment))
            .as_string(connection)
        )
    return statements


def check_epilogue(connection: psycopg.Connection, expected: dict[str, int] | None) -> bytes:
    """SQL that fails the transaction unless the restored tables hold the recorded rows,
    followed by the COMMIT."""
    lines = ["", ";"]  # end a dump whose last statement lacks its semicolon: it then fails
    if expected is not None:
        checks = []
        for name, rows in sorted(expected.items()):
            schema, table = name.split(".", 1) if "." in name else ("public", name)
            relation = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            count = sql.SQL("(SELECT count(*) FROM {})").format(relation).as_string(connection)
            label = sql.Literal(name).as_string(connection)
            checks.append(
                f"  IF {count} <> {int(rows)} THEN RAISE EXCEPTION "
                f"'restore check: table % has % rows, the backup recorded %', "
                f"{label}, {count}, {int(rows)}; END IF;"
            )
        tables = (
            "(SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname NOT IN "
            "('pg_catalog', 'information_schema'))"
        )
        checks.append(
            f"  IF {tables} <> {len(expected)} THEN RAISE EXCEPTION "
            f"'restore check: % tables restored, the backup recorded %', {tables}, {len(expected)}; END IF;"
        )
        body = "\n".join(checks)
        if _VERIFY_TAG in body:
            raise RestoreError("a table name contains the restore check's quoting tag")
        lines.append(f"DO {_VERIFY_TAG}\nBEGIN\n{body}\nEND\n{_VERIFY_TAG};")
    lines.append("COMMIT;")
    return ("\n".join(lines) + "\n").encode()


class GatedDump(io.RawIOBase):
    """The decompressed dump, then `epilogue` — only once the whole file matched its sha256.

    The file is read once (tasks.restore_stream: hashed and inflated in a background
    thread while psql is fed), so damage or a sha256 mismatch shows only as the stream
    ends; it raises there, before a byte of the epilogue — and so the COMMIT — is
    released. `expected_sha256` None (a hand-made file without a sidecar): only the
    stream's own integrity is checked; `sha256` is the digest found, once read.
    """

    def __init__(
        self, artifact: Path, compression: str, expected_sha256: str | None, epilogue: bytes
    ) -> None:
        self._inflater = InflatingReader(artifact, compression)
        self._expected = expected_sha256
        self._epilogue = epilogue
        self._dump_done = False
        self._left = b""
        self.dump_bytes = 0
        self.sha256: str | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        size = BLOCK_SIZE if size is None or size < 0 else size
        if not self._dump_done:
            chunk = self._left or self._inflater.next_block()
            if chunk:
                chunk, self._left = chunk[:size], chunk[size:]
                self.dump_bytes += len(chunk)
                return chunk
            self.sha256 = self._inflater.finish(self._expected)
            if self.dump_bytes == 0:
                raise VerifyError("the SQL dump is empty; nothing was applied")
            self._dump_done = True
        chunk, self._epilogue = self._epilogue[:size], self._epilogue[size:]
        return chunk

    def close(self) -> None:
        if not self.closed:
            self._inflater.close()
            super().close()


@dataclass(frozen=True)
class LoadedDump:
    """What a committed restore read and left: the file's sha256, the SQL size, the tables."""

    sha256: str
    content_size: int
    tables: dict[str, int]


def restore_postgres(
    params: dict[str, str],
    artifact: Path,
    compression: str,
    sha256: str | None,
    expected_tables: dict[str, int] | None,
) -> LoadedDump:
    """Replace the database's content with the dump in `artifact` (read once: its stream
    and sha256 are checked while it loads, before COMMIT); its row counts after."""
    with connect(params) as connection:
        try:
            prologue = reset_prologue(connection)
            epilogue = check_epilogue(connection, expected_tables)
        except psycopg.Error as exc:
            raise RestoreError(
                f"cannot read the live database's schemas: {first_line(str(exc))}"
            ) from None
    dump = GatedDump(artifact, compression, sha256, epilogue)
    try:
        load_sql_dump(params, cast(BinaryIO, dump), prologue=[prologue], single_transaction=False)
    finally:
        dump.close()
    assert dump.sha256 is not None  # set once the whole dump was read, before COMMIT
    if expected_tables is not None:
        # The epilogue proved, inside the committed transaction, that every table holds
        # exactly these rows and that there are no others: counting again would scan the
        # whole database once more (and write every page back to set its hint bits).
        return LoadedDump(dump.sha256, dump.dump_bytes, dict(expected_tables))
    with connect(params) as connection:
        return LoadedDump(dump.sha256, dump.dump_bytes, row_counts(connection))
