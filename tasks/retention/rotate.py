"""Carry out a retention plan: delete the planned backups and their sidecars.

Pre-restore snapshots are rotated here too (SPEC: "rotated like backups of their kind,
newest 3 always kept"): a run of a kind's default tier (every-6h for database-only,
daily for full — the tier an untiered backup belongs to) plans each snapshot family
with its own policy, so a database-only run rotates the SQLite `{DB_PATH}.before_restore.*`
and PostgreSQL `admin_postgres_before_restore_*` snapshots, and a full run the
`full_before_restore_*` ones. Runs of longer tiers leave snapshots alone.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tasks.catalog.records import BackupRecord, list_backups, list_snapshots
from tasks.core.tiers import DEFAULT_TIER
from tasks.retention.plan import RetentionPolicy, plan


@dataclass
class RotationResult:
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    snapshots_kept: list[str] = field(default_factory=list)
    snapshots_removed: list[str] = field(default_factory=list)


def rotate(
    folder: Path,
    policy: RetentionPolicy,
    now: datetime,
    dry_run: bool = False,
    db_path: Path | None = None,
) -> RotationResult:
    """Rotate the backups of `policy` in `folder`, then (default tier only) the snapshots
    of its kind; `db_path` is the SQLite database, whose snapshots lie beside it."""
    decided = plan(list_backups(folder), policy, now)
    result = RotationResult(
        kept=[b.path.name for b in decided.keep],
        removed=[b.path.name for b in decided.remove],
        reasons=dict(decided.reasons),
    )
    doomed = list(decided.remove)
    if policy.tier == DEFAULT_TIER.get(policy.kind):
        for family in list_snapshots(folder, policy.kind, db_path):
            snapshots = plan(family, policy, now)
            result.snapshots_kept += [s.path.name for s in snapshots.keep]
            result.snapshots_removed += [s.path.name for s in snapshots.remove]
            result.reasons.update(snapshots.reasons)
            doomed += snapshots.remove
    if not dry_run:
        for backup in doomed:
            _delete(backup)
    return result


def _delete(backup: BackupRecord) -> None:
    for path in [backup.path, *backup.companions()]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
