"""The interface every database source implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol


@dataclass(frozen=True)
class DumpResult:
    """What a dump saw, in the dump's own snapshot: the row count of every table, and
    (PostgreSQL) each table's owner and privileges (tasks/sources/pg_privileges.py)."""

    tables: dict[str, int] = field(default_factory=dict)
    privileges: dict[str, list[Any]] | None = None


class DatabaseSource(Protocol):
    db_type: str
    artifact_ext: str  # ".db" or ".sql"

    def describe(self) -> str:
        """Where the database is, with no secret in it."""
        ...

    def check(self) -> None:
        """Raise SourceError/ConfigError when the database cannot be backed up."""
        ...

    def dump(self, out: BinaryIO) -> DumpResult:
        """Write a consistent dump to `out` (uncompressed)."""
        ...
