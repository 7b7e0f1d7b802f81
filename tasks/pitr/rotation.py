"""Rotation for point-in-time recovery: base backups per their tier, and the WAL no kept
base needs any more (the plan is tasks/pitr/retention.py; this deletes).

Runs under the BACKUP_DIR lock (base-backup takes it), after a new base was proven, so
the base just taken always counts towards the kept minimum. Order matters for a crash at
any moment: a base loses its `.meta.json` first (from then on it is not a finished base,
never chosen by pitr-restore), then its data and sidecar; a WAL file loses its sidecar
first (an uncommitted file: wal-fetch refuses it), then its data. WAL is planned from
the bases that remain, so no segment a kept base needs is ever removed; with no base
kept, nothing in the archive is removed. Off-site copies are rotated by offsite rotation.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tasks.core.naming import META_SUFFIX, SIDECAR_SUFFIX
from tasks.pitr.base_catalog import list_bases
from tasks.pitr.retention import BasePolicy, plan_bases, plan_wal
from tasks.pitr.wal_catalog import list_archive


@dataclass
class PitrRotation:
    kept_bases: list[str] = field(default_factory=list)
    removed_bases: list[str] = field(default_factory=list)
    kept_wal: int = 0
    removed_wal: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    oldest_needed: str | None = None  # the first WAL segment the oldest kept base needs

    def summary_lines(self) -> list[str]:
        lines = [
            f"Rotation: {len(self.kept_bases)} base backup(s) kept, "
            f"{len(self.removed_bases)} removed; {self.kept_wal} WAL file(s) kept, "
            f"{len(self.removed_wal)} removed ({self.freed_bytes} bytes freed)"
        ]
        if self.oldest_needed:
            lines.append(f"  WAL kept from {self.oldest_needed} on (the oldest kept base's start)")
        lines += [f"  removed base: {name}" for name in self.removed_bases]
        return lines


def _unlink(path: Path) -> int:
    with contextlib.suppress(FileNotFoundError):
        size = path.stat().st_size
        path.unlink()
        return size
    return 0


def rotate_pitr(
    backups: Path, wal_archive: Path, policy: BasePolicy, now: datetime
) -> PitrRotation:
    """Remove the bases the policy lets go, then every WAL file before the oldest kept base."""
    result = PitrRotation()
    bases = plan_bases(list_bases(backups), policy, now)
    for base in bases.remove:
        meta, sidecar = base.path.with_name(base.name + META_SUFFIX), base.companions()[0]
        result.freed_bytes += _unlink(meta) + _unlink(base.path) + _unlink(sidecar)
        result.removed_bases.append(base.name)
    result.kept_bases = [b.name for b in bases.keep]
    # Planned from what is on disk now: a base that vanished above cannot hold WAL back,
    # and one a crash left half-removed (no meta) no longer counts either.
    wal = plan_wal(list_bases(backups), list_archive(wal_archive))
    for entry in wal.remove:
        sidecar = entry.path.with_name(entry.path.name + SIDECAR_SUFFIX)
        result.freed_bytes += _unlink(sidecar) + _unlink(entry.path)
        result.removed_wal.append(entry.name)
    result.kept_wal = len(wal.keep)
    result.oldest_needed = wal.oldest_needed
    return result
