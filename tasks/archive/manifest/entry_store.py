"""A manifest's file entries kept on disk, so memory stays flat however many files there are.

A full backup lists every file it holds; at 50,000 files, lists of entries, the dicts
that `json` builds and the text they become took over 100 MB. Here the entries live in a
private temporary SQLite database (`sqlite3.connect("")`): SQLite keeps a small page
cache in memory and spills the rest to a file under TMPDIR that it deletes itself when
the connection closes (or the process dies). Entries come back in the order they were
added, looked up by path through an index, or summed by SQL, never all at once.

Paths and link targets are stored as bytes: a file name that is not UTF-8 reaches
Python as lone surrogates, which SQLite's text type cannot hold ("surrogatepass" keeps
every one, whatever its value, and gives it back unchanged).
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from collections.abc import Iterator
from typing import Any

from tasks.archive.manifest.entries import FileEntry
from tasks.core.errors import ScratchSpaceError

_SCHEMA = """
CREATE TABLE entries (
    path BLOB NOT NULL, type TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT,
    target BLOB, mode INTEGER NOT NULL, changed INTEGER NOT NULL
);
CREATE INDEX entries_by_path ON entries (path);
CREATE TABLE skipped (path BLOB NOT NULL, reason BLOB NOT NULL);
"""
_COLUMNS = "path, type, size, sha256, target, mode, changed"


def encode_text(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def decode_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


def scratch_space_error(problem: object) -> ScratchSpaceError:
    return ScratchSpaceError(
        f"temporary space in {tempfile.gettempdir()} failed ({problem}); free some space "
        "there or set TMPDIR to a larger folder, then run again — nothing was changed"
    )


@contextlib.contextmanager
def scratch_writes() -> Iterator[None]:
    """SQLite's "database or disk is full" names neither the folder nor what to do."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise scratch_space_error(exc) from None


def open_scratch_database() -> sqlite3.Connection:
    """A private on-disk SQLite database that SQLite deletes when it is closed."""
    # check_same_thread=False: Prefect may run the task that reads it in another thread
    # than the one that filled it; it is never used by two threads at once.
    db = sqlite3.connect("", check_same_thread=False)
    # Scratch data: no journal, no fsync; a crash loses nothing that matters.
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("PRAGMA synchronous = OFF")
    db.execute("PRAGMA cache_size = -4096")  # KiB: the most it keeps in memory
    db.execute("PRAGMA temp_store = FILE")  # sorts spill to disk too
    return db


def section_range(section: str) -> tuple[bytes, bytes, bytes]:
    """(section, section + "/", the first key after every "section/...") for a range scan."""
    name = encode_text(section)
    return name, name + b"/", name + b"0"  # "0" is the byte after "/"


_IN_SECTION = "(path = ? OR (path >= ? AND path < ?))"


class EntryStore:
    """File entries and skipped notes of one manifest, in insertion order, on disk."""

    def __init__(self) -> None:
        self._db = open_scratch_database()
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EntryStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------
    def add(self, entry: FileEntry) -> None:
        with scratch_writes():
            self._insert(entry)

    def _insert(self, entry: FileEntry) -> None:
        self._db.execute(
            f"INSERT INTO entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                encode_text(entry.path),
                entry.type,
                entry.size,
                entry.sha256,
                None if entry.target is None else encode_text(entry.target),
                entry.mode,
                int(entry.changed),
            ),
        )

    def add_skipped(self, path: str, reason: str) -> None:
        with scratch_writes():
            self._db.execute(
                "INSERT INTO skipped (path, reason) VALUES (?, ?)",
                (encode_text(path), encode_text(reason)),
            )

    # -- reading ------------------------------------------------------------------------
    def entries(self, section: str | None = None, kind: str | None = None) -> Iterator[FileEntry]:
        """Every entry in the order it was added; only those in `section/` or of `kind`."""
        where, args = self._filter(section, kind)
        cursor = self._db.execute(f"SELECT {_COLUMNS} FROM entries{where} ORDER BY rowid", args)
        for row in cursor:
            yield _entry(row)

    def get(self, path: str) -> FileEntry | None:
        """The first entry recorded for `path`."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE path = ? ORDER BY rowid LIMIT 1",
            (encode_text(path),),
        ).fetchone()
        return None if row is None else _entry(row)

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        found = self._db.execute(
            "SELECT 1 FROM entries WHERE path = ? LIMIT 1", (encode_text(path),)
        ).fetchone()
        return found is not None

    def count(self, section: str | None = None, kind: str | None = None) -> int:
        where, args = self._filter(section, kind)
        return int(self._db.execute(f"SELECT count(*) FROM entries{where}", args).fetchone()[0])

    def total_size(self, section: str | None = None, kind: str | None = "file") -> int:
        """Bytes of content: a hard link (a file with a target) is a second name, not more."""
        where, args = self._filter(section, kind)
        total = self._db.execute(
            "SELECT sum(CASE WHEN type = 'file' AND target IS NOT NULL THEN 0 ELSE size END)"
            f" FROM entries{where}",
            args,
        ).fetchone()[0]
        return int(total or 0)

    def changed(self, section: str | None = None) -> Iterator[str]:
        """Paths of the files that changed while they were read, in order."""
        where, args = self._filter(section, None)
        where += " AND changed" if where else " WHERE changed"
        for (path,) in self._db.execute(f"SELECT path FROM entries{where} ORDER BY rowid", args):
            yield decode_text(path)

    def changed_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM entries WHERE changed").fetchone()[0])

    def skipped(self) -> Iterator[dict[str, str]]:
        for path, reason in self._db.execute("SELECT path, reason FROM skipped ORDER BY rowid"):
            yield {"path": decode_text(path), "reason": decode_text(reason)}

    def skipped_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM skipped").fetchone()[0])

    @staticmethod
    def _filter(section: str | None, kind: str | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if section is not None:
            clauses.append(_IN_SECTION)
            args += section_range(section)
        if kind is not None:
            clauses.append("type = ?")
            args.append(kind)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _entry(row: tuple[Any, ...]) -> FileEntry:
    path, kind, size, sha256, target, mode, changed = row
    return FileEntry(
        path=decode_text(path),
        type=kind,
        size=size,
        sha256=sha256,
        target=None if target is None else decode_text(target),
        mode=mode,
        changed=bool(changed),
    )
