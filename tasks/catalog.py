"""What backups a folder holds: our names only, with their tier and sidecars.

A backup's tier is read from its small `NAME.meta.json` sidecar, so rotation never has
to open an archive. A backup without one (made by the guide's shell scripts, or copied
in by hand) belongs to the default tier of its kind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.atomic import write_text_atomic
from tasks.naming import DEFAULT_TIER, TIERS, BackupName, meta_name, parse_backup_name, sidecar_name


@dataclass(frozen=True)
class BackupRecord:
    path: Path
    name: BackupName
    tier: str
    size: int
    tier_marked: bool

    @property
    def kind(self) -> str:
        return self.name.kind

    @property
    def created_at(self) -> datetime:
        return self.name.created_at

    @property
    def looks_complete(self) -> bool:
        """Cheap test used by rotation: a non-empty file under a final name."""
        return self.size > 0

    def companions(self) -> list[Path]:
        """The sidecars that belong to this backup (they go when it goes)."""
        return [
            self.path.with_name(sidecar_name(self.path.name)),
            self.path.with_name(meta_name(self.path.name)),
        ]


def write_meta(artifact: Path, meta: dict[str, Any]) -> Path:
    path = artifact.with_name(meta_name(artifact.name))
    write_text_atomic(path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def read_meta(artifact: Path) -> dict[str, Any]:
    path = artifact.with_name(meta_name(artifact.name))
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def list_backups(folder: Path) -> list[BackupRecord]:
    """Every backup in `folder` (not recursive), oldest first.

    One directory scan; a `.meta.json` is opened only when the scan saw it, so a folder
    of ten thousand backups is listed without ten thousand failed opens.
    """
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    names = {entry.name for entry in entries}
    records = []
    for entry in entries:
        parsed = parse_backup_name(entry.name)
        if parsed is None or not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        tier = read_meta(path).get("tier") if meta_name(entry.name) in names else None
        marked = isinstance(tier, str) and tier in TIERS
        records.append(
            BackupRecord(
                path=path,
                name=parsed,
                tier=tier if marked else DEFAULT_TIER[parsed.kind],  # type: ignore[arg-type]
                size=entry.stat(follow_symlinks=False).st_size,
                tier_marked=marked,
            )
        )
    records.sort(key=lambda r: (r.created_at, r.path.name))
    return records
