"""Retention for point-in-time recovery, as pure functions: which base backups stay, and
which archived WAL files those bases still need.

Bases (SPEC schedule row `base-backup/weekly`: 30 days, "WAL with it"): the newest
`keep_min` are kept whatever their age, the others while younger than the retention; a
base dated in the future is left alone and never counts towards the minimum.

WAL: a base needs every segment from its start position onwards, on every timeline, to
reach the present. So a WAL file may go only when it lies wholly before the start of the
oldest base that is kept: segments, `.partial` segments and `.backup` files whose segment
number is below that base's start segment. Timeline `.history` files are always kept
(they are tiny, and recovery probes them to find its timeline); so is everything when no
base is kept — the archive may then be all there is. Deleting is the caller's (rotation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tasks.pitr.base_catalog import BaseRecord
from tasks.pitr.segments import lsn_segno
from tasks.pitr.wal_catalog import ArchivedWal

FUTURE_TOLERANCE = timedelta(minutes=5)
BASE_RETENTION_DAYS = 30


@dataclass(frozen=True)
class BasePolicy:
    retention_days: int = BASE_RETENTION_DAYS
    keep_min: int = 3


@dataclass
class BasePlan:
    keep: list[BaseRecord] = field(default_factory=list)
    remove: list[BaseRecord] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass
class WalPlan:
    keep: list[ArchivedWal] = field(default_factory=list)
    remove: list[ArchivedWal] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    oldest_needed: str | None = None  # the first segment the oldest kept base needs


def plan_bases(bases: list[BaseRecord], policy: BasePolicy, now: datetime) -> BasePlan:
    result = BasePlan()
    cutoff = now - timedelta(days=policy.retention_days)
    kept_for_minimum = 0
    for base in sorted(bases, key=lambda b: (b.created_at, b.name), reverse=True):
        if base.created_at > now + FUTURE_TOLERANCE:
            result.keep.append(base)
            result.reasons[base.name] = "dated in the future; left alone"
        elif kept_for_minimum < policy.keep_min:
            kept_for_minimum += 1
            result.keep.append(base)
            result.reasons[base.name] = f"one of the newest {policy.keep_min}"
        elif base.created_at >= cutoff:
            result.keep.append(base)
            result.reasons[base.name] = f"within {policy.retention_days} days"
        else:
            result.remove.append(base)
            result.reasons[base.name] = f"older than {policy.retention_days} days"
    return result


def plan_wal(kept_bases: list[BaseRecord], archive: dict[str, ArchivedWal]) -> WalPlan:
    """Which archived WAL files the kept bases need (keep) and which none can (remove)."""
    result = WalPlan()
    entries = sorted(archive.values(), key=lambda e: e.name)
    if not kept_bases:
        result.keep = entries
        result.reasons = {e.name: "no base backup is kept: all WAL stays" for e in entries}
        return result
    oldest = min(kept_bases, key=lambda b: (b.start_lsn, b.timeline))
    size = oldest.segment_size
    first = lsn_segno(oldest.start_lsn, size)
    result.oldest_needed = oldest.start_wal
    for entry in entries:
        if entry.wal.kind == "history":
            result.keep.append(entry)
            result.reasons[entry.name] = "timeline history: always kept"
        elif entry.wal.segno(size) < first:
            result.remove.append(entry)
            result.reasons[entry.name] = f"before {oldest.start_wal}, where {oldest.name} starts"
        else:
            result.keep.append(entry)
            result.reasons[entry.name] = f"needed from {oldest.name} on"
    return result
