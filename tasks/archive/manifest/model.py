"""The manifest of a full backup: `MANIFEST.json` for programs, `MANIFEST.txt` for people.

Both are the last members of the archive — written once every file has been hashed —
so a complete manifest is the archive's commit marker. Its file entries are kept on disk
(`tasks.archive.manifest.entry_store`), written out by `tasks.archive.manifest.write` and read back, validated,
by `tasks.archive.manifest.read`, which raises VerifyError for anything else, whatever the bytes.

Schema (format "chatbot-backup/1"):
  name, created_at (ISO 8601, UTC), tier, host, db_type,
  database: {artifact: "database/<file>", size, sha256, tables: {table: rows}} | null,
  files: [{path, type: file|dir|symlink, size, sha256, target, mode, changed}],
  skipped: [{path, reason}]
Paths are relative to the archive's top folder and use "/" (e.g. "uploads/a/b.png"). A
name may hold any byte a Linux name may (all but NUL and "/"): backslashes, newlines,
quotes; bytes that are not UTF-8 are written as `\\udcXX` escapes (PEP 383).

`target` of a symlink is what it points to, exactly as read from the live tree (absolute,
relative, leading out, dangling: restored as that link). `target` of a file is null, or
the path of an earlier file entry that is the same inode — a hard link: the archive
holds the second name as a tar hard-link member to the first, and a restore recreates
it as a link; `size` and `sha256` are the shared content's. Manifests written before
hard links were kept have `target: null` on every file, and readers that predate them
ignore a file's `target` and still verify its size and sha256.
Files named like pre-restore snapshots (`*.before_restore.<stamp>*`, `*_before_restore_<stamp>*`)
are never archived, and listed in neither `files` nor `skipped`.

Table keys of `tables` (also in `NAME.meta.json`): SQLite, the table's name; PostgreSQL,
`table` for a table in `public` and `schema.table` otherwise, where a part that holds a
dot or a double quote is written as a quoted SQL identifier (`"audit.log"`,
`"my.schema"."we""ird"`), so every key names one table (tasks.sources.postgres.table_key).
Backups made before the quoting wrote every part bare (`audit.log` for a public
"audit.log"); a restore reads such a set of keys in that old way when none of them
holds a quote and only the old reading matches the restored tables.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.archive.manifest.entry_store import EntryStore

FORMAT = "chatbot-backup/1"
MANIFEST_JSON = "MANIFEST.json"
MANIFEST_TXT = "MANIFEST.txt"
FILE_TYPES = ("file", "dir", "symlink")


@dataclass
class FileEntry:
    path: str
    type: str = "file"
    size: int = 0
    sha256: str | None = None
    # symlink: where it points; file: the earlier entry it is a hard link of (else None)
    target: str | None = None
    mode: int = 0o644
    changed: bool = False  # the file changed or vanished while it was read

    @property
    def hardlink(self) -> str | None:
        """For a file that is a hard link: the path of the earlier entry of its inode."""
        return self.target if self.type == "file" else None


@dataclass
class DatabaseEntry:
    artifact: str
    size: int
    sha256: str
    tables: dict[str, int] = field(default_factory=dict)


@dataclass
class Manifest:
    """The manifest's fields; its file entries and skipped notes live in `entries` (on disk)."""

    name: str
    created_at: str
    tier: str
    host: str
    db_type: str
    database: DatabaseEntry | None
    entries: EntryStore
    format: str = FORMAT

    @property
    def files(self) -> list[FileEntry]:
        """Every entry, in a list: for small manifests and tests; the flows iterate `entries`."""
        return list(self.entries.entries())

    @property
    def skipped(self) -> list[dict[str, str]]:
        return list(self.entries.skipped())


def parse_manifest(data: bytes | str) -> Manifest:
    """A validated Manifest from MANIFEST.json bytes; VerifyError for anything malformed."""
    from tasks.archive.manifest.read import read_manifest

    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return read_manifest(io.BytesIO(raw))


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(name)
    return value


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(name)
    return value


def _sha(value: Any) -> str:
    text = _str(value, "sha256").lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError("sha256")
    return text


def header_from(raw: dict[str, Any], entries: EntryStore) -> Manifest:
    """The manifest's fields, validated; `raw` is the top-level object without its lists."""
    if raw.get("format") != FORMAT:
        raise ValueError("format")
    datetime.fromisoformat(_str(raw["created_at"], "created_at"))
    database = None
    if raw.get("database") is not None:
        db = raw["database"]
        if not isinstance(db, dict) or not isinstance(db.get("tables", {}), dict):
            raise TypeError("database")
        database = DatabaseEntry(
            artifact=_safe_path(_str(db["artifact"], "artifact")),
            size=_int(db["size"], "size"),
            sha256=_sha(db["sha256"]),
            tables={_str(k, "table"): _int(v, "rows") for k, v in db.get("tables", {}).items()},
        )
    return Manifest(
        name=_str(raw["name"], "name"),
        created_at=raw["created_at"],
        tier=_str(raw.get("tier", "daily"), "tier"),
        host=_str(raw.get("host", ""), "host"),
        db_type=_str(raw.get("db_type", ""), "db_type"),
        database=database,
        entries=entries,
    )


def file_entry_from(item: Any) -> FileEntry:
    """One element of `files`, validated."""
    if not isinstance(item, dict):
        raise TypeError("file entry")
    kind = _str(item.get("type", "file"), "type")
    if kind not in FILE_TYPES:
        raise ValueError("type")
    return FileEntry(
        path=_safe_path(_str(item["path"], "path")),
        type=kind,
        size=_int(item.get("size", 0), "size"),
        sha256=_sha(item["sha256"]) if kind == "file" and item.get("sha256") is not None else None,
        target=_target(kind, item),
        mode=_int(item.get("mode", 0o644), "mode") & 0o7777,
        changed=bool(item.get("changed", False)),
    )


def _target(kind: str, item: dict[str, Any]) -> str | None:
    if kind == "symlink":
        return _str(item["target"], "target")
    if kind == "file" and item.get("target") is not None:
        return _safe_path(_str(item["target"], "target"))  # a hard link's first name
    return None


def skipped_from(item: Any) -> tuple[str, str]:
    """One element of `skipped`: (path, reason), any values shown as text."""
    if not isinstance(item, dict):
        raise TypeError("skipped")
    return str(item.get("path")), str(item.get("reason"))


def _safe_path(path: str) -> str:
    """Manifest paths are relative, '/'-separated, and never climb out.

    Any other character is a legal name: a backslash is a name's own character on Linux
    (issue 15: `invoice\\2024.pdf` made every full backup unrestorable).
    """
    parts = path.split("/")
    if not path or path.startswith("/") or "\x00" in path or any(p in ("", ".", "..") for p in parts):
        raise ValueError("path")
    return path
