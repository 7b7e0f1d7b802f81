"""Database sources: the same small interface for SQLite and PostgreSQL.

A source can `check` that it is reachable, `dump` itself as a byte stream (the
artifact format of SPEC.md: a SQLite database file, or plain-SQL `pg_dump` output), and
count the rows of its tables. Restores live in `tasks.restore.sqlite` and `tasks.restore.postgres`.
"""

from __future__ import annotations

from pathlib import Path

from tasks.sources.base import DatabaseSource, DumpResult
from tasks.sources.postgres import PostgresSource
from tasks.sources.sqlite import SqliteSource

__all__ = ["DatabaseSource", "DumpResult", "PostgresSource", "SqliteSource", "database_source"]


def database_source(
    db_type: str, *, db_path: Path, database_url: str | None, scratch_dir: Path
) -> DatabaseSource:
    if db_type == "postgres":
        assert database_url is not None
        return PostgresSource(database_url)
    return SqliteSource(db_path, scratch_dir)
