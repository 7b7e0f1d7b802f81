"""`chatbot_offsite_backup_status` after a failed upload: a later `offsite-verify` that
passes (it re-reads copies already off-site) must not clear it, unless it read back the
newest local backup itself.

Real runs of the CLI against a local folder standing for a mounted NAS; the upload is
made to fail by a directory squatting on the backup's name at the destination.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import Platform

pytestmark = pytest.mark.timeout(400)


def status_line(platform: Platform, nas: Path) -> str:
    text = (platform.backups / "metrics" / "chatbot_backup.prom").read_text()
    series = f'chatbot_offsite_backup_status{{destination="{nas}",kind="db",scheme="file"}} '
    lines = [line for line in text.splitlines() if line.startswith(series)]
    assert len(lines) == 1, text
    return lines[0].removeprefix(series)


def newest_db_backup(platform: Platform) -> Path:
    return platform.backup_files("admin_sqlite_*.db.gz")[-1]


def test_passing_verify_does_not_clear_a_failed_upload(
    sqlite_platform: Platform, tmp_path: Path
) -> None:
    platform = sqlite_platform
    nas = tmp_path / "nas"
    nas.mkdir()
    env = {"OFFSITE_DESTINATION": str(nas), "MONITOR_CHECK_DEPLOYMENTS": "false"}
    first = platform.run("db-backup", "--offsite", extra_env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert float(status_line(platform, nas)) == 1

    time.sleep(1.1)  # a backup name has one-second resolution
    second = platform.run("db-backup", extra_env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    newest = newest_db_backup(platform)
    (nas / newest.name).mkdir()  # the upload's final rename cannot replace a directory
    sync = platform.run("offsite-sync", extra_env=env)
    assert sync.returncode == 8, sync.stdout + sync.stderr
    assert newest.name in sync.stderr
    assert float(status_line(platform, nas)) == 0

    # The weekly verification re-reads the first copy, which still matches: it passes,
    # yet the newest backup is still not off-site, so the status stays failed.
    verify = platform.run("offsite-verify", extra_env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "1 of 1 read back and matched" in verify.stdout + verify.stderr
    assert float(status_line(platform, nas)) == 0

    # The newest backup reaches the NAS by hand (rsync, a copied disk): a verification
    # that reads it back is proof, and only then does the status go back to 1.
    (nas / newest.name).rmdir()
    for path in (newest, newest.with_name(newest.name + ".sha256")):
        shutil.copy2(path, nas / path.name)
    proved = platform.run("offsite-verify", extra_env=env)
    assert proved.returncode == 0, proved.stdout + proved.stderr
    assert "2 of 2 read back and matched" in proved.stdout + proved.stderr
    assert float(status_line(platform, nas)) == 1


def test_an_upload_that_succeeds_clears_the_failed_status(
    sqlite_platform: Platform, tmp_path: Path
) -> None:
    platform = sqlite_platform
    nas = tmp_path / "nas"
    nas.mkdir()
    env = {"OFFSITE_DESTINATION": str(nas)}
    made = platform.run("db-backup", extra_env=env)
    assert made.returncode == 0, made.stdout + made.stderr
    blocked = newest_db_backup(platform)
    (nas / blocked.name).mkdir()
    failed = platform.run("offsite-sync", extra_env=env)
    assert failed.returncode == 8, failed.stdout + failed.stderr
    assert float(status_line(platform, nas)) == 0
    (nas / blocked.name).rmdir()
    again = platform.run("offsite-sync", extra_env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert float(status_line(platform, nas)) == 1
    # a verification that reads the newest backup back keeps it so
    verify = platform.run("offsite-verify", extra_env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert float(status_line(platform, nas)) == 1
