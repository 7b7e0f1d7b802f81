"""What backups a folder holds: our names only, with their tier, sidecars and verdict.

A backup's tier is read from its small `NAME.meta.json` sidecar, so rotation never has
to open an archive. A backup without one (made by the guide's shell scripts, or copied
in by hand) belongs to the default tier of its kind. Every record carries the verdict of
the one "good backup" test (tasks.catalog.good_backup), which reads only sidecars and the head
of the file; rotation, the monitor and restore choosing all go by it.

Pre-restore snapshots (`{DB_PATH}.before_restore.*` beside the SQLite database,
`admin_postgres_before_restore_*` and `full_before_restore_*` in the backup folder) are
not backups: `list_backups` never returns them, so the monitor never counts them.
`list_snapshots` lists them for rotation, which treats each family like backups of its
kind in that kind's default tier.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.catalog.good_backup import Verdict, judge_backup
from tasks.core.atomic import write_text_atomic
from tasks.core.naming import (
    BackupName,
    meta_name,
    parse_backup_name,
    parse_base_backup_name,
    parse_snapshot_name,
    sidecar_name,
)
from tasks.core.tiers import DEFAULT_TIER, TIERS


@dataclass(frozen=True)
class BackupRecord:
    path: Path
    name: BackupName
    tier: str
    size: int
    tier_marked: bool
    # The "good backup" verdict (tasks.catalog.good_backup); None for a record built without
    # looking at the file (off-site listings, tables in tests): then only its size speaks.
    verdict: Verdict | None = None

    @property
    def kind(self) -> str:
        return self.name.kind

    @property
    def created_at(self) -> datetime:
        return self.name.created_at

    @property
    def good(self) -> bool:
        """Whether this backup can be counted on (rotation's kept minimum, the monitor)."""
        return self.verdict.good if self.verdict is not None else self.size > 0

    @property
    def why(self) -> str:
        if self.verdict is not None:
            return self.verdict.reason
        return "not inspected" if self.size > 0 else "empty file"

    def companions(self) -> list[Path]:
        """The files that belong to this backup (they go when it goes): its sidecars and,
        for a raw SQLite snapshot, the -wal/-shm/-journal a restore may have moved beside it."""
        paths = [
            self.path.with_name(sidecar_name(self.path.name)),
            self.path.with_name(meta_name(self.path.name)),
        ]
        if self.name.compression == "none":
            paths += [self.path.with_name(self.path.name + s) for s in ("-wal", "-shm", "-journal")]
        return paths


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


def list_backups(folder: Path, judge: bool = True) -> list[BackupRecord]:
    """Every backup in `folder` (not recursive), oldest first, each with its verdict.

    One directory scan; a `.meta.json` or sidecar is opened only when the scan saw it, so
    a folder of ten thousand backups is listed without ten thousand failed opens.
    `judge=False` skips the verdicts (a listing that only shows names and dates).
    """
    return _records(folder, parse_backup_name, judge)


def list_base_backups(folder: Path, judge: bool = True) -> list[BackupRecord]:
    """The PostgreSQL base backups (kind "base", `base_postgres_*`) in `folder`, oldest
    first. Their own rotation and checks are point-in-time recovery's (tasks/pitr/);
    a base without its `.meta.json` is unfinished, so it is never a good backup."""
    records = _records(folder, parse_base_backup_name, judge)
    return [
        _unfinished(r) if r.good and not r.path.with_name(meta_name(r.path.name)).exists() else r
        for r in records
    ]


def _unfinished(record: BackupRecord) -> BackupRecord:
    verdict = Verdict(False, "no .meta.json: not finished (never used by pitr-restore)")
    return BackupRecord(
        record.path, record.name, record.tier, record.size, record.tier_marked, verdict
    )


def list_snapshots(
    folder: Path, kind: str, db_path: Path | None = None
) -> list[list[BackupRecord]]:
    """The pre-restore snapshots of `kind` ("db" or "full"), one list per family, oldest
    first: each family is rotated on its own, like backups of its kind.

    db: `admin_postgres_before_restore_*` in `folder`, and `{db_path}.before_restore.*`
    beside the SQLite database; full: `full_before_restore_*` in `folder`.
    """

    def mine(name: str) -> BackupName | None:
        parsed = parse_snapshot_name(name)
        return parsed if parsed is not None and parsed.kind == kind else None

    families = [_records(folder, mine, True)]
    if kind == "db" and db_path is not None:
        prefix = db_path.name

        def beside(name: str) -> BackupName | None:
            parsed = parse_snapshot_name(name, db_name=prefix)
            return parsed if parsed is not None and parsed.compression == "none" else None

        families.append(_records(db_path.parent, beside, True))
    return [family for family in families if family]


def _records(
    folder: Path, parse: Callable[[str], BackupName | None], judge: bool
) -> list[BackupRecord]:
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    names = {entry.name for entry in entries}
    records = []
    for entry in entries:
        parsed = parse(entry.name)
        if parsed is None or not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        meta = read_meta(path) if meta_name(entry.name) in names else None
        tier = meta.get("tier") if meta else None
        # A snapshot belongs to no tier: its kind's default tier rotates it.
        marked = isinstance(tier, str) and tier in TIERS and not parsed.snapshot
        size = entry.stat(follow_symlinks=False).st_size
        verdict = (
            judge_backup(path, parsed, size, meta, sidecar_name(entry.name) in names)
            if judge
            else None
        )
        records.append(
            BackupRecord(
                path=path,
                name=parsed,
                tier=tier if marked else DEFAULT_TIER[parsed.kind],  # type: ignore[arg-type]
                size=size,
                tier_marked=marked,
                verdict=verdict,
            )
        )
    records.sort(key=lambda r: (r.created_at, r.path.name))
    return records


def good_backups(records: list[BackupRecord]) -> list[BackupRecord]:
    """The records that passed the good-backup test, in their order."""
    return [record for record in records if record.good]


def newest_good(records: list[BackupRecord], kind: str) -> BackupRecord | None:
    """The newest good backup of `kind` among `records` (oldest first): what a
    `--latest` restore picks, skipping newer files that are not good backups."""
    for record in reversed(records):
        if record.kind == kind and record.good:
            return record
    return None
