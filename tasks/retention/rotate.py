"""Carry out a retention plan: delete the planned backups and their sidecars.

Pre-restore snapshots are rotated here too (SPEC: "rotated like backups of their kind,
newest 3 always kept"): a run of a kind's default tier (every-6h for database-only,
daily for full — the tier an untiered backup belongs to) plans each snapshot family
with its own policy, so a database-only run rotates the SQLite `{DB_PATH}.before_restore.*`
and PostgreSQL `admin_postgres_before_restore_*` snapshots, and a full run the
`full_before_restore_*` ones. Runs of longer tiers leave snapshots alone.

A full backup without its `.meta.json` (copied back from off-site, where only the file and
its `.sha256` travel) is listed in the default tier, yet its MANIFEST.json may say weekly or
monthly; a daily run must not delete it for that (SPEC: tiers do not eat each other). So a
meta-less full backup that the plan would remove, and that the good-backup test found to
start as a full backup, has its manifest read (the whole archive inflated: only for these
candidates, never for every backup on every run), and the plan is made again with the
tier found. The tier is written back as its `.meta.json`, so the file
is inflated once, and the runs of its own tier see it from then on and rotate it with
their retention (without it, the weekly run would never see it and the daily run would
keep it forever). An archive whose manifest cannot be read is kept, and the reason says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tasks.archive.recorded_tier import recorded_tier
from tasks.catalog.records import BackupRecord, list_backups, list_snapshots, write_meta
from tasks.core.errors import VerifyError
from tasks.core.tiers import DEFAULT_TIER, tier_of
from tasks.retention.plan import RetentionPlan, RetentionPolicy, plan


@dataclass
class RotationResult:
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    snapshots_kept: list[str] = field(default_factory=list)
    snapshots_removed: list[str] = field(default_factory=list)
    # What the run found out about meta-less full backups' tiers (MANIFEST.json), or
    # could not: one line each, for the run's log.
    notes: list[str] = field(default_factory=list)


def rotate(
    folder: Path,
    policy: RetentionPolicy,
    now: datetime,
    dry_run: bool = False,
    db_path: Path | None = None,
) -> RotationResult:
    """Rotate the backups of `policy` in `folder`, then (default tier only) the snapshots
    of its kind; `db_path` is the SQLite database, whose snapshots lie beside it."""
    decided, notes = _plan_with_recorded_tiers(list_backups(folder), policy, now, dry_run)
    result = RotationResult(
        kept=[b.path.name for b in decided.keep],
        removed=[b.path.name for b in decided.remove],
        reasons=dict(decided.reasons),
        notes=notes,
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


def _plan_with_recorded_tiers(
    backups: list[BackupRecord], policy: RetentionPolicy, now: datetime, dry_run: bool
) -> tuple[RetentionPlan, list[str]]:
    """The plan, after asking MANIFEST.json the tier of each meta-less full backup it would
    remove; one whose manifest cannot be read is kept (it may belong to a longer tier).
    Also what was found out, one line per backup asked about."""
    decided = plan(backups, policy, now)
    # Only good ones: a file whose head is not even a tar of ours (empty, not gzip, another
    # archive) holds no manifest to ask, and no restore could use it.
    unsure = [b for b in decided.remove if b.kind == "full" and not b.tier_marked and b.good]
    notes: list[str] = []
    if not unsure:
        return decided, notes
    found: dict[Path, str] = {}
    unreadable: dict[Path, str] = {}
    for backup in unsure:
        try:
            tier = recorded_tier(backup.path)
        except VerifyError as exc:
            unreadable[backup.path] = str(exc)
            continue
        if tier is not None and tier != backup.tier and tier_of("full", tier) is not None:
            found[backup.path] = tier
            notes.append(
                f"{backup.path.name}: no .meta.json; its MANIFEST.json records tier {tier}, "
                f"so this {policy.tier} run leaves it to that tier's retention"
            )
            decided.reasons[backup.path.name] = f"tier {tier} (from its MANIFEST.json)"
            if not dry_run:
                _write_recovered_meta(backup, tier)
    if found:
        backups = [
            dataclasses.replace(b, tier=found[b.path], tier_marked=True) if b.path in found else b
            for b in backups
        ]
        replanned = plan(backups, policy, now)
        replanned.reasons = {**decided.reasons, **replanned.reasons}
        decided = replanned
    for backup in [b for b in decided.remove if b.path in unreadable]:
        decided.remove.remove(backup)
        decided.keep.append(backup)
        why = (
            f"kept although {decided.reasons[backup.path.name]}: it has no .meta.json and "
            f"its MANIFEST.json, which records its tier, cannot be read "
            f"({unreadable[backup.path]})"
        )
        decided.reasons[backup.path.name] = why
        notes.append(f"{backup.path.name}: {why}")
    return decided, notes


def _write_recovered_meta(backup: BackupRecord, tier: str) -> None:
    """The tier MANIFEST.json recorded, as the `.meta.json` the backup lost (best effort:
    without it the next run reads the manifest again)."""
    meta = {"kind": "full", "tier": tier, "size": backup.size, "recovered_from": "MANIFEST.json"}
    with contextlib.suppress(OSError):
        write_meta(backup.path, meta)


def _delete(backup: BackupRecord) -> None:
    for path in [backup.path, *backup.companions()]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
