"""Databases in another encoding than UTF-8 back up and restore (found by a probe).

pg_dump writes a dump in the database's own encoding and says so (`SET client_encoding =
'LATIN1'`): the good-backup check refused such a dump as "not a plain-SQL dump" after
db-backup had reported success. In a SQL_ASCII database psycopg returns bytes, and
pg_dump was handed `--snapshot b'00000002-...'`: db-backup failed outright.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.conftest import PG_ADMIN, Platform, drop_database, pg_admin, pg_url

ROWS = [("Grüße, Ærø", 1), ("naïve café", 2), ("plain", 3)]


def dump_bytes(dbname: str) -> bytes:
    """The database as pg_dump writes it, in its own encoding, without the random
    \\restrict lines."""
    out = subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", dbname], capture_output=True, check=True
    ).stdout
    return b"\n".join(line for line in out.splitlines() if not line.startswith(b"\\"))


def connect(dbname: str) -> psycopg.Connection:
    """The test's own session, in UTF-8 (converted to LATIN1 by the server; SQL_ASCII keeps
    the bytes)."""
    return psycopg.connect(  # type: ignore[arg-type]
        **{**PG_ADMIN, "dbname": dbname}, autocommit=True, client_encoding="utf8"
    )


@pytest.fixture(params=["LATIN1", "SQL_ASCII"])
def encoded_database(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    encoding = request.param
    name = f"cbenc_{uuid.uuid4().hex[:10]}"
    with pg_admin() as conn:
        conn.execute(
            f"CREATE DATABASE {name} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' "
            "TEMPLATE template0"
        )
    try:
        with connect(name) as conn:
            conn.execute('CREATE SCHEMA "ünï"')
            conn.execute('CREATE TABLE "ünï"."täb" (label text, n int)')  # no key
            conn.cursor().executemany('INSERT INTO "ünï"."täb" VALUES (%s, %s)', ROWS)
            conn.execute("CREATE TABLE plain (id int PRIMARY KEY)")
        yield name, encoding
    finally:
        drop_database(name)


def test_a_database_in_another_encoding_backs_up_and_restores(
    platform: Platform, encoded_database: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, encoding = encoded_database
    platform.set(monkeypatch, ADMIN_DB_TYPE="postgres", ADMIN_DATABASE_URL=pg_url(name))
    before = dump_bytes(name)
    done = platform.run("db-backup")
    assert done.returncode == 0, done.stderr
    [artifact] = platform.backup_files("admin_postgres_*.sql.gz")
    listed = platform.run("list", "--all")
    assert "NOT GOOD" not in listed.stdout, listed.stdout
    with connect(name) as conn:
        conn.execute('DELETE FROM "ünï"."täb"')
        conn.execute("DROP TABLE plain")
    restored = platform.run("db-restore", "--latest", "--yes")
    assert restored.returncode == 0, restored.stderr
    assert dump_bytes(name) == before
    with connect(name) as conn:
        rows = conn.execute('SELECT label, n FROM "ünï"."täb" ORDER BY n').fetchall()
        server = conn.execute("SHOW server_encoding").fetchone()
    assert server == (encoding,)
    assert rows == ROWS  # LATIN1 converted back; SQL_ASCII kept the UTF-8 bytes it was sent
    tested = platform.run("test-restore", "--backup-file", str(artifact))
    assert tested.returncode == 0, tested.stdout + tested.stderr
