"""Feeding a plain-SQL dump into PostgreSQL through the real `psql`, streamed.

pg_dump 15.14+ writes psql meta-commands (`\\restrict KEY`) into plain dumps, so a dump is
replayed by `psql`, never executed as text by a driver. `ON_ERROR_STOP` plus
`--single-transaction` make the load all-or-nothing against SQL errors: the first
failing statement rolls everything back. It does NOT protect against a feeder killed
mid-stream (psql commits what it read), so this loader serves scratch databases only;
live restores use `tasks.restore_postgres`, which sends COMMIT itself once the whole,
verified dump has been read. The password travels in `PGPASSWORD`, never in the arguments.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterable
from typing import BinaryIO

import psycopg
from psycopg import sql

from tasks.compress import BLOCK_SIZE
from tasks.errors import RestoreError, SourceError
from tasks.sources.postgres import connect, first_line, libpq_environment, widen_pipe


def load_sql_dump(
    params: dict[str, str],
    dump: BinaryIO,
    *,
    dbname: str | None = None,
    prologue: Iterable[bytes] = (),
    single_transaction: bool = True,
) -> None:
    """Replay the SQL read from `dump` (uncompressed) into `dbname` (default: the URL's)."""
    target = {**params, **({"dbname": dbname} if dbname else {})}
    command = [
        "psql",
        "--no-psqlrc",
        "--quiet",
        "--no-password",
        "-v",
        "ON_ERROR_STOP=1",
        "--output=/dev/null",
    ]
    if single_transaction:
        command.append("--single-transaction")
    with tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=libpq_environment(target),
            )
        except FileNotFoundError:
            raise RestoreError("psql is not installed or not on PATH") from None
        assert process.stdin is not None
        widen_pipe(process.stdin.fileno())
        try:
            for chunk in prologue:
                process.stdin.write(chunk)
            while chunk := dump.read(BLOCK_SIZE):
                process.stdin.write(chunk)
        except BrokenPipeError:
            pass  # psql stopped on an error; its exit code and stderr say which
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            try:
                process.stdin.close()
            except BrokenPipeError:
                pass
        code = process.wait()
        if code != 0:
            stderr.seek(0)
            message = stderr.read(64 * 1024).decode("utf-8", "replace")
            raise RestoreError(
                f"psql stopped on an error, nothing was applied: {first_line(message)}"
            )


def create_database(params: dict[str, str], name: str) -> None:
    with connect(params, dbname="postgres") as conn:
        conn.autocommit = True
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise SourceError(f"cannot create database {name}: {first_line(str(exc))}") from None


def drop_database(params: dict[str, str], name: str) -> None:
    with connect(params, dbname="postgres") as conn:
        conn.autocommit = True
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
