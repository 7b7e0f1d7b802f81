"""The monitor's point-in-time recovery checks (with PITR_ENABLED=true), as its findings.

- `wal-archiving`, `wal-archiver-failing`, `wal-archive-age`: the server's
  `pg_stat_archiver` (tasks/pitr/archiver_status.py `judge_archiver`); a server that
  cannot be asked is a warning (the rest of the monitor still runs);
- `wal-continuity`: a segment missing from the archive between the newest base backup's
  start and the newest archived segment (`check_continuity`): critical;
- `base-backup`: no finished base backup, or the newest older than 8 days (the weekly
  tier and a day of slack), is a warning — recovery then replays all the WAL since.
It also returns what the metrics need: the last archived time
(`chatbot_wal_last_archived_timestamp_seconds`) and the bases (kind "base").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tasks.core.errors import BackupError
from tasks.core.redact import redact
from tasks.pitr.archiver_status import (
    check_continuity,
    judge_archiver,
    read_archiver_safely,
)
from tasks.pitr.base_catalog import BaseRecord, list_bases
from tasks.pitr.wal_catalog import list_archive, read_histories
from tasks.sources.postgres import parse_database_url
from tasks.verify.finding import Finding

BASE_MAX_AGE = timedelta(days=8)


@dataclass
class PitrInspection:
    findings: list[Finding] = field(default_factory=list)
    last_archived_at: datetime | None = None
    bases: list[BaseRecord] = field(default_factory=list)


def check_bases(bases: list[BaseRecord], now: datetime) -> Finding:
    if not bases:
        return Finding(
            "base-backup",
            "warning",
            "no finished base backup: point-in-time recovery has nothing to start from "
            "(run `chatbot-backup base-backup`)",
        )
    newest = max(bases, key=lambda b: b.end_time)
    age = now - newest.end_time
    if age > BASE_MAX_AGE:
        return Finding(
            "base-backup",
            "warning",
            f"the newest base backup {newest.name} is {age.days} days old (limit "
            f"{BASE_MAX_AGE.days}): check the base-backup/weekly deployment",
        )
    return Finding("base-backup", "ok", f"{len(bases)} base backup(s), newest {newest.name}")


def inspect_pitr(settings: Any, now: datetime) -> PitrInspection:
    """Every PITR finding; never raises for a server that is down or a damaged history."""
    result = PitrInspection(bases=list_bases(settings.backups))
    try:
        params = parse_database_url(settings.pitr_url())
    except BackupError as exc:
        params = None
        result.findings.append(Finding("wal-archiving", "warning", f"not checked: {exc}"))
    if params is not None:
        snapshot = read_archiver_safely(params)
        if isinstance(snapshot, str):
            result.findings.append(
                Finding(
                    "wal-archiving", "warning", redact(f"pg_stat_archiver not read: {snapshot}")
                )
            )
        else:
            status = judge_archiver(snapshot, now, settings.monitor_wal_max_age_minutes)
            result.findings += list(status.findings)
            result.last_archived_at = status.last_archived_at
    archive = list_archive(settings.wal_archive)
    try:
        histories = read_histories(archive)
    except BackupError as exc:
        result.findings.append(Finding("wal-continuity", "critical", str(exc)))
    else:
        result.findings += check_continuity(result.bases, archive, histories)
    result.findings.append(check_bases(result.bases, now))
    return result
