"""Tier-aware rotation over 400 days of simulated scheduled backups, against hand-written tables.

Every tier of the schedule table makes its backups at its cron times (computed from
deployments.tiers, UTC), writes its tier marker, then rotates its own tier with its own
retention, exactly as the scheduled flows do. Real files in a real folder, the real
`tasks.retention.rotate.rotate`. The first ten days are backups made by the guide's shell scripts
(no tier marker), as on a machine that switched to chatbot-backup.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deployments.tiers import TIER_TABLE, Tier
from deployments.timetable import next_runs
from tasks.catalog.good_backup import SQLITE_HEADER
from tasks.catalog.records import list_backups, write_meta
from tasks.core.naming import db_backup_name, full_backup_name
from tasks.retention.plan import RetentionPolicy
from tasks.retention.rotate import rotate

START = datetime(2025, 1, 1, tzinfo=UTC)
SWITCH = datetime(2025, 1, 11, tzinfo=UTC)  # the day chatbot-backup replaced the scripts
END = START + timedelta(days=400)  # 2026-02-05 00:00 UTC


def at(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


# What each tier holds at the end, written by hand from the schedule table:
# every-6h keeps 2 days (the backup exactly 2 days before the last run is kept), daily
# 7 days (plus the ad-hoc CLI backup, which is daily), weekly 30 days, monthly 365 days.
EXPECTED_AT_END: dict[str, list[str]] = {
    "every-6h": [
        "2026-02-02 18:00",
        "2026-02-03 00:00",
        "2026-02-03 06:00",
        "2026-02-03 12:00",
        "2026-02-03 18:00",
        "2026-02-04 00:00",
        "2026-02-04 06:00",
        "2026-02-04 12:00",
        "2026-02-04 18:00",
    ],
    "daily": [
        "2026-01-28 02:00",
        "2026-01-29 02:00",
        "2026-01-30 02:00",
        "2026-01-31 02:00",
        "2026-02-01 02:00",
        "2026-02-02 02:00",
        "2026-02-03 02:00",
        "2026-02-03 10:15",  # ad-hoc `chatbot-backup backup-all`, no --tier: daily
        "2026-02-04 02:00",
    ],
    "weekly": [
        "2026-01-04 03:00",
        "2026-01-11 03:00",
        "2026-01-18 03:00",
        "2026-01-25 03:00",
        "2026-02-01 03:00",
    ],
    "monthly": [
        "2025-02-01 04:00",  # exactly 365 days before the last monthly run: kept
        "2025-03-01 04:00",
        "2025-04-01 04:00",
        "2025-05-01 04:00",
        "2025-06-01 04:00",
        "2025-07-01 04:00",
        "2025-08-01 04:00",
        "2025-09-01 04:00",
        "2025-10-01 04:00",
        "2025-11-01 04:00",
        "2025-12-01 04:00",
        "2026-01-01 04:00",
        "2026-02-01 04:00",
    ],
}


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """A backup folder on tmpfs when there is one: ~4000 fsyncs and deletes stay quick."""
    shm = Path("/dev/shm")  # noqa: S108  (only as the parent of a private mkdtemp folder)
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="tier-retention-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def cron_times(tier: Tier, start: datetime, end: datetime) -> list[datetime]:
    """Every run time of a tier in [start, end), from its cron, in chunks."""
    times: list[datetime] = []
    cursor = start
    while True:
        chunk = next_runs(tier.cron, "UTC", cursor, 200)
        for moment in chunk:
            if moment >= end:
                return times
            times.append(moment.astimezone(UTC))
        cursor = chunk[-1] + timedelta(seconds=1)


def _content(kind: str, name: str) -> bytes:
    """What the good-backup test sniffs: a SQLite header, or a tar under the top folder."""
    if kind == "db":
        return SQLITE_HEADER + name.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(tarfile.TarInfo(name.split(".", 1)[0]))
    return buffer.getvalue()


def make_backup(folder: Path, kind: str, moment: datetime, tier: str | None) -> Path:
    name = db_backup_name("sqlite", moment) if kind == "db" else full_backup_name(moment)
    path = folder / name
    data = gzip.compress(_content(kind, name), compresslevel=1)
    path.write_bytes(data)
    (folder / f"{name}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    if tier is not None:  # the guide's scripts wrote no marker
        write_meta(path, {"kind": kind, "tier": tier})
    return path


def test_a_year_of_every_tier_keeps_exactly_the_hand_written_table(folder: Path) -> None:
    backup_tiers = [t for t in TIER_TABLE if t.tier is not None]
    assert {t.tier for t in backup_tiers} == set(EXPECTED_AT_END)

    # (when, kind, tier marker or None, rotation policy or None)
    events: list[tuple[datetime, str, str | None, RetentionPolicy | None]] = []
    for tier in backup_tiers:
        assert tier.kind is not None and tier.tier is not None and tier.retention_days
        policy = RetentionPolicy(tier.kind, tier.tier, tier.retention_days)
        for moment in cron_times(tier, SWITCH, END):
            events.append((moment, tier.kind, tier.tier, policy))
    # The guide's crontab before the switch: db every 6 h and a full backup at 02:00.
    for day in range(10):
        for hour in (0, 6, 12, 18):
            events.append((START + timedelta(days=day, hours=hour), "db", None, None))
        events.append((START + timedelta(days=day, hours=2), "full", None, None))
    # An ad-hoc CLI backup-all (daily tier, RETENTION_DAYS=7) two days before the end.
    events.append((at("2026-02-03 10:15"), "full", "daily", RetentionPolicy("full", "daily", 7)))
    events.sort(key=lambda e: e[0])
    assert len(events) > 2000

    made_tier: dict[str, str] = {}  # file name -> tier it was made in (or default tier)
    for moment, kind, tier, policy in events:
        path = make_backup(folder, kind, moment, tier)
        made_tier[path.name] = tier or ("every-6h" if kind == "db" else "daily")
        if policy is None:
            continue
        result = rotate(folder, policy, moment)
        # Tiers never eat each other: a run removes only backups of its own kind and tier.
        for name in result.removed:
            assert made_tier[name] == policy.tier, (moment, policy, name)
            assert not (folder / f"{name}.sha256").exists()
            assert not (folder / f"{name}.meta.json").exists()

    left = list_backups(folder)
    kept = {
        tier: sorted(r.created_at.strftime("%Y-%m-%d %H:%M") for r in left if r.tier == tier)
        for tier in EXPECTED_AT_END
    }
    assert kept == EXPECTED_AT_END
    # The scripts' unmarked backups were rotated with their default tiers and are gone.
    assert all(r.tier_marked for r in left)
    assert len(left) == sum(len(v) for v in EXPECTED_AT_END.values())
    # Nothing but our backups and their sidecars is left behind.
    names = {p.name for p in folder.iterdir()}
    assert names == {
        n for r in left for n in (r.path.name, f"{r.path.name}.sha256", f"{r.path.name}.meta.json")
    }


# serve was down from 2025-03-10 18:00 to 2025-03-20 09:30; on restart the one catch-up run
# of every-6h (the newest missed one) made a backup at 09:30, then the schedule resumed.
# Every other every-6h backup is older than 2 days by then: the newest 3 are kept anyway.
OUTAGE_STEPS: list[tuple[str, list[str]]] = [
    (
        "2025-03-20 09:30",
        ["2025-03-10 12:00", "2025-03-10 18:00", "2025-03-20 09:30"],
    ),
    (
        "2025-03-20 12:00",
        ["2025-03-10 18:00", "2025-03-20 09:30", "2025-03-20 12:00"],
    ),
    (
        "2025-03-20 18:00",
        ["2025-03-20 09:30", "2025-03-20 12:00", "2025-03-20 18:00"],
    ),
    (
        "2025-03-21 00:00",
        ["2025-03-20 09:30", "2025-03-20 12:00", "2025-03-20 18:00", "2025-03-21 00:00"],
    ),
]


def test_after_an_outage_the_newest_three_survive_until_new_ones_replace_them(
    tmp_path: Path,
) -> None:
    policy = RetentionPolicy("db", "every-6h", 2)
    every_6h = next(t for t in TIER_TABLE if t.tier == "every-6h")
    for moment in cron_times(every_6h, at("2025-03-01 00:00"), at("2025-03-10 18:01")):
        make_backup(tmp_path, "db", moment, "every-6h")
        rotate(tmp_path, policy, moment)
    # A weekly full backup from before the outage, older than 2 days: never the db tier's.
    weekly = make_backup(tmp_path, "full", at("2025-03-09 03:00"), "weekly")

    for stamp, expected in OUTAGE_STEPS:
        make_backup(tmp_path, "db", at(stamp), "every-6h")
        rotate(tmp_path, policy, at(stamp))
        kept = sorted(
            r.created_at.strftime("%Y-%m-%d %H:%M")
            for r in list_backups(tmp_path)
            if r.kind == "db"
        )
        assert kept == expected, stamp
    assert weekly.exists()
