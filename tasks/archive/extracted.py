"""What an extraction wrote (kept on disk, in a scratch SQLite database, so a million
files cost no more memory than ten), and the policy that decides an archive's links.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from tasks.archive.manifest.entry_store import decode_text, encode_text, scratch_writes


@dataclass(frozen=True)
class ExtractedFile:
    size: int
    sha256: str
    inode: int = 0  # of the file written (a hard link: its target's)
    hardlink: str | None = None  # a hard-link member: the earlier member it links to


class ExtractedFiles:
    """name -> ExtractedFile for every file written, kept on disk (a temporary SQLite
    database): an archive of a million files costs no more memory than one of ten."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        with scratch_writes():
            self._db.execute(
                "CREATE TABLE files (name BLOB PRIMARY KEY, size INTEGER, sha256 TEXT,"
                " inode INTEGER, hardlink BLOB) WITHOUT ROWID"
            )
        self._count = 0

    def __setitem__(self, name: str, value: ExtractedFile) -> None:
        hardlink = None if value.hardlink is None else encode_text(value.hardlink)
        with scratch_writes():
            self._db.execute(
                "INSERT INTO files (name, size, sha256, inode, hardlink) VALUES (?, ?, ?, ?, ?)",
                (encode_text(name), value.size, value.sha256, value.inode, hardlink),
            )
        self._count += 1

    def get(self, name: str) -> ExtractedFile | None:
        row = self._db.execute(
            "SELECT size, sha256, inode, hardlink FROM files WHERE name = ?",
            (encode_text(name),),
        ).fetchone()
        if row is None:
            return None
        size, sha256, inode, hardlink = row
        return ExtractedFile(
            size, sha256, inode, None if hardlink is None else decode_text(hardlink)
        )

    def __getitem__(self, name: str) -> ExtractedFile:
        found = self.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        for (name,) in self._db.execute("SELECT name FROM files"):
            yield decode_text(name)

    def items(self) -> Iterator[tuple[str, ExtractedFile]]:
        rows = self._db.execute("SELECT name, size, sha256, inode, hardlink FROM files")
        for name, size, sha256, inode, hardlink in rows:
            link = None if hardlink is None else decode_text(hardlink)
            yield decode_text(name), ExtractedFile(size, sha256, inode, link)


class NameSet:
    """A set of names kept on disk, in a table of its own (folders: one per upload is common)."""

    def __init__(self, db: sqlite3.Connection, table: str) -> None:
        self._db = db
        self._table = table
        with scratch_writes():
            self._db.execute(f"CREATE TABLE {table} (name BLOB PRIMARY KEY) WITHOUT ROWID")
        self._count = 0

    def add(self, name: str) -> None:
        with scratch_writes():
            cursor = self._db.execute(
                f"INSERT OR IGNORE INTO {self._table} (name) VALUES (?)", (encode_text(name),)
            )
        self._count += cursor.rowcount

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        found = self._db.execute(
            f"SELECT 1 FROM {self._table} WHERE name = ?", (encode_text(name),)
        ).fetchone()
        return found is not None

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        """In byte order of the names (sorted, for names that are valid UTF-8)."""
        for (name,) in self._db.execute(f"SELECT name FROM {self._table}"):
            yield decode_text(name)


@dataclass
class Extraction:
    dest: Path
    files: ExtractedFiles  # name -> what was written
    dirs: NameSet  # folders that were members of the archive
    symlinks: dict[str, str] = field(default_factory=dict)  # created: name -> target
    external_links: dict[str, str] = field(default_factory=dict)  # not created (withheld)
    bytes: int = 0
    members: int = 0
    last_members: list[str] = field(default_factory=list)  # the last two member names
    top_folders: set[str] = field(default_factory=set)  # the first few names at the top
    set_id_dropped: int = 0  # files whose recorded setuid/setgid bits were not applied
    set_id_names: list[str] = field(default_factory=list)  # the first few of them

    def note_member(self, name: str) -> None:
        self.members += 1
        self.last_members = [*self.last_members[-1:], name]
        if len(self.top_folders) <= 3:  # enough to tell one from several, and name some
            self.top_folders.add(name.split("/", 1)[0])

    def link_target(self, name: str) -> str | None:
        return self.symlinks.get(name, self.external_links.get(name))


class Withheld:
    """A link verdict: not created and not refused here (recorded in `external_links`);
    the caller refuses the archive on other grounds (a full backup without a manifest)."""


WITHHELD = Withheld()

# (member name, link target) -> None: create the link exactly so; WITHHELD: leave it
# out; a string: why the link, and so the archive, is refused.
LinkRule = Callable[[str, str], "str | Withheld | None"]


class LinkPolicy(Protocol):
    """Decides an archive's symbolic links from what the archive itself says.

    The header pass offers it the content of regular file members it asks for (a full
    backup's MANIFEST.json); the extraction lets it read what was extracted. Either way
    `rule` then judges every link, before any link is created.
    """

    def wants(self, name: str, size: int, members_seen: int) -> bool:
        """Shown every regular file member (name, size, members so far): whether the
        header pass is to pass its content to `read` (the extraction reads nothing)."""
        ...

    def read(self, name: str, content: BinaryIO) -> None:
        """Header pass: the content of a member it wanted (read it now or never)."""
        ...

    def rule(self, extraction: Extraction | None) -> LinkRule:
        """The rule: from what the header pass read (None), or from the extracted tree."""
        ...
