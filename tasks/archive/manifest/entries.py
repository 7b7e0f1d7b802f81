"""A manifest's entries: one file (or folder, or link) and the database record, validated.

The lowest piece of the manifest: the entry store keeps `FileEntry`s on disk, the model
holds the `DatabaseEntry`, the reader validates each element with the functions here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    # PostgreSQL: each table's owner and privileges (tasks/sources/pg_privileges.py).
    privileges: dict[str, list[Any]] | None = None


def text_field(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(name)
    return value


def count_field(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(name)
    return value


def sha256_field(value: Any) -> str:
    text = text_field(value, "sha256").lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError("sha256")
    return text


def file_entry_from(item: Any) -> FileEntry:
    """One element of `files`, validated."""
    if not isinstance(item, dict):
        raise TypeError("file entry")
    kind = text_field(item.get("type", "file"), "type")
    if kind not in FILE_TYPES:
        raise ValueError("type")
    return FileEntry(
        path=safe_path(text_field(item["path"], "path")),
        type=kind,
        size=count_field(item.get("size", 0), "size"),
        sha256=sha256_field(item["sha256"])
        if kind == "file" and item.get("sha256") is not None
        else None,
        target=link_target(kind, item),
        mode=count_field(item.get("mode", 0o644), "mode") & 0o7777,
        changed=bool(item.get("changed", False)),
    )


def link_target(kind: str, item: dict[str, Any]) -> str | None:
    if kind == "symlink":
        return text_field(item["target"], "target")
    if kind == "file" and item.get("target") is not None:
        return safe_path(text_field(item["target"], "target"))  # a hard link's first name
    return None


def skipped_from(item: Any) -> tuple[str, str]:
    """One element of `skipped`: (path, reason), any values shown as text."""
    if not isinstance(item, dict):
        raise TypeError("skipped")
    return str(item.get("path")), str(item.get("reason"))


def safe_path(path: str) -> str:
    """Manifest paths are relative, '/'-separated, and never climb out.

    Any other character is a legal name: a backslash is a name's own character on Linux
    (issue 15: `invoice\\2024.pdf` made every full backup unrestorable).
    """
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\x00" in path
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise ValueError("path")
    return path
