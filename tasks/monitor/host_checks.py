"""The monitor's checks of what surrounds the backup folder: free disk space, and the
Prefect deployments that schedule the backups."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tasks.catalog.records import BackupRecord
from tasks.verify.finding import Finding


@dataclass(frozen=True)
class DiskUsage:
    total: int
    free: int


def disk_usage(folder: Path) -> DiskUsage:
    usage = shutil.disk_usage(folder)
    return DiskUsage(total=usage.total, free=usage.free)


def check_free_disk(
    usage: DiskUsage | None, latest: dict[str, BackupRecord], min_percent: float, multiple: float
) -> Finding:
    if usage is None:
        return Finding("disk-space", "ok", "not checked: no backup directory")
    percent = 100.0 * usage.free / usage.total if usage.total else 0.0
    biggest = max((b.size for b in latest.values()), default=0)
    free_text = f"{usage.free / 2**30:.1f} GiB free ({percent:.1f}%)"
    if percent < min_percent:
        return Finding("disk-space", "warning", f"{free_text}, below {min_percent:g}%")
    if biggest and usage.free < multiple * biggest:
        return Finding(
            "disk-space",
            "warning",
            f"{free_text}, less than {multiple:g}× the latest backup ({biggest} bytes)",
        )
    return Finding("disk-space", "ok", free_text)


def deployments_finding(states: dict[str, str]) -> Finding:
    """`states` maps each scheduled deployment to 'active', 'paused' or 'missing'.

    When none is registered, scheduling is evidently done elsewhere (cron, systemd)
    and this server is only used to record runs: reported, not alerted on.
    """
    missing = [n for n, s in states.items() if s == "missing"]
    paused = [n for n, s in states.items() if s == "paused"]
    if states and len(missing) == len(states):
        return Finding(
            "deployments", "ok", "no scheduled deployment registered on this Prefect server"
        )
    problems = []
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
    if paused:
        problems.append(f"paused: {', '.join(paused)}")
    if problems:
        return Finding("deployments", "warning", "; ".join(problems))
    return Finding("deployments", "ok", f"{len(states)} scheduled deployments active")


def unset_offsite_finding(states: dict[str, str], tiers: dict[str, str]) -> Finding:
    """The off-site check when OFFSITE_DESTINATION is not set. `tiers` maps each off-site
    tier's deployment (`backup-all/weekly-offsite`) to its tier name, `states` those
    deployments to 'active', 'paused' or 'missing' on the Prefect server.

    An active one is scheduled to copy off-site and has nowhere to copy to (SPEC: reported
    by serve and the monitor, not first discovered by a failed run): a warning.
    """
    scheduled = [f"{tier} ({name})" for name, tier in tiers.items() if states.get(name) == "active"]
    if scheduled:
        return Finding(
            "offsite",
            "warning",
            f"scheduled off-site tier(s) {', '.join(scheduled)} but OFFSITE_DESTINATION is "
            "not set: their runs will fail until it is",
        )
    return Finding("offsite", "ok", "not checked: OFFSITE_DESTINATION is not set")
