"""Base backups in BACKUP_DIR: their names, their `.meta.json`, and which ones count.

`base_postgres_YYYYMMDD_HHMMSS.tar.gz` (`.tar.zst` with BACKUP_COMPRESSION=zstd) is one
`pg_basebackup` of the cluster in tar format, WAL left to the archive, its
`backup_manifest` inside. `NAME.sha256` is its `sha256sum` line; `NAME.meta.json` is
written last, only after the archive was read back and checked against the manifest and
the WAL it needs was found in the archive: a base without it is not finished and is never
chosen for a recovery. The meta records what recovery planning needs: timeline, start
and end WAL positions and times, the WAL segment size, the cluster's system identifier.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.core.naming import COMPRESSION_SUFFIX, META_SUFFIX, SIDECAR_SUFFIX, timestamp
from tasks.pitr.segments import DEFAULT_SEGMENT_SIZE, parse_lsn

BASE_KIND = "base"
DEFAULT_BASE_TIER = "weekly"
_PATTERN = re.compile(r"^base_postgres_(?P<stamp>\d{8}_\d{6})\.tar(?P<comp>\.gz|\.zst)$")


def base_backup_name(moment: datetime, compression: str = "gzip") -> str:
    return f"base_postgres_{timestamp(moment)}.tar{COMPRESSION_SUFFIX[compression]}"


def parse_base_name(name: str) -> tuple[datetime, str] | None:
    """(created at, compression) of a base backup name, or None."""
    match = _PATTERN.match(name)
    if match is None:
        return None
    try:
        created = datetime.strptime(match.group("stamp"), "%Y%m%d_%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return created, "zstd" if match.group("comp") == ".zst" else "gzip"


@dataclass(frozen=True)
class BaseRecord:
    """A finished, checked base backup, as its meta records it."""

    path: Path
    created_at: datetime
    tier: str
    size: int
    sha256: str
    compression: str
    timeline: int
    start_lsn: int
    end_lsn: int
    start_wal: str
    start_time: datetime
    end_time: datetime  # taken when pg_basebackup had finished: recovery reaches
    # consistency at end_lsn, so only a target after this can start from this base
    segment_size: int
    system_identifier: int | None

    @property
    def name(self) -> str:
        return self.path.name

    def companions(self) -> list[Path]:
        return [
            self.path.with_name(self.path.name + SIDECAR_SUFFIX),
            self.path.with_name(self.path.name + META_SUFFIX),
        ]


def _moment(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def record_from_meta(path: Path, meta: dict[str, Any]) -> BaseRecord | None:
    """The record a meta describes, or None when it is not a finished base's meta."""
    parsed = parse_base_name(path.name)
    if parsed is None or meta.get("kind") != BASE_KIND:
        return None
    try:
        sysid = meta.get("system_identifier")
        return BaseRecord(
            path=path,
            created_at=parsed[0],
            tier=str(meta.get("tier") or DEFAULT_BASE_TIER),
            size=int(meta["size"]),
            sha256=str(meta["sha256"]),
            compression=parsed[1],
            timeline=int(meta["timeline"]),
            start_lsn=parse_lsn(str(meta["start_lsn"])),
            end_lsn=parse_lsn(str(meta["end_lsn"])),
            start_wal=str(meta["start_wal"]),
            start_time=_moment(meta["start_time"]),
            end_time=_moment(meta["end_time"]),
            segment_size=int(meta.get("wal_segment_size") or DEFAULT_SEGMENT_SIZE),
            system_identifier=int(sysid) if sysid not in (None, "") else None,
        )
    except (KeyError, TypeError, ValueError):
        return None


def list_bases(folder: Path) -> list[BaseRecord]:
    """Every finished base backup in `folder` (data, sidecar and meta present), oldest first."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    names = {entry.name for entry in entries}
    records: list[BaseRecord] = []
    for entry in entries:
        if parse_base_name(entry.name) is None or not entry.is_file(follow_symlinks=False):
            continue
        if entry.name + SIDECAR_SUFFIX not in names or entry.name + META_SUFFIX not in names:
            continue
        try:
            meta = json.loads(Path(entry.path + META_SUFFIX).read_text())
        except (OSError, ValueError):
            continue
        record = record_from_meta(Path(entry.path), meta if isinstance(meta, dict) else {})
        if record is not None and record.size == entry.stat(follow_symlinks=False).st_size:
            records.append(record)
    records.sort(key=lambda r: (r.end_time, r.name))
    return records
