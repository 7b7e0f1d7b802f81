"""SQLite: a consistent snapshot through the online backup API, never a raw file copy.

The backup API copies the database as one read transaction sees it, WAL included, while
the application keeps writing. The snapshot is checked with `PRAGMA integrity_check`
before any byte of it is kept.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from tasks.core.atomic import FILE_MODE, OUT_OF_SPACE, partial_path
from tasks.core.errors import ConfigError, OutOfSpaceError, SourceError
from tasks.core.naming import SQLITE_HEADER
from tasks.sources.base import DumpResult
from tasks.stream.compress import copy_stream

BUSY_TIMEOUT_SECONDS = 30.0


def sqlite_uri(path: Path, mode: str) -> str:
    """A `file:` URI that SQLite reads back as exactly `path`, whatever its characters.

    In a URI `?` starts the parameters, `#` a fragment and `%XX` is an escape, so a
    path pasted in raw (`file:/data/a?b.db?mode=ro`) names another file — SQLite then
    opens, or creates, that one. Every byte outside the unreserved set is escaped.
    """
    quoted = quote(os.fsencode(os.path.abspath(path)), safe="/")
    return f"file:{quoted}?mode={mode}"


def connect(path: Path, mode: str = "ro", timeout: float = 5.0) -> sqlite3.Connection:
    """Open `path` with a URI `mode` (ro: never creates a file; rw: must exist)."""
    return sqlite3.connect(sqlite_uri(path, mode), uri=True, timeout=timeout)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def table_row_counts(connection: sqlite3.Connection) -> dict[str, int]:
    names = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    return {
        name: int(connection.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()[0])
        for name in names
    }


def integrity_problem(path: Path) -> str | None:
    """None when `path` is a sound SQLite database, else what is wrong with it."""
    try:
        with open(path, "rb") as handle:
            if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                return "not a SQLite database"
        connection = connect(path)
        try:
            rows = connection.execute("PRAGMA integrity_check").fetchall()
        finally:
            connection.close()
    except (sqlite3.Error, OSError) as exc:
        return str(exc)
    result = "; ".join(str(r[0]) for r in rows)
    return None if result == "ok" else result


def snapshot_database(source: Path, target: Path) -> None:
    """Copy a live database to `target` through the backup API (one consistent read).

    A full target folder is the destination's fault, not the database's: it raises
    DestinationError naming the folder (SQLite reports it as "database or disk is full",
    which read as if the live database had a problem).
    """
    try:
        src = connect(source, "rw", timeout=BUSY_TIMEOUT_SECONDS)
    except sqlite3.Error as exc:
        raise SourceError(f"cannot open SQLite database {source}: {exc}") from None
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        os.close(fd)
        dst = connect(target, "rw")
        try:
            src.backup(dst)
            # A WAL-mode source yields a WAL-mode copy; a single-file artifact is what
            # `gunzip` + `sqlite3` users expect, so the copy goes back to rollback mode.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    except OSError as exc:
        if exc.errno in OUT_OF_SPACE:
            raise _target_full(source, target) from None
        raise SourceError(f"cannot write the snapshot of {source} to {target.parent}: {exc.strerror}") from None
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            raise _target_full(source, target) from None
        busy = "locked" in str(exc) or "busy" in str(exc)
        raise SourceError(f"SQLite backup of {source} failed: {exc}", transient=busy) from None
    finally:
        src.close()


def _target_full(source: Path, target: Path) -> OutOfSpaceError:
    return OutOfSpaceError(
        f"no space left in {target.parent} while writing the snapshot of {source.name}; "
        "nothing was kept — free some space there and run again",
        target.parent,
    )


class SqliteSource:
    db_type = "sqlite"
    artifact_ext = ".db"

    def __init__(self, path: Path, scratch_dir: Path) -> None:
        self.path = path
        self.scratch_dir = scratch_dir

    def describe(self) -> str:
        return f"SQLite {self.path}"

    def check(self) -> None:
        if not self.path.exists():
            raise ConfigError(f"ADMIN_DB_PATH: SQLite database {self.path} does not exist")
        if not self.path.is_file():
            raise ConfigError(f"ADMIN_DB_PATH: {self.path} is not a file")
        try:
            with open(self.path, "rb") as handle:
                header = handle.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise SourceError(f"cannot read SQLite database {self.path}: {exc.strerror}") from None
        if header != SQLITE_HEADER:
            raise SourceError(f"{self.path} is not a SQLite database")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[tuple[Path, dict[str, int]]]:
        """A checked snapshot file and its table row counts; deleted on exit."""
        self.check()
        target = partial_path(self.scratch_dir / f"{self.path.name}.snapshot")
        try:
            snapshot_database(self.path, target)
            problem = integrity_problem(target)
            if problem is not None:
                raise SourceError(
                    f"integrity_check failed on the snapshot of {self.path}: {problem}"
                )
            connection = connect(target)
            try:
                counts = table_row_counts(connection)
            finally:
                connection.close()
            yield target, counts
        finally:
            # SQLite may leave the copy's rollback journal beside it (a full disk does).
            for path in (target, *(Path(f"{target}{s}") for s in ("-journal", "-wal", "-shm"))):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def dump(self, out: BinaryIO) -> DumpResult:
        with self.snapshot() as (snapshot, counts), open(snapshot, "rb") as handle:
            copy_stream(handle, out)
        return DumpResult(tables=counts)
