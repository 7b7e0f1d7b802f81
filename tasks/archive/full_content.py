"""What a full backup's archive is made of (`ArchiveContent`, with the database artifact
as a `DatabaseMember`) and what writing it reports (`ArchiveSummary`); the writer is
`tasks.archive.full_archive.FullArchiveBuilder`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

SECTIONS = ("uploads", "config", "data")


@dataclass(frozen=True)
class DatabaseMember:
    """The database artifact, already compressed into a temporary file."""

    path: Path  # temporary file holding the artifact
    name: str  # its name inside `database/`, e.g. admin_sqlite_20251104_120000.db.gz
    size: int
    sha256: str
    tables: dict[str, int]
    privileges: dict[str, list[Any]] | None = None  # PostgreSQL: owners and privileges


@dataclass(frozen=True)
class ArchiveContent:
    """What goes into the archive, with every path already absolute and resolved."""

    top: str  # the top folder, e.g. full_backup_20251104_120000
    created_at: datetime
    tier: str
    db_type: str
    database: DatabaseMember
    uploads: Path | None
    data: Path | None
    data_exclude: frozenset[Path]
    config_files: tuple[Path, ...]
    skip_unreadable: bool = False


# What a summary carries of the per-file notes: enough to show; the counts are exact and
# the manifest inside the archive lists them all.
SUMMARY_NOTES = 100


@dataclass
class ArchiveSummary:
    name: str  # the archive's top folder, also the manifest's name
    tables: dict[str, int] = field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    sections: dict[str, list[int]] = field(default_factory=dict)  # section: [files, bytes]
    changed: list[str] = field(default_factory=list)  # the first SUMMARY_NOTES
    changed_count: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)  # the first SUMMARY_NOTES
    skipped_count: int = 0
