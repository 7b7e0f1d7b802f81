"""The drill's scratch database: the backup's database restored aside, then proved.

SQLite: decompressed into a file in the drill's scratch folder. PostgreSQL: loaded by
db-restore's own guarded transaction into a new database on the RESTORE_TEST_DATABASE_URL
server (default: ADMIN_DATABASE_URL's), always dropped at the end. The live database is
never opened. The proof: SQLite `PRAGMA integrity_check`, then one query per table (its row
count, and one row read back), compared with the row counts the backup recorded.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from tasks.core.errors import BackupError, RestoreError
from tasks.restore.postgres import SCRATCH, load_checked
from tasks.restore.source import sniff_content
from tasks.sources.postgres import connect, first_line, keyed_like, relation_counts
from tasks.sources.psql import create_database, drop_database
from tasks.sources.sqlite import connect as sqlite_connect
from tasks.sources.sqlite import integrity_problem, table_row_counts
from tasks.stream.compress import copy_stream, open_decompressed, sniff_compression
from tasks.verify.restore_test import count_differences

SCRATCH_DB_PREFIX = "chatbot_dr_drill_"
_SHOWN = 3


@dataclass
class ScratchDatabase:
    db_type: str  # "sqlite" or "postgres"
    where: str  # for the report: a file name or a database name
    path: Path | None = None
    dbname: str | None = None  # no connection parameters here: they hold the password
    dropped: bool = False


def database_kind(artifact: Path, db_type: str | None) -> str:
    if db_type in ("sqlite", "postgres"):
        return db_type
    held = sniff_content(artifact, sniff_compression(artifact))
    kind = {"sqlite": "sqlite", "sql": "postgres"}.get(held)
    if kind is None:
        raise BackupError(f"{artifact.name}: neither a SQLite database nor an SQL dump")
    return kind


def restore_scratch(
    artifact: Path, db_type: str | None, workdir: Path, pg_params: dict[str, str] | None
) -> ScratchDatabase:
    """Restore `artifact` aside; the caller proves it (`prove`) and drops it (`discard`)."""
    kind = database_kind(artifact, db_type)
    if kind == "sqlite":
        folder = workdir / "database"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = folder / "admin.db"
        with open(artifact, "rb") as raw, open(target, "wb") as out:
            copy_stream(open_decompressed(raw, sniff_compression(artifact)), out)
        return ScratchDatabase("sqlite", f"scratch SQLite file {target}", path=target)
    if pg_params is None:
        raise RestoreError(
            "restoring a PostgreSQL dump needs a PostgreSQL server for the scratch database: "
            "set RESTORE_TEST_DATABASE_URL (a role with CREATEDB) or ADMIN_DATABASE_URL"
        )
    name = SCRATCH_DB_PREFIX + secrets.token_hex(6)
    create_database(pg_params, name)
    scratch = ScratchDatabase("postgres", f"scratch PostgreSQL database {name}", dbname=name)
    try:
        load_checked(
            pg_params,
            artifact,
            sniff_compression(artifact),
            None,
            None,
            reset=False,
            dbname=name,
            ownership=SCRATCH,
        )
    except BaseException:
        discard(scratch, pg_params)
        raise
    return scratch


def _prove_sqlite(path: Path) -> dict[str, int]:
    problem = integrity_problem(path)
    if problem is not None:
        raise BackupError(f"PRAGMA integrity_check failed on the restored copy: {problem}")
    connection = sqlite_connect(path)
    try:
        counts = table_row_counts(connection)
        for table in counts:  # one row of every table read back, not only its count
            quoted = '"' + table.replace('"', '""') + '"'
            connection.execute(f"SELECT * FROM {quoted} LIMIT 1").fetchall()
        return counts
    finally:
        connection.close()


def _prove_postgres(
    scratch: ScratchDatabase, expected: dict[str, int] | None, pg_params: dict[str, str]
) -> dict[str, int]:
    assert scratch.dbname is not None
    with connect(pg_params, dbname=scratch.dbname) as connection:
        relations = relation_counts(connection)
        for schema, table in relations:
            query = sql.SQL("SELECT * FROM {}.{} LIMIT 1").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            connection.execute(query).fetchall()
        return keyed_like(expected, relations)


def prove(
    scratch: ScratchDatabase, expected: dict[str, int] | None, pg_params: dict[str, str] | None
) -> str:
    """What was proved, one line; BackupError saying what is wrong otherwise."""
    try:
        if scratch.db_type == "sqlite":
            assert scratch.path is not None
            counts = _prove_sqlite(scratch.path)
            how = "integrity_check ok, "
        else:
            if pg_params is None:
                raise BackupError("no PostgreSQL server to query the scratch database on")
            counts = _prove_postgres(scratch, expected, pg_params)
            how = ""
    except sqlite3.Error as exc:
        raise BackupError(f"a query on the restored copy failed: {exc}") from None
    except psycopg.Error as exc:
        raise BackupError(f"a query on the restored copy failed: {first_line(str(exc))}") from None
    problems = count_differences(expected, counts)
    if problems:
        more = len(problems) - _SHOWN
        raise BackupError(
            "row counts differ from the backup's record: "
            + "; ".join(problems[:_SHOWN])
            + (f"; and {more} more" if more > 0 else "")
        )
    compared = "match the backup's record" if expected is not None else "(none recorded)"
    return f"{how}{len(counts)} tables queried, {sum(counts.values())} rows; row counts {compared}"


def discard(scratch: ScratchDatabase, pg_params: dict[str, str] | None) -> None:
    """Drop a scratch PostgreSQL database (the SQLite file goes with the scratch folder)."""
    if scratch.db_type == "postgres" and scratch.dbname and not scratch.dropped and pg_params:
        drop_database(pg_params, scratch.dbname)
        scratch.dropped = True
