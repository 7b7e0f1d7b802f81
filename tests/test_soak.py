"""Soak: 200 db-backup runs in one process with rotation on a simulated clock."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Platform


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.slow
def test_200_runs_keep_count_files_and_memory_flat(
    sqlite_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import temporary_settings

    from flows import db_backup
    from tasks.core import clock

    moment = [datetime(2026, 1, 1, tzinfo=UTC)]

    def simulated_now() -> datetime:
        return moment[0]

    monkeypatch.setattr(clock, "utc_now", simulated_now)
    counts, files, rss = [], [], []
    # The per-run heartbeat thread costs ~1 s per flow call and is irrelevant here.
    with temporary_settings(updates={"flows.heartbeat_frequency": None}):  # type: ignore[dict-item]
        for _ in range(200):
            moment[0] += timedelta(hours=6)
            result = db_backup(retention_days=2)
            assert result.path.endswith(".db.gz")
            counts.append(len(sqlite_platform.backup_files("admin_sqlite_*.db.gz")))
            files.append(_open_files())
            rss.append(_rss_kib())
    # Every 6 h with 2 days' retention: 8 within the window, plus the run itself.
    assert counts[20:] == [counts[20]] * 180 and 8 <= counts[20] <= 9
    assert len(sqlite_platform.backup_files()) == 3 * counts[-1]  # artifact, .sha256, .meta.json
    assert max(files[20:]) - files[20] <= 2, files[20::20]
    assert rss[-1] - rss[20] < 40 * 1024, rss[20::20]
