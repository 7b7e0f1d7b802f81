"""The interface every database source implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class DumpResult:
    """What a dump saw: the row count of every table, in the dump's own snapshot."""

    tables: dict[str, int] = field(default_factory=dict)


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
