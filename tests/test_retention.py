"""Retention as a pure function, checked against tables written by hand."""

from __future__ import annotations

import dataclasses
import gzip
import io
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.catalog.good_backup import Verdict
from tasks.catalog.records import BackupRecord, list_backups, write_meta
from tasks.core.naming import db_backup_name, full_backup_name, parse_backup_name
from tasks.retention.plan import RetentionPolicy, plan
from tasks.retention.rotate import rotate

NOW = datetime(2026, 3, 15, 12, 0, 0, tzinfo=UTC)


def record(name: str, tier: str | None = None, size: int = 100) -> BackupRecord:
    parsed = parse_backup_name(name)
    assert parsed is not None, name
    default = "every-6h" if parsed.kind == "db" else "daily"
    return BackupRecord(Path(name), parsed, tier or default, size, tier is not None)


def full(days_ago: float, tier: str | None = None, size: int = 100) -> BackupRecord:
    return record(full_backup_name(NOW - timedelta(days=days_ago)), tier, size)


@pytest.mark.parametrize(
    ("name", "kind", "ok"),
    [
        ("admin_sqlite_20251104_120000.db.gz", "db", True),
        ("admin_postgres_20251104_120000.sql.gz", "db", True),
        ("full_backup_20251104_120000.tar.gz", "full", True),
        ("full_backup_20251104_120000.tar.zst", "full", True),
        ("admin_sqlite_20251104_120000.sql.gz", None, False),  # wrong extension for the type
        ("admin_postgres_before_restore_20251104_120000.sql.gz", None, False),
        ("full_backup_20251341_120000.tar.gz", None, False),  # no 41st of month 13
        ("full_backup_20250230_120000.tar.gz", None, False),  # 30 February
        ("full_backup_20251104_120000.tar.gz.sha256", None, False),
        ("notes.txt", None, False),
        ("full_backup_20251104.tar.gz", None, False),
    ],
)
def test_names(name: str, kind: str | None, ok: bool) -> None:
    parsed = parse_backup_name(name)
    assert (parsed is not None) == ok
    if parsed:
        assert parsed.kind == kind


def test_names_round_trip() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert db_backup_name("sqlite", moment) == "admin_sqlite_20260102_030405.db.gz"
    assert db_backup_name("postgres", moment) == "admin_postgres_20260102_030405.sql.gz"
    assert full_backup_name(moment) == "full_backup_20260102_030405.tar.gz"
    parsed = parse_backup_name(full_backup_name(moment))
    assert parsed is not None and parsed.created_at == moment


def test_keeps_newest_three_whatever_their_age() -> None:
    backups = [full(100), full(90), full(80), full(70)]
    result = plan(backups, RetentionPolicy("full", "daily", 7), NOW)
    assert sorted(b.path.name for b in result.keep) == sorted(b.path.name for b in backups[1:])
    assert [b.path.name for b in result.remove] == [backups[0].path.name]


def test_removes_exactly_the_old_ones() -> None:
    days = [0.1, 1, 2, 3, 6.9, 7.1, 8, 30]
    backups = [full(d) for d in days]
    result = plan(backups, RetentionPolicy("full", "daily", 7), NOW)
    removed = {b.path.name for b in result.remove}
    assert removed == {full(7.1).path.name, full(8).path.name, full(30).path.name}


def test_tiers_and_kinds_do_not_eat_each_other() -> None:
    backups = [full(d, "weekly") for d in (10, 20, 40, 50, 60)] + [
        full(d, "monthly") for d in (100, 200, 300, 400)
    ]
    backups += [full(d) for d in (1, 2, 3, 10, 20)]
    backups += [record(db_backup_name("sqlite", NOW - timedelta(days=d))) for d in (5, 6, 7, 8)]
    result = plan(backups, RetentionPolicy("full", "daily", 7), NOW)
    assert {b.path.name for b in result.remove} == {full(10).path.name, full(20).path.name}
    assert all(b.tier == "daily" and b.kind == "full" for b in result.keep + result.remove)


def test_empty_and_future_backups_do_not_count_towards_the_minimum() -> None:
    future = full(-400)  # dated more than a year ahead
    empty = full(20, size=0)
    old = [full(d) for d in (30, 40, 50)]
    result = plan([future, empty, *old], RetentionPolicy("full", "daily", 7), NOW)
    assert future in result.keep
    assert empty in result.remove
    assert all(b in result.keep for b in old)


def test_rotation_touches_only_our_files(tmp_path: Path) -> None:
    names = [full_backup_name(NOW - timedelta(days=d)) for d in (1, 2, 3, 20, 40)]
    for name in names:
        (tmp_path / name).write_bytes(b"x" * 10)
        (tmp_path / f"{name}.sha256").write_text(f"{'0' * 64}  {name}\n")
    weekly = full_backup_name(NOW - timedelta(days=25, hours=1))
    (tmp_path / weekly).write_bytes(b"w")
    write_meta(tmp_path / weekly, {"tier": "weekly"})
    unrelated = [
        "notes.txt",
        "full_backup_old.tar.gz",
        "admin_postgres_before_restore_20200101_000000.sql.gz",
        "full_backup_20200101_000000.tar.gz.bak",
        "mybackup.tar.gz",
    ]
    for name in unrelated:
        (tmp_path / name).write_text("keep me")
    (tmp_path / "subdir").mkdir()
    (tmp_path / "subdir" / full_backup_name(NOW - timedelta(days=300))).write_text("keep")

    result = rotate(tmp_path, RetentionPolicy("full", "daily", 7), NOW)

    assert sorted(result.removed) == sorted(names[3:])
    for name in names[3:]:
        assert not (tmp_path / name).exists() and not (tmp_path / f"{name}.sha256").exists()
    for name in names[:3] + unrelated + [weekly]:
        assert (tmp_path / name).exists(), name
    assert (tmp_path / "subdir").is_dir() and any((tmp_path / "subdir").iterdir())
    assert {r.tier for r in list_backups(tmp_path)} == {"daily", "weekly"}


def test_dry_run_deletes_nothing(tmp_path: Path) -> None:
    name = full_backup_name(NOW - timedelta(days=50))
    for d in (1, 2, 3):
        (tmp_path / full_backup_name(NOW - timedelta(days=d))).write_bytes(b"x")
    (tmp_path / name).write_bytes(b"x")
    result = rotate(tmp_path, RetentionPolicy("full", "daily", 7), NOW, dry_run=True)
    assert result.removed == [name] and (tmp_path / name).exists()


# -- issue 15: the kept minimum counts good backups only ---------------------------------


def judged(days_ago: float, good: bool, tier: str | None = None) -> BackupRecord:
    base = full(days_ago, tier)
    reason = "good (content checked)" if good else "the archive is empty"
    return dataclasses.replace(base, verdict=Verdict(good, reason))


G, J = True, False  # a good backup, junk named like one


@pytest.mark.parametrize(
    ("backups", "retention", "removed"),
    [
        # 3 good 10 days old + 3 recent junk: the good ones are the newest 3 *good*.
        ([(10, G), (10.1, G), (10.2, G), (0.1, J), (0.2, J), (0.3, J)], 2, []),
        # A fourth good one beyond the minimum and the retention goes; recent junk stays.
        ([(10, G), (10.1, G), (10.2, G), (10.3, G), (0.1, J)], 2, [10.3]),
        # Old junk goes even while the good backups are all kept for the minimum.
        ([(30, G), (31, G), (32, G), (40, J), (41, J)], 7, [40, 41]),
        # Junk is never one of the kept 3: the three good ones behind it are.
        ([(20, J), (21, G), (22, G), (23, G), (24, G)], 7, [20, 24]),
        # Nothing good at all: nothing kept for the minimum, only the retention speaks.
        ([(1, J), (20, J), (30, J)], 7, [20, 30]),
        # Good ones within the retention are never removed, junk or not around them.
        ([(0.5, G), (1, J), (2, G), (3, G), (4, G), (5, G)], 7, []),
    ],
)
def test_plan_counts_only_good_backups_towards_the_minimum(
    backups: list[tuple[float, bool]], retention: int, removed: list[float]
) -> None:
    records = [judged(days, good) for days, good in backups]
    result = plan(records, RetentionPolicy("full", "daily", retention), NOW)
    assert sorted(b.path.name for b in result.remove) == sorted(full(d).path.name for d in removed)
    kept_good = [b for b in result.keep if b.good]
    assert len(kept_good) >= min(3, sum(good for _, good in backups))
    for backup in result.remove:
        assert not backup.good or "older than" in result.reasons[backup.path.name]
    for backup in records:
        if not backup.good:
            assert "not a good backup: the archive is empty" in result.reasons[backup.path.name]


def test_records_listed_from_a_folder_carry_their_verdict(tmp_path: Path) -> None:
    good = tmp_path / full_backup_name(NOW - timedelta(days=1))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(tarfile.TarInfo(good.name.split(".", 1)[0]))
    good.write_bytes(gzip.compress(buffer.getvalue()))
    empty = tmp_path / full_backup_name(NOW - timedelta(hours=1))
    empty.write_bytes(gzip.compress(b""))
    verdicts = {r.path.name: (r.good, r.why) for r in list_backups(tmp_path)}
    assert verdicts[good.name][0] is True
    assert verdicts[empty.name] == (False, "the archive is empty")
    assert all(r.verdict is None for r in list_backups(tmp_path, judge=False))
