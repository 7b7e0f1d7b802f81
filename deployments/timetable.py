"""`chatbot-backup schedule`: the tier table with next run times, like `systemctl list-timers`.

Next runs are computed here, from each tier's cron and BACKUP_TIMEZONE, with the Prefect
server's own cron schedule model (same DST rules as the scheduler), so the command works
without a server. The last backup of each tier comes from the local backup folder.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from deployments.build import check_timezone
from deployments.tiers import TIER_TABLE, Tier, tier_table
from tasks.catalog.records import BackupRecord, list_backups
from tasks.core.settings import load_settings


def next_runs(cron: str, timezone: str, after: datetime, count: int = 3) -> list[datetime]:
    """The next `count` times (aware, in `timezone`) at or after `after`."""
    from prefect.server.schemas.schedules import CronSchedule

    zone = ZoneInfo(check_timezone(timezone))
    schedule = CronSchedule(cron=cron, timezone=timezone)
    dates = asyncio.run(schedule.get_dates(n=count, start=after))
    # Prefect hands back its own DateTime subclass; operators and tests get plain ones.
    return [datetime.fromtimestamp(d.timestamp(), zone) for d in dates]


def human_delta(delta: timedelta) -> str:
    """`2d 8h`, `5h 20m`, `20m`, `<1m`: the LEFT column."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return "<1m"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {mins}m"
    return f"{mins}m"


def _when(moment: datetime) -> str:
    return moment.strftime("%a %Y-%m-%d %H:%M %Z")


def last_backup(tier: Tier, backups: list[BackupRecord]) -> BackupRecord | None:
    mine = [b for b in backups if b.kind == tier.kind and b.tier == tier.tier]
    return mine[-1] if mine else None


def schedule_lines(
    timezone: str,
    now: datetime,
    backup_dir: Path | None = None,
    count: int = 3,
    tiers: tuple[Tier, ...] = TIER_TABLE,
) -> list[str]:
    """The table `chatbot-backup schedule` prints, one string per line."""
    zone = ZoneInfo(check_timezone(timezone))
    now = now.astimezone(zone)
    backups = list_backups(backup_dir) if backup_dir is not None else []
    header = ("DEPLOYMENT", "SCHEDULE", "RETENTION", "OFFSITE", "NEXT", "LEFT", "LAST BACKUP")
    rows: list[tuple[str, ...]] = []
    following: list[str] = []
    for tier in tiers:
        assert tier.cron is not None  # the tier table holds the schedules only
        runs = next_runs(tier.cron, timezone, now, max(count, 1))
        if tier.kind is None:
            last = "—"
        else:
            record = last_backup(tier, backups)
            last = (
                "never"
                if record is None
                else f"{_when(record.created_at.astimezone(zone))} "
                f"({human_delta(now - record.created_at)} ago)"
            )
        rows.append(
            (
                tier.full_name,
                tier.cron,
                tier.retention_label,
                "yes" if tier.offsite else "no",
                _when(runs[0]),
                human_delta(runs[0] - now),
                last,
            )
        )
        if count > 1:
            following.append(f"  {tier.full_name:<28}{', '.join(_when(r) for r in runs[1:])}")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        f"Tier schedules in {timezone} (now {_when(now)})",
        "",
    ]
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if following:
        lines += ["", "Following runs:", *following]
    return lines


def print_schedule(count: int = 3) -> None:
    """`chatbot-backup schedule`: the table for BACKUP_TIMEZONE and the local BACKUP_DIR."""
    settings = load_settings(check_folders=False)  # reads names only; the jobs check folders
    now = datetime.now(UTC)
    tiers = tier_table(settings.pitr_enabled)
    print("\n".join(schedule_lines(settings.backup_timezone, now, settings.backups, count, tiers)))
