"""Retention as a pure function: which backups to keep, which to remove, and why.

Rules (SPEC.md, Rotation): a run looks only at backups of its own kind and tier, so tiers
never eat each other; the newest `keep_min` good backups are kept whatever their age;
others older than the retention are removed. "Good" is the verdict each record carries
(tasks.catalog.good_backup: sidecar and meta agree with the file, content sniffs as its kind):
a file that is not good never counts towards the minimum, so a run of empty dumps
cannot push the last good backups out. A backup dated in the future is never removed
and never counts towards the minimum: its date cannot be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tasks.catalog.records import BackupRecord

# Clocks drift; a backup a few minutes "ahead" is not yet suspicious.
FUTURE_TOLERANCE = timedelta(minutes=5)


@dataclass(frozen=True)
class RetentionPolicy:
    kind: str
    tier: str
    retention_days: int
    keep_min: int = 3


@dataclass
class RetentionPlan:
    keep: list[BackupRecord] = field(default_factory=list)
    remove: list[BackupRecord] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)


def _not_good(backup: BackupRecord) -> str:
    return "" if backup.good else f"; not a good backup: {backup.why}"


def plan(backups: list[BackupRecord], policy: RetentionPolicy, now: datetime) -> RetentionPlan:
    result = RetentionPlan()
    cutoff = now - timedelta(days=policy.retention_days)
    mine = [b for b in backups if b.kind == policy.kind and b.tier == policy.tier]
    newest_first = sorted(mine, key=lambda b: (b.created_at, b.path.name), reverse=True)
    kept_for_minimum = 0
    for backup in newest_first:
        name = backup.path.name
        if backup.created_at > now + FUTURE_TOLERANCE:
            result.keep.append(backup)
            result.reasons[name] = "dated in the future; left alone"
        elif backup.good and kept_for_minimum < policy.keep_min:
            kept_for_minimum += 1
            result.keep.append(backup)
            result.reasons[name] = f"one of the newest {policy.keep_min} good backups"
        elif backup.created_at >= cutoff:
            result.keep.append(backup)
            result.reasons[name] = f"within {policy.retention_days} days" + _not_good(backup)
        else:
            result.remove.append(backup)
            result.reasons[name] = f"older than {policy.retention_days} days" + _not_good(backup)
    return result
