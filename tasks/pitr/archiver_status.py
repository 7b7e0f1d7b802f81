"""Is WAL archiving working? PostgreSQL's `pg_stat_archiver`, and the archive's own gaps.

Two checks for the monitor, each returning findings (name, severity, reason) shaped like
the monitor's own:
- `judge_archiver` (pure, over one `ArchiverSnapshot` read by `read_archiver`):
  archive_mode off while PITR is enabled is critical; a failure newer than the last
  success (archive_command failing now: no recovery point moves forward, and pg_wal grows
  until the disk is full) is critical; the last archived segment older than
  MONITOR_WAL_MAX_AGE_MINUTES while the server has written WAL since is a warning (an
  idle server writes no WAL, so its old last-archived time is no alarm). Its
  `last_archived_at` feeds `chatbot_wal_last_archived_timestamp_seconds`.
- `check_continuity` (pure, over the archive catalog): from the newest base backup's
  start to the newest archived segment on the timeline recovery would follow, a missing
  segment is critical — every point in time after it is out of reach.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from tasks.pitr.base_catalog import BaseRecord
from tasks.pitr.segments import lsn_segno, path_segment, path_timeline, timeline_path
from tasks.pitr.wal_catalog import ArchivedWal, newest_timeline
from tasks.sources.postgres import connect
from tasks.verify.finding import Finding


@dataclass(frozen=True)
class ArchiverSnapshot:
    """What the server says about its archiver (pg_stat_archiver and two settings)."""

    archive_mode: str
    archive_command: str
    archived_count: int
    last_archived_wal: str | None
    last_archived_at: datetime | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_at: datetime | None
    current_wal: str | None  # pg_walfile_name(pg_current_wal_lsn()); None on a standby


@dataclass(frozen=True)
class ArchiverStatus:
    findings: list[Finding] = field(default_factory=list)
    last_archived_at: datetime | None = None  # for chatbot_wal_last_archived_timestamp_seconds
    last_archived_wal: str | None = None


def read_archiver(params: dict[str, str]) -> ArchiverSnapshot:
    """One look at the server (SourceError when it cannot be reached)."""
    with connect(params) as conn:
        row = conn.execute(
            "SELECT current_setting('archive_mode'), current_setting('archive_command'), "
            "archived_count, last_archived_wal, last_archived_time, failed_count, "
            "last_failed_wal, last_failed_time, "
            "CASE WHEN pg_is_in_recovery() THEN NULL "
            "ELSE pg_walfile_name(pg_current_wal_lsn()) END "
            "FROM pg_stat_archiver"
        ).fetchone()
    assert row is not None

    def utc(value: datetime | None) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    return ArchiverSnapshot(
        str(row[0]), str(row[1]), int(row[2]), row[3], utc(row[4]), int(row[5]), row[6],
        utc(row[7]), row[8],
    )  # fmt: skip


def read_archive_mode(params: dict[str, str]) -> str | None:
    """The server's archive_mode, or None when it cannot be asked (best effort)."""
    try:
        with connect(params) as conn:
            row = conn.execute("SELECT current_setting('archive_mode')").fetchone()
    except Exception:  # SourceError, psycopg errors: the caller goes on without the answer
        return None
    return str(row[0]) if row else None


def read_archiver_safely(params: dict[str, str]) -> ArchiverSnapshot | str:
    """The snapshot, or the reason it could not be read (for a finding)."""
    try:
        return read_archiver(params)
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    except Exception as exc:  # SourceError: cannot connect
        return str(exc)


def judge_archiver(
    snapshot: ArchiverSnapshot, now: datetime, max_age_minutes: float
) -> ArchiverStatus:
    findings: list[Finding] = []
    if snapshot.archive_mode not in ("on", "always"):
        findings.append(
            Finding(
                "wal-archiving",
                "critical",
                f"archive_mode is {snapshot.archive_mode}: no WAL is archived, so there is no "
                "point-in-time recovery (run `chatbot-backup pitr-setup`; archive_mode needs "
                "a restart)",
            )
        )
    elif "wal-push" not in snapshot.archive_command:
        findings.append(
            Finding(
                "wal-archiving",
                "warning",
                "archive_command does not call `chatbot-backup wal-push` (or is hidden from "
                "this role): the WAL may not reach WAL_ARCHIVE_DIR",
            )
        )
    failing = snapshot.last_failed_at is not None and (
        snapshot.last_archived_at is None or snapshot.last_failed_at > snapshot.last_archived_at
    )
    if failing:
        findings.append(
            Finding(
                "wal-archiver-failing",
                "critical",
                f"archive_command is failing: {snapshot.failed_count} failure(s), the last for "
                f"{snapshot.last_failed_wal} at {_show(snapshot.last_failed_at)}, newer than the "
                f"last success ({_show(snapshot.last_archived_at)}); the recovery point does not "
                "move and pg_wal keeps growing — see the server log for wal-push's message",
            )
        )
    if snapshot.last_archived_at is not None:
        age = now - snapshot.last_archived_at
        moved_on = snapshot.current_wal is not None and snapshot.current_wal != (
            snapshot.last_archived_wal
        )
        if age > timedelta(minutes=max_age_minutes) and moved_on:
            findings.append(
                Finding(
                    "wal-archive-age",
                    "warning",
                    f"the last archived WAL ({snapshot.last_archived_wal}) is "
                    f"{age.total_seconds() / 60:.0f} min old (limit {max_age_minutes:g} min) "
                    f"while the server writes {snapshot.current_wal}: set archive_timeout "
                    "(pitr-setup) and check archive_command",
                )
            )
    elif snapshot.archive_mode in ("on", "always") and snapshot.archived_count == 0:
        findings.append(
            Finding(
                "wal-archive-age",
                "warning",
                "no WAL segment has been archived yet (SELECT pg_switch_wal() forces one)",
            )
        )
    if not findings:
        findings.append(
            Finding(
                "wal-archiving",
                "ok",
                f"last archived {snapshot.last_archived_wal} at {_show(snapshot.last_archived_at)}",
            )
        )
    return ArchiverStatus(findings, snapshot.last_archived_at, snapshot.last_archived_wal)


def check_continuity(
    bases: list[BaseRecord],
    archive: dict[str, ArchivedWal],
    histories: dict[int, list[tuple[int, int]]],
) -> list[Finding]:
    """A missing segment between the newest base's start and the newest archived WAL."""
    if not bases:
        return [Finding("wal-continuity", "warning", "no base backup to recover from")]
    base = max(bases, key=lambda b: b.end_time)
    size = base.segment_size
    timeline = newest_timeline(base.timeline, archive)
    try:
        path = timeline_path(timeline, histories.get(timeline, []))
    except ValueError as exc:
        return [Finding("wal-continuity", "critical", f"timeline history: {exc}")]
    on_path = [
        entry.wal.segno(size)
        for entry in archive.values()
        if entry.wal.kind == "segment"
        and entry.committed
        and path_timeline(path, entry.wal.segno(size), size) == entry.wal.timeline
    ]
    first = lsn_segno(base.start_lsn, size)
    last = max(on_path, default=first - 1)
    missing = [
        path_segment(path, s, size)
        for s in range(first, last + 1)
        if not _committed(archive, path_segment(path, s, size))
    ]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        return [
            Finding(
                "wal-continuity",
                "critical",
                f"WAL gap: {missing[0]}{more} missing from the archive after {base.name}; "
                "point-in-time recovery cannot get past it — take a new base backup now",
            )
        ]
    return [
        Finding(
            "wal-continuity",
            "ok",
            f"{last - first + 1} segment(s) from {base.name} on, no gap",
        )
    ]


def _committed(archive: dict[str, ArchivedWal], name: str) -> bool:
    entry = archive.get(name)
    return entry is not None and entry.committed


def _show(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "never"
