"""The manifest of a full backup: `MANIFEST.json` for programs, `MANIFEST.txt` for people.

Both are the last members of the archive — written once every file has been hashed —
so a complete manifest is the archive's commit marker. `parse_manifest` accepts only
well-formed input and raises VerifyError for anything else, whatever the bytes.

Schema (format "chatbot-backup/1"):
  name, created_at (ISO 8601, UTC), tier, host, db_type,
  database: {artifact: "database/<file>", size, sha256, tables: {table: rows}} | null,
  files: [{path, type: file|dir|symlink, size, sha256, target, mode, changed}],
  skipped: [{path, reason}]
Paths are relative to the archive's top folder and use "/" (e.g. "uploads/a/b.png").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from tasks.errors import VerifyError

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
    target: str | None = None  # symlinks only
    mode: int = 0o644
    changed: bool = False  # the file changed or vanished while it was read


@dataclass
class DatabaseEntry:
    artifact: str
    size: int
    sha256: str
    tables: dict[str, int] = field(default_factory=dict)


@dataclass
class Manifest:
    name: str
    created_at: str
    tier: str
    host: str
    db_type: str
    database: DatabaseEntry | None
    files: list[FileEntry] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    def to_text(self) -> str:
        lines = [
            "GPT Chatbot platform — full backup manifest",
            f"Backup:     {self.name}",
            f"Created:    {self.created_at}",
            f"Tier:       {self.tier}",
            f"Host:       {self.host}",
            f"Database:   {self.db_type}",
        ]
        if self.database is not None:
            lines.append(f"DB file:    {self.database.artifact} ({self.database.size} bytes, sha256 {self.database.sha256})")
            lines.append("Tables:")
            lines += [f"  {table}: {rows} rows" for table, rows in sorted(self.database.tables.items())]
        regular = [f for f in self.files if f.type == "file"]
        lines.append(f"Files:      {len(regular)} files, {sum(f.size for f in regular)} bytes")
        for section in ("uploads", "config", "data"):
            inside = [f for f in regular if f.path.startswith(section + "/")]
            lines.append(f"  {section + '/':9} {len(inside)} files, {sum(f.size for f in inside)} bytes")
        changed = [f.path for f in self.files if f.changed]
        if changed:
            lines.append("Changed while being read (re-run the backup for a clean copy):")
            lines += [f"  {p}" for p in changed]
        if self.skipped:
            lines.append("Skipped:")
            lines += [f"  {s.get('path')}: {s.get('reason')}" for s in self.skipped]
        lines.append("")
        lines.append("Checksums (sha256  size  path):")
        lines += [f"{f.sha256}  {f.size}  {f.path}" for f in regular]
        return "\n".join(lines) + "\n"


def parse_manifest(data: bytes | str) -> Manifest:
    """A validated Manifest from MANIFEST.json bytes; VerifyError for anything malformed."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise VerifyError("MANIFEST.json is not valid JSON") from None
    try:
        return _build(raw)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise VerifyError(f"MANIFEST.json is malformed: {type(exc).__name__}") from None


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


def _build(raw: Any) -> Manifest:
    if not isinstance(raw, dict):
        raise TypeError("top level")
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
    files = []
    if not isinstance(raw.get("files", []), list):
        raise TypeError("files")
    for item in raw.get("files", []):
        if not isinstance(item, dict):
            raise TypeError("file entry")
        kind = _str(item.get("type", "file"), "type")
        if kind not in FILE_TYPES:
            raise ValueError("type")
        files.append(
            FileEntry(
                path=_safe_path(_str(item["path"], "path")),
                type=kind,
                size=_int(item.get("size", 0), "size"),
                sha256=_sha(item["sha256"]) if kind == "file" and item.get("sha256") is not None else None,
                target=_str(item["target"], "target") if kind == "symlink" else None,
                mode=_int(item.get("mode", 0o644), "mode") & 0o7777,
                changed=bool(item.get("changed", False)),
            )
        )
    skipped = raw.get("skipped", [])
    if not isinstance(skipped, list) or not all(isinstance(s, dict) for s in skipped):
        raise TypeError("skipped")
    return Manifest(
        name=_str(raw["name"], "name"),
        created_at=raw["created_at"],
        tier=_str(raw.get("tier", "daily"), "tier"),
        host=_str(raw.get("host", ""), "host"),
        db_type=_str(raw.get("db_type", ""), "db_type"),
        database=database,
        files=files,
        skipped=[{str(k): str(v) for k, v in s.items()} for s in skipped],
    )


def _safe_path(path: str) -> str:
    """Manifest paths are relative, '/'-separated, and never climb out."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or "\x00" in path or any(p in ("", ".", "..") for p in parts):
        raise ValueError("path")
    return path
