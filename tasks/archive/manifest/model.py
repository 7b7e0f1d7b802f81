"""The manifest of a full backup: `MANIFEST.json` for programs, `MANIFEST.txt` for people.

Both are the last members of the archive — written once every file has been hashed —
so a complete manifest is the archive's commit marker. Its file entries are kept on disk
(`tasks.archive.manifest.entry_store`, each a `tasks.archive.manifest.entries.FileEntry`), written out by `tasks.archive.manifest.write` and read back, validated,
by `tasks.archive.manifest.read`, which raises VerifyError for anything else, whatever the bytes.

Schema (format "chatbot-backup/1"):
  name, created_at (ISO 8601, UTC), tier, host, db_type,
  database: {artifact: "database/<file>", size, sha256, tables: {table: rows},
             privileges: {table: [owner, ["grantee:PRIVILEGE", ...]]} (PostgreSQL)} | null,
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

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tasks.archive.manifest.entries import (
    DatabaseEntry,
    FileEntry,
    count_field,
    safe_path,
    sha256_field,
    text_field,
)
from tasks.core.tiers import DEFAULT_TIER

if TYPE_CHECKING:
    from tasks.archive.manifest.entry_store import EntryStore

__all__ = ["FORMAT", "MANIFEST_JSON", "MANIFEST_TXT", "DatabaseEntry", "FileEntry", "Manifest"]

FORMAT = "chatbot-backup/1"
MANIFEST_JSON = "MANIFEST.json"
MANIFEST_TXT = "MANIFEST.txt"


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


def header_from(raw: dict[str, Any], entries: EntryStore) -> Manifest:
    """The manifest's fields, validated; `raw` is the top-level object without its lists."""
    if raw.get("format") != FORMAT:
        raise ValueError("format")
    datetime.fromisoformat(text_field(raw["created_at"], "created_at"))
    database = None
    if raw.get("database") is not None:
        db = raw["database"]
        if not isinstance(db, dict) or not isinstance(db.get("tables", {}), dict):
            raise TypeError("database")
        database = DatabaseEntry(
            artifact=safe_path(text_field(db["artifact"], "artifact")),
            size=count_field(db["size"], "size"),
            sha256=sha256_field(db["sha256"]),
            tables={
                text_field(k, "table"): count_field(v, "rows")
                for k, v in db.get("tables", {}).items()
            },
            privileges=valid_privileges(db.get("privileges")),
        )
    return Manifest(
        name=text_field(raw["name"], "name"),
        created_at=raw["created_at"],
        tier=text_field(raw.get("tier", DEFAULT_TIER["full"]), "tier"),
        host=text_field(raw.get("host", ""), "host"),
        db_type=text_field(raw.get("db_type", ""), "db_type"),
        database=database,
        entries=entries,
    )


def valid_privileges(value: object) -> dict[str, list[Any]] | None:
    """A recorded `privileges` field, or None when it is missing or not of that shape
    (then nothing is compared: old backups and SQLite have none). Format: per table key
    [owner, [sorted "grantee:PRIVILEGE" items]] (tasks/sources/pg_privileges.py)."""
    if not isinstance(value, dict):
        return None
    for key, entry in value.items():
        if not (
            isinstance(key, str)
            and isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], list)
            and all(isinstance(item, str) for item in entry[1])
        ):
            return None
    return {key: [entry[0], list(entry[1])] for key, entry in value.items()}
