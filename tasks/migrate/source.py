"""The SQLite database to migrate, watched from before the final backup.

A read-only connection and its `PRAGMA data_version` when it was opened: any commit by
another connection since then changes that number (a WAL checkpoint does too, which is
why the migration then compares the data itself before it refuses).
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from tasks.core.errors import ConfigError, SourceError
from tasks.sources.sqlite import SQLITE_HEADER


@dataclass
class SourceWatch:
    """A read-only connection to the live SQLite database and its `data_version` when it
    was opened: any commit by another connection since then changes that number."""

    path: Path
    connection: sqlite3.Connection
    data_version: int

    def changed(self) -> bool:
        return data_version(self.connection) != self.data_version

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.connection.close()


def data_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA data_version").fetchone()[0])


def watch_source(path: Path) -> SourceWatch:
    """Open the SQLite database to migrate (read-only use) and note its data_version."""
    if not path.is_file():
        raise ConfigError(f"ADMIN_DB_PATH: SQLite database {path} does not exist")
    try:
        with open(path, "rb") as handle:
            if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise SourceError(f"{path} is not a SQLite database")
        connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA query_only = 1")
        return SourceWatch(path, connection, data_version(connection))
    except (OSError, sqlite3.Error) as exc:
        raise SourceError(f"cannot open SQLite database {path}: {exc}") from None
