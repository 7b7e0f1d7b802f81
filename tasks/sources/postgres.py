"""PostgreSQL: plain-SQL `pg_dump`, streamed, consistent with the row counts it reports.

A REPEATABLE READ transaction exports its snapshot; the row counts are read in it and
`pg_dump --snapshot` dumps exactly that state, so the manifest's counts match the dump
even while the application writes. The password reaches `pg_dump` through its
environment (`PGPASSWORD`), never its arguments, which every user can read in `ps`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tasks.core.errors import ConfigError, SourceError
from tasks.core.redact import redact, register_secret
from tasks.sources.base import DumpResult
from tasks.stream.compress import BLOCK_SIZE

CONNECT_TIMEOUT_SECONDS = 10

# libpq connection parameters and the environment variables that carry them.
_PARAM_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}


def parse_database_url(url: str) -> dict[str, str]:
    """libpq parameters of `url`; a malformed URL is a ConfigError without the URL in it."""
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    except psycopg.ProgrammingError:
        raise ConfigError("ADMIN_DATABASE_URL is not a valid postgresql:// URL") from None
    if "password" in params:
        register_secret(params["password"])
    return params


def libpq_environment(params: dict[str, str]) -> dict[str, str]:
    """The environment for `pg_dump`/`psql`: the caller's, plus the connection as PG* vars."""
    env = dict(os.environ)
    for key, value in params.items():
        variable = _PARAM_ENV.get(key)
        if variable is None:
            raise ConfigError(f"ADMIN_DATABASE_URL: unsupported connection parameter {key!r}")
        env[variable] = value
    return env


def connect(params: dict[str, str], **overrides: str) -> psycopg.Connection:
    merged = {**params, **overrides}
    merged.setdefault("connect_timeout", str(CONNECT_TIMEOUT_SECONDS))
    # Names and the snapshot id as text whatever the database's encoding: in a SQL_ASCII
    # database psycopg returns bytes, and pg_dump was handed "--snapshot b'0000...'".
    # The server converts from LATIN1 & co.; from SQL_ASCII it passes the bytes as they are.
    merged.setdefault("client_encoding", "utf8")
    try:
        return psycopg.connect(**merged)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        where = f"{merged.get('host', 'local socket')}:{merged.get('port', '5432')}/{merged.get('dbname', '')}"
        raise SourceError(
            f"cannot connect to PostgreSQL at {where}: {first_line(str(exc))}"
        ) from None


def first_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    # libpq puts the useful part ("FATAL: password authentication failed ...") last.
    useful = [line for line in lines if "FATAL" in line or "error" in line.lower()]
    return redact(useful[-1] if useful else (lines[-1] if lines else "unknown error"))


# The tables whose rows a backup records and a restore checks: ordinary and partitioned
# tables of every schema but the system ones. Temporary tables (this or another
# session's `pg_temp_N`) are not the database's content and cannot even be read across
# sessions. tasks/restore/postgres.py runs the same query inside the restore.
USER_TABLES_SQL = (
    "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname !~ '^pg_(toast_)?temp_' AND n.nspname !~ '^pg_toast' "
    "ORDER BY 1, 2"
)


def _key_part(name: str) -> str:
    if "." in name or '"' in name:
        return '"' + name.replace('"', '""') + '"'
    return name


def table_key(schema: str, table: str) -> str:
    """The row-count key of a table (format: see tasks/archive/manifest/model.py): `table` in `public`,
    `schema.table` elsewhere, a part holding a dot or a double quote quoted as SQL does."""
    if schema == "public":
        return _key_part(table)
    return f"{_key_part(schema)}.{_key_part(table)}"


def legacy_table_key(schema: str, table: str) -> str:
    """The key backups made before the quoting recorded (ambiguous with dots in names)."""
    return table if schema == "public" else f"{schema}.{table}"


def may_be_legacy(keys: Iterable[str]) -> bool:
    """Whether recorded keys may be the old, unquoted format: none holds a quote (a dict
    without quotes reads the same in both formats unless a name holds a dot)."""
    return not any('"' in key for key in keys)


def keyed_like(
    expected: dict[str, int] | None, relations: dict[tuple[str, str], int]
) -> dict[str, int]:
    """Counts per table, keyed as `expected` keys them: the current format, or the old one
    when `expected` may be old and only the old keys match it."""
    current = {table_key(s, t): n for (s, t), n in relations.items()}
    if expected is None or current == expected or not may_be_legacy(expected):
        return current
    legacy = {legacy_table_key(s, t): n for (s, t), n in relations.items()}
    return legacy if set(legacy) == set(expected) else current


def relation_counts(connection: psycopg.Connection) -> dict[tuple[str, str], int]:
    """Rows per (schema, table) of every user table."""
    counts: dict[tuple[str, str], int] = {}
    for schema, table in connection.execute(USER_TABLES_SQL).fetchall():
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = connection.execute(query).fetchone()
        counts[(str(schema), str(table))] = int(row[0]) if row else 0
    return counts


def row_counts(connection: psycopg.Connection) -> dict[str, int]:
    """Rows per table, keyed by `table_key`: what a backup records."""
    return {table_key(s, t): n for (s, t), n in relation_counts(connection).items()}


class PostgresSource:
    db_type = "postgres"
    artifact_ext = ".sql"

    def __init__(self, url: str) -> None:
        self.params = parse_database_url(url)

    def describe(self) -> str:
        return (
            f"PostgreSQL {self.params.get('user', '')}@{self.params.get('host', 'local socket')}:"
            f"{self.params.get('port', '5432')}/{self.params.get('dbname', '')}"
        )

    def check(self) -> None:
        with connect(self.params) as connection:
            connection.execute("SELECT 1")

    def dump(self, out: BinaryIO) -> DumpResult:
        connection = connect(self.params)
        try:
            # Set on the connection, not by a `BEGIN ISOLATION LEVEL ...` statement: psycopg
            # opens its own transaction before the first statement, so such a BEGIN came
            # second and the server logged "there is already a transaction in progress"
            # on every backup (it still applied the level: no snapshot had been taken).
            connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            connection.read_only = True
            row = connection.execute("SELECT pg_export_snapshot()").fetchone()
            assert row is not None
            snapshot_id = str(row[0])
            # The counts scan every table once: in a second thread, on the snapshot's own
            # connection, while pg_dump streams (issue 8: at 1 GB they took 0.5 s before
            # the dump started). The exporting transaction stays open until both ended.
            with ThreadPoolExecutor(1, thread_name_prefix="row-counts") as pool:
                counting = pool.submit(_counts_and_privileges, connection)
                try:
                    run_pg_dump(self.params, out, ["--snapshot", snapshot_id])
                except BaseException as dumping:
                    # Do not wait for a scan nobody will read; the dump's own error is the
                    # one to report, even when the server is gone and cannot be asked...
                    with contextlib.suppress(Exception):
                        connection.cancel_safe(timeout=5)
                    cause = counting.exception() if not counting.cancel() else None
                    # ...unless the scan failed first on its own: a table this role may not
                    # read aborts the exporting transaction, and pg_dump then only says
                    # "could not import the requested snapshot".
                    if isinstance(dumping, SourceError) and _own_failure(cause):
                        raise SourceError(
                            f"cannot read every table: {first_line(str(cause))}"
                        ) from None
                    raise
                counts, privileges = counting.result()
            connection.commit()
        finally:
            connection.close()
        return DumpResult(tables=counts, privileges=privileges)


def _counts_and_privileges(
    connection: psycopg.Connection,
) -> tuple[dict[str, int], dict[str, list[Any]]]:
    """What the backup records of the dump's snapshot: rows, owners and privileges."""
    from tasks.sources.pg_privileges import table_privileges  # it builds on this module

    return row_counts(connection), table_privileges(connection)


def _own_failure(error: BaseException | None) -> bool:
    """An error of the count scan itself, not the cancel that stopped it."""
    return isinstance(error, psycopg.Error) and not isinstance(
        error, psycopg.errors.QueryCanceled | psycopg.OperationalError
    )


def widen_pipe(fd: int) -> None:
    """A 1 MiB pipe instead of 64 KiB: a client and the process at the other end wake
    each other 16× less often. Best effort: the default size works, only slower."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, BLOCK_SIZE)


def run_pg_dump(params: dict[str, str], out: BinaryIO, extra_args: list[str] | None = None) -> None:
    """Stream plain-SQL `pg_dump` output into `out`, with every object's owner and
    privileges (a restore that leaves them out says so: tasks/sources/ownership.py)."""
    command = ["pg_dump", "--format=plain", "--no-password"]
    command += extra_args or []
    with tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=stderr, env=libpq_environment(params)
            )
        except FileNotFoundError:
            raise SourceError("pg_dump is not installed or not on PATH") from None
        assert process.stdout is not None
        widen_pipe(process.stdout.fileno())
        try:
            while chunk := process.stdout.read(BLOCK_SIZE):
                out.write(chunk)
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            process.stdout.close()
        code = process.wait()
        if code != 0:
            stderr.seek(0)
            message = stderr.read(64 * 1024).decode("utf-8", "replace")
            raise SourceError(f"pg_dump failed (exit {code}): {first_line(message)}")
