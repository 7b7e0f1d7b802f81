"""The monitor's health checks: each a small function over the backup catalog → a Finding.

Owns the checks of SPEC.md's "Monitoring" section and the guide's RPO table, and the
roll-up of findings into one status and exit code (0 ok, 1 warning, 2 critical). The
checks read names, sizes, sidecars and the head of each file only (the catalog's "good
backup" verdict, tasks.catalog.good_backup); the one exception is the integrity check, which
reads the newest backup of each kind once — never every archive, so a folder of 10,000
backups costs no more to check than a folder of ten, bar a listing.

Count, newest, age, size and the RPOs count good backups only: an empty gzip left by a
failed `pg_dump | gzip` is not a recovery point. Such files are named in the backup-dir
finding (a warning), and when the newest file of a kind is one, the integrity check is
critical, as for a newest backup that fails its full read.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tasks.catalog.records import BackupRecord, good_backups, list_backups
from tasks.core.errors import VerifyError
from tasks.core.naming import Kind

# the deployments the deployment check looks for (tasks/steps/monitor.py reads them here)
from tasks.core.tiers import SCHEDULED_DEPLOYMENTS as SCHEDULED_DEPLOYMENTS
from tasks.core.tiers import TIER_RETENTION_DAYS
from tasks.monitor.host_checks import check_free_disk, disk_usage
from tasks.retention.plan import FUTURE_TOLERANCE
from tasks.verify.backup_file import verify_compressed_file
from tasks.verify.finding import Finding

KINDS: tuple[Kind, ...] = ("db", "full")
KIND_LABEL = {"db": "database-only", "full": "full"}

KEEP_MIN = 3  # rotation always keeps the newest 3 of each kind and tier
SIZE_HISTORY = 10  # the latest size is compared with the median of this many before it
SHOWN_BAD = 5  # files that are not good backups named in the backup-dir finding


@dataclass(frozen=True)
class Thresholds:
    """The limits the checks apply; defaults are the guide's values."""

    max_age_hours: float = 25.0
    min_count: int = 3
    size_drop_ratio: float = 0.5
    min_free_percent: float = 10.0
    free_space_multiple: float = 2.0
    retention_days: int = 7
    rpo_database_hours: float = 6.0
    rpo_files_hours: float = 24.0

    @classmethod
    def from_settings(cls, settings: Any) -> Thresholds:
        return cls(
            max_age_hours=settings.monitor_max_age_hours,
            min_count=settings.monitor_min_count,
            size_drop_ratio=settings.monitor_size_drop_ratio,
            min_free_percent=settings.monitor_min_free_percent,
            free_space_multiple=settings.monitor_free_space_multiple,
            retention_days=settings.retention_days,
            rpo_database_hours=settings.monitor_rpo_database_hours,
            rpo_files_hours=settings.monitor_rpo_files_hours,
        )


@dataclass
class Inspection:
    """All file-level findings for one backup folder, plus what the metrics need."""

    findings: list[Finding] = field(default_factory=list)
    latest: dict[str, BackupRecord] = field(default_factory=dict)  # kind -> newest
    counts: dict[str, int] = field(default_factory=dict)  # kind -> how many
    total_bytes: dict[str, int] = field(default_factory=dict)  # kind -> sum of sizes
    damaged: set[str] = field(default_factory=set)  # kinds whose newest backup is damaged


def hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


def _trusted(backups: list[BackupRecord], now: datetime) -> list[BackupRecord]:
    """Backups whose date can be believed: a name dated in the future proves nothing."""
    return [b for b in backups if b.created_at <= now + FUTURE_TOLERANCE]


def newest_by_kind(backups: list[BackupRecord], now: datetime) -> dict[str, BackupRecord]:
    latest: dict[str, BackupRecord] = {}
    for backup in _trusted(backups, now):  # oldest first, so the last one wins
        latest[backup.kind] = backup
    return latest


# -- the checks ------------------------------------------------------------------------


def check_backup_dir(folder: Path, backups: list[BackupRecord]) -> Finding:
    """`backups`: every file named like a backup, good or not."""
    if not folder.exists():
        return Finding("backup-dir", "critical", f"backup directory {folder} does not exist")
    if not folder.is_dir():
        return Finding("backup-dir", "critical", f"{folder} is not a directory")
    if not backups:
        return Finding("backup-dir", "critical", f"no backups in {folder}")
    good = good_backups(backups)
    bad = [b for b in backups if not b.good]
    shown = "; ".join(f"{b.path.name}: {b.why}" for b in bad[-SHOWN_BAD:])
    more = f" (and {len(bad) - SHOWN_BAD} more)" if len(bad) > SHOWN_BAD else ""
    if not good:
        return Finding(
            "backup-dir",
            "critical",
            f"no good backups in {folder}: {len(bad)} file(s) named like backups are not: "
            f"{shown}{more}",
        )
    per_kind = Counter(b.kind for b in good)
    counts = ", ".join(f"{per_kind[k]} {KIND_LABEL[k]}" for k in KINDS)
    text = f"{folder} holds {len(good)} backups ({counts})"
    if bad:
        return Finding(
            "backup-dir",
            "warning",
            f"{text}; {len(bad)} file(s) named like backups are not good backups and are "
            f"not counted: {shown}{more}",
        )
    return Finding("backup-dir", "ok", text)


def check_latest_age(backups: list[BackupRecord], now: datetime, max_age_hours: float) -> Finding:
    """The newest good backup of each kind the folder holds must be within the limit.

    Per kind, not the newest of any kind: a fresh database-only backup says nothing about
    the uploads and configuration that only a full backup holds, and a fresh full backup
    hides a db-backup schedule that stopped. This is also how the metric and the
    ChatbotBackupMissing rule judge it (`chatbot_last_backup_timestamp_seconds{kind}`).
    A kind the folder holds no backup of at all is not judged here (an installation may
    run database-only backups by design; the backup-dir check covers an empty folder).
    """
    trusted = _trusted(backups, now)
    future = len(backups) - len(trusted)
    if not trusted:
        reason = "no backup to date" + (f"; {future} dated in the future" if future else "")
        return Finding("latest-age", "critical", reason)
    limit = timedelta(hours=max_age_hours)
    latest = newest_by_kind(backups, now)
    stale: list[str] = []
    fresh: list[str] = []
    for kind in KINDS:
        if kind not in latest:
            if any(b.kind == kind for b in backups):  # only future-dated ones
                stale.append(f"no {KIND_LABEL[kind]} backup to date (all dated in the future)")
            continue
        newest = latest[kind]
        age = max(now - newest.created_at, timedelta(0))
        text = f"newest {KIND_LABEL[kind]} backup {newest.path.name} is {hours(age)} old"
        if age > limit:
            stale.append(f"{text} (limit {max_age_hours:g} h)")
        else:
            fresh.append(text)
    if stale:
        return Finding("latest-age", "critical", "; ".join(stale + fresh))
    if future:
        return Finding(
            "latest-age",
            "warning",
            f"{future} backup(s) dated in the future (check the clock); " + "; ".join(fresh),
        )
    return Finding("latest-age", "ok", "; ".join(fresh))


def check_latest_size(backups: list[BackupRecord], now: datetime, drop_ratio: float) -> Finding:
    """Newest of each kind against the median of the ones before it (same database type)."""
    problems: list[str] = []
    notes: list[str] = []
    for kind, newest in newest_by_kind(backups, now).items():
        if newest.size == 0:
            problems.append(f"newest {KIND_LABEL[kind]} backup {newest.path.name} is empty")
            continue
        history = _sizes_before(backups, newest)
        if not history:
            notes.append(f"{KIND_LABEL[kind]}: {newest.size} bytes, no earlier backup to compare")
            continue
        median = statistics.median(history)
        if newest.size < drop_ratio * median:
            problems.append(
                f"newest {KIND_LABEL[kind]} backup {newest.path.name} is {newest.size} bytes, "
                f"under {drop_ratio:g}× the median {median:.0f} of the {len(history)} before it"
            )
        else:
            notes.append(f"{KIND_LABEL[kind]}: {newest.size} bytes (median {median:.0f})")
    if problems:
        return Finding("latest-size", "warning", "; ".join(problems))
    return Finding("latest-size", "ok", "; ".join(notes) or "no backups")


def _sizes_before(backups: list[BackupRecord], newest: BackupRecord) -> list[int]:
    """Sizes of up to SIZE_HISTORY backups of the same kind and database type before `newest`.

    Walks back from the newest end and stops early: cheap however long the folder's history.
    """
    sizes: list[int] = []
    started = False
    for backup in reversed(backups):  # newest first
        if backup is newest:
            started = True
            continue
        if started and backup.kind == newest.kind and backup.name.db_type == newest.name.db_type:
            sizes.append(backup.size)
            if len(sizes) == SIZE_HISTORY:
                break
    return sizes


def check_integrity(
    latest: dict[str, BackupRecord],
    verify: Callable[[Path], object] = verify_compressed_file,
) -> tuple[Finding, set[str]]:
    """Read the newest file of each kind once (checksum and whole stream). The newest file
    counts even when it is not a good backup: that is the failure to report, with both
    the full read's finding and the good-backup test's reason."""
    damaged: set[str] = set()
    problems: list[str] = []
    checked: list[str] = []
    for kind, record in sorted(latest.items()):
        bad = (
            f"newest {KIND_LABEL[kind]} backup {record.path.name} is not a good backup: "
            f"{record.why}"
        )
        try:
            verify(record.path)
        except VerifyError as exc:
            damaged.add(kind)
            text = str(exc)
            problems.append(text if record.good or record.why in text else f"{text}; {bad}")
        except OSError as exc:
            damaged.add(kind)
            problems.append(f"{record.path.name}: cannot read ({exc.strerror})")
        else:
            if not record.good:  # reads whole, yet fails the cheaper test: its meta or name
                damaged.add(kind)
                problems.append(bad)
            else:
                checked.append(record.path.name)
    if problems:
        return Finding("integrity", "critical", "; ".join(problems)), damaged
    if not checked:
        return Finding("integrity", "ok", "no backup to check"), damaged
    return Finding("integrity", "ok", f"readable and checksum-clean: {', '.join(checked)}"), damaged


def check_count(backups: list[BackupRecord], min_count: int) -> Finding:
    counts = Counter(b.kind for b in backups)
    present = [k for k in KINDS if counts[k]]
    if not present:
        return Finding("backup-count", "warning", f"0 backups (minimum {min_count})")
    low = [f"{counts[k]} {KIND_LABEL[k]}" for k in present if counts[k] < min_count]
    if low:
        return Finding(
            "backup-count", "warning", f"below the minimum of {min_count}: {', '.join(low)}"
        )
    text = ", ".join(f"{counts[k]} {KIND_LABEL[k]}" for k in present)
    return Finding("backup-count", "ok", f"{text} (minimum {min_count})")


def check_rotation(backups: list[BackupRecord], now: datetime, retention_days: int) -> Finding:
    """Nothing older than retention plus a day may survive beyond the kept minimum."""
    stale: list[BackupRecord] = []
    groups: dict[tuple[str, str], list[BackupRecord]] = {}
    for backup in _trusted(backups, now):
        groups.setdefault((backup.kind, backup.tier), []).append(backup)
    for (_, tier), members in groups.items():
        days = max(TIER_RETENTION_DAYS.get(tier, retention_days), retention_days)
        cutoff = now - timedelta(days=days + 1)
        kept = 0
        for backup in reversed(members):  # newest first
            if backup.good and kept < KEEP_MIN:
                kept += 1
            elif backup.created_at < cutoff:
                stale.append(backup)
    if stale:
        oldest = min(stale, key=lambda b: b.created_at)
        return Finding(
            "rotation",
            "warning",
            f"rotation is not working: {len(stale)} backup(s) older than their tier's retention "
            f"plus a day (oldest {oldest.path.name}, {hours(now - oldest.created_at)} old)",
        )
    return Finding("rotation", "ok", "no backup outlived its retention")


def check_rpo(
    latest: dict[str, BackupRecord], now: datetime, thresholds: Thresholds
) -> list[Finding]:
    """The guide's RPO table: database 6 h (db-only or full), uploads and configuration 24 h.

    A data class for which the folder holds no backup at all is reported but not alerted
    on: the backup-dir check already covers an empty folder, and an installation that
    runs database-only backups by design should not page every hour.
    """
    findings = []
    newest_db_or_full = max(latest.values(), key=lambda b: b.created_at, default=None)
    classes = (
        ("rpo-database", "database", newest_db_or_full, thresholds.rpo_database_hours),
        ("rpo-configuration", "configuration", latest.get("full"), thresholds.rpo_files_hours),
        ("rpo-uploads", "uploaded files", latest.get("full"), thresholds.rpo_files_hours),
    )
    for name, label, newest, limit in classes:
        if newest is None:
            findings.append(
                Finding(name, "ok", f"not tracked: no backup holds the {label} (run backup-all)")
            )
            continue
        age = max(now - newest.created_at, timedelta(0))
        if age > timedelta(hours=limit):
            findings.append(
                Finding(
                    name,
                    "warning",
                    f"RPO missed: newest {label} recovery point is {hours(age)} old "
                    f"(objective {limit:g} h)",
                )
            )
        else:
            findings.append(
                Finding(
                    name,
                    "ok",
                    f"newest {label} recovery point is {hours(age)} old (objective {limit:g} h)",
                )
            )
    return findings


# -- all file checks at once ---------------------------------------------------------


def inspect_backups(
    folder: Path,
    thresholds: Thresholds,
    now: datetime,
    verify: Callable[[Path], object] = verify_compressed_file,
) -> Inspection:
    """Every check that needs only the backup folder, in the order an operator reads them."""
    named = list_backups(folder)  # every file named like a backup, each with its verdict
    backups = good_backups(named)
    result = Inspection()
    result.findings.append(check_backup_dir(folder, named))
    result.latest = newest_by_kind(backups, now)
    for backup in backups:
        result.counts[backup.kind] = result.counts.get(backup.kind, 0) + 1
        result.total_bytes[backup.kind] = result.total_bytes.get(backup.kind, 0) + backup.size
    if not named:
        # Nothing else can be judged; say so once instead of a column of non-findings.
        return result
    result.findings.append(check_latest_age(backups, now, thresholds.max_age_hours))
    result.findings.append(check_latest_size(backups, now, thresholds.size_drop_ratio))
    integrity, result.damaged = check_integrity(newest_by_kind(named, now), verify)
    result.findings.append(integrity)
    result.findings.append(check_count(backups, thresholds.min_count))
    result.findings.append(check_rotation(named, now, thresholds.retention_days))
    result.findings.append(
        check_free_disk(
            disk_usage(folder),
            result.latest,
            thresholds.min_free_percent,
            thresholds.free_space_multiple,
        )
    )
    result.findings.extend(check_rpo(result.latest, now, thresholds))
    return result
