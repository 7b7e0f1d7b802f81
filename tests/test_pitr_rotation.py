"""Point-in-time recovery in the schedule and in rotation (issue 19): the
`base-backup/weekly` tier exists only with PITR_ENABLED=true, and rotation removes the
bases past their tier's retention and exactly the WAL no kept base needs — on real files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from deployments.render_prefect_yaml import render
from deployments.tiers import TIER_TABLE, tier_table
from tasks.core.tiers import SCHEDULED_DEPLOYMENTS, scheduled_deployments
from tasks.pitr.base_catalog import list_bases
from tasks.pitr.retention import BasePolicy
from tasks.pitr.rotation import rotate_pitr
from tasks.pitr.segments import format_lsn, segment_name
from tasks.pitr.wal_catalog import list_archive

MB16 = 16 * 1024 * 1024
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent


def test_base_backup_weekly_is_scheduled_only_with_pitr() -> None:
    without = {t.full_name for t in tier_table(False)}
    with_pitr = {t.full_name: t for t in tier_table(True)}
    assert "base-backup/weekly" not in without
    assert {t.full_name for t in TIER_TABLE} == without
    row = with_pitr["base-backup/weekly"]
    assert (row.cron, row.entrypoint) == ("0 1 * * 0", "flows.base_backup_flow.base_backup")
    assert row.parameters == {"retention_days": 30, "offsite": False, "tier": "weekly"}
    assert set(with_pitr) - without == {"base-backup/weekly"}
    assert "base-backup/weekly" in scheduled_deployments(True)
    assert "base-backup/weekly" not in SCHEDULED_DEPLOYMENTS
    entries = yaml.safe_load(render("UTC", pitr=True))["deployments"]
    assert {"name": "weekly", "entrypoint": row.entrypoint} in [
        {"name": d["name"], "entrypoint": d["entrypoint"]} for d in entries
    ]
    assert all(
        "base_backup" not in d["entrypoint"] for d in yaml.safe_load(render())["deployments"]
    )


def test_the_schedule_command_lists_the_base_tier_with_pitr(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "APP_ROOT": str(tmp_path), "BACKUP_DIR": str(tmp_path / "b")}
    cli = [str(Path(sys.executable).with_name("chatbot-backup")), "schedule"]
    off = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    on = subprocess.run(
        cli, env={**env, "PITR_ENABLED": "true"}, capture_output=True, text=True, timeout=60
    )
    assert off.returncode == 0 and on.returncode == 0, off.stderr + on.stderr
    assert "base-backup/weekly" not in off.stdout
    assert "base-backup/weekly" in on.stdout and "0 1 * * 0" in on.stdout
    helped = subprocess.run([*cli[:1], "base-backup", "--help"], capture_output=True, text=True)
    assert "--retention-days" in helped.stdout and "weekly" in helped.stdout


def write_base(folder: Path, age_days: float, start_segno: int) -> str:
    created = NOW - timedelta(days=age_days)
    name = f"base_postgres_{created:%Y%m%d_%H%M%S}.tar.gz"
    (folder / name).write_bytes(b"x" * 100)
    (folder / f"{name}.sha256").write_text(f"{'0' * 64}  {name}\n")
    start = start_segno * MB16 + 0x28
    meta = {
        "kind": "base",
        "tier": "weekly",
        "size": 100,
        "sha256": "0" * 64,
        "timeline": 1,
        "start_lsn": format_lsn(start),
        "end_lsn": format_lsn(start + 0x100),
        "start_wal": segment_name(1, start_segno),
        "start_time": created.isoformat(),
        "end_time": (created + timedelta(minutes=1)).isoformat(),
        "wal_segment_size": MB16,
    }
    (folder / f"{name}.meta.json").write_text(json.dumps(meta))
    return name


def write_wal(folder: Path, name: str) -> None:
    (folder / f"{name}.gz").write_bytes(b"w" * 10)
    (folder / f"{name}.gz.sha256").write_text(f"{'0' * 64}  {name}.gz\n")


def test_rotation_removes_old_bases_and_only_the_wal_no_kept_base_needs(tmp_path: Path) -> None:
    backups, wal = tmp_path / "backups", tmp_path / "wal"
    backups.mkdir()
    wal.mkdir()
    # Bases 60, 50, 40, 3 and 1 days old, starting at segments 2, 4, 6, 8, 9.
    names = [
        write_base(backups, age, seg) for age, seg in ((60, 2), (50, 4), (40, 6), (3, 8), (1, 9))
    ]
    for segno in range(1, 12):
        write_wal(wal, segment_name(1, segno))
    write_wal(wal, "00000002.history")
    write_wal(wal, f"{segment_name(1, 5)}.00000028.backup")

    result = rotate_pitr(backups, wal, BasePolicy(retention_days=30, keep_min=3), NOW)

    # The newest three stay whatever their age (the 40-day one among them); 60 and 50 go.
    assert sorted(result.removed_bases) == sorted(names[:2])
    assert [b.name for b in list_bases(backups)] == names[2:]
    for gone in names[:2]:
        assert not any(p.name.startswith(gone) for p in backups.iterdir())
    left = set(list_archive(wal))
    # The oldest kept base starts at segment 6: 1..5 and the .backup of 5 go; 6..11 stay.
    assert left == {segment_name(1, s) for s in range(6, 12)} | {"00000002.history"}
    assert result.oldest_needed == segment_name(1, 6)
    assert not any(p.name.startswith(segment_name(1, 5)) for p in wal.iterdir())  # sidecars too
    assert result.freed_bytes > 0

    # Again: nothing more to do.
    again = rotate_pitr(backups, wal, BasePolicy(retention_days=30, keep_min=3), NOW)
    assert again.removed_bases == [] and again.removed_wal == []


def test_without_a_kept_base_no_wal_is_removed(tmp_path: Path) -> None:
    backups, wal = tmp_path / "backups", tmp_path / "wal"
    backups.mkdir()
    wal.mkdir()
    for segno in range(1, 4):
        write_wal(wal, segment_name(1, segno))
    result = rotate_pitr(backups, wal, BasePolicy(), NOW)
    assert result.removed_wal == [] and len(list_archive(wal)) == 3
