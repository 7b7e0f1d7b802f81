"""Feeding a plain-SQL dump into PostgreSQL through the real `psql`, in one guarded
transaction whose outcome is read back, never inferred from psql's exit code.

pg_dump 15.14+ writes psql meta-commands (`\\restrict KEY`) into plain dumps, so a dump is
replayed by `psql`, never executed as text by a driver. psql's exit code proves little:
psql 15 quits silently, exit 0, at a lone `;` after COPY data, and `--single-transaction`
commits whatever it read when its input ends. So psql runs with `ON_ERROR_STOP` and
`AUTOCOMMIT=off` (nothing it runs after an unexpected end of the transaction commits on
its own), and the caller's SQL (tasks/restore/postgres.py) talks back through notices
tagged with a random token:
- the prologue reports the transaction's id (`XID_TAG token xid`) right after BEGIN;
- the check block, run after the whole dump, reports the row counts it found
  (`COUNTS_TAG token json`) and is the only SQL that allows the COMMIT sent here last.
The caller then asks a fresh session whether that transaction committed
(`transaction_status`). The password travels in `PGPASSWORD`, never in the arguments.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, BinaryIO

import psycopg
from psycopg import sql

from tasks.core.errors import RestoreError, SourceError
from tasks.sources.postgres import connect, first_line, libpq_environment, widen_pipe
from tasks.stream.compress import BLOCK_SIZE

XID_TAG = "chatbot-backup-xid"
COUNTS_TAG = "chatbot-backup-counts"
COMMIT = b"COMMIT;\n"
_POLL_SECONDS = 0.01
_MESSAGE_BYTES = 64 * 1024


@dataclass(frozen=True)
class PsqlOutcome:
    """What psql reported: its exit code, the transaction id the prologue announced, the
    counts the check block found (None: it did not run), and the first error line."""

    code: int
    xid: int | None
    found: dict[tuple[str, str], int] | None
    error: str


class _Notices:
    """psql's stderr (a temporary file): our tagged notices in it, and the error lines."""

    def __init__(self, stderr: IO[bytes], token: str) -> None:
        self._file = stderr
        self._xid = re.compile(rb"%s %s (\d+)" % (XID_TAG.encode(), token.encode()))
        self._counts = re.compile(rb"%s %s (\[.*\])\s*$" % (COUNTS_TAG.encode(), token.encode()), re.M)
        self._tags = (XID_TAG.encode(), COUNTS_TAG.encode())

    def _text(self) -> bytes:
        # pread: psql writes through the same open file, whose offset must not move.
        fd = self._file.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0)

    def xid(self) -> int | None:
        match = self._xid.search(self._text())
        return int(match.group(1)) if match else None

    def found(self) -> dict[tuple[str, str], int] | None:
        """Rows per (schema, table), as the check block reported them."""
        match = self._counts.search(self._text())
        if match is None:
            return None
        try:
            rows = json.loads(match.group(1))
            return {(str(schema), str(table)): int(count) for schema, table, count in rows}
        except (ValueError, TypeError):
            return None

    def error(self) -> str:
        """The line that says why psql stopped: not our tags, nor the server's notices
        (DROP SCHEMA ... CASCADE reports every table it drops)."""
        lines = [
            line
            for line in self._text()[-_MESSAGE_BYTES:].decode("utf-8", "replace").splitlines()
            if not any(tag.decode() in line for tag in self._tags) and "NOTICE:" not in line
        ]
        return first_line("\n".join(lines))


def _wait_for_xid(process: subprocess.Popen[bytes], notices: _Notices) -> int | None:
    """The prologue's transaction id, once psql has run it; None if psql ended first."""
    while True:
        xid = notices.xid()
        if xid is not None or process.poll() is not None:
            return xid if xid is not None else notices.xid()
        time.sleep(_POLL_SECONDS)


def run_guarded_transaction(
    params: dict[str, str],
    prologue: bytes,
    dump: BinaryIO,
    check: bytes,
    token: str,
    *,
    dbname: str | None = None,
    application_name: str | None = None,
    before_commit: Callable[[int], None] | None = None,
) -> PsqlOutcome:
    """Send `prologue`, the SQL read from `dump` (uncompressed), then — once the dump is
    exhausted and psql has announced its transaction id — `before_commit(xid)`, `check`
    and COMMIT. An exception from `dump` or `before_commit` kills psql (its transaction
    rolls back) and propagates. psql's own failures are returned, not raised."""
    target = {**params, **({"dbname": dbname} if dbname else {})}
    if application_name:
        target["application_name"] = application_name
    command = [
        "psql",
        "--no-psqlrc",
        "--quiet",
        "--no-password",
        "-v",
        "ON_ERROR_STOP=1",
        "-v",
        "AUTOCOMMIT=off",
        "--output=/dev/null",
    ]
    with tempfile.TemporaryFile() as stderr:
        notices = _Notices(stderr, token)
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
        xid: int | None = None
        try:
            process.stdin.write(prologue)
            while chunk := dump.read(BLOCK_SIZE):
                process.stdin.write(chunk)
            process.stdin.flush()
            xid = _wait_for_xid(process, notices)
            if xid is not None and process.poll() is None:
                if before_commit is not None:
                    before_commit(xid)
                process.stdin.write(check + COMMIT)
        except BrokenPipeError:
            pass  # psql stopped; its exit code and stderr say why
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
        return PsqlOutcome(code, xid if xid is not None else notices.xid(), notices.found(), notices.error())


def transaction_status(
    params: dict[str, str], xid: int, dbname: str | None = None, settle_seconds: float = 30
) -> str | None:
    """'committed' or 'aborted' (or 'in progress' if it stays so for `settle_seconds`: a
    session whose client is gone ends a moment later), asked of a fresh session; None
    when the server no longer knows the transaction (too old)."""
    deadline = time.monotonic() + settle_seconds
    with connect(params, **({"dbname": dbname} if dbname else {})) as connection:
        connection.autocommit = True
        while True:
            try:
                row = connection.execute("SELECT txid_status(%s)", (xid,)).fetchone()
            except psycopg.Error as exc:
                raise RestoreError(
                    f"cannot ask PostgreSQL whether the restore committed: {first_line(str(exc))}"
                ) from None
            status = None if row is None or row[0] is None else str(row[0])
            if status != "in progress" or time.monotonic() > deadline:
                return status
            time.sleep(0.05)


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
