"""Killed runs, concurrent runs and stale locks: nothing partial ever carries a final name."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tasks.core.errors import LockError
from tasks.core.lock import backup_dir_lock
from tasks.core.naming import parse_backup_name
from tasks.verify.backup_file import verify_compressed_file
from tests.conftest import BIN, Platform, make_sqlite_db


def _grow(path: Path, megabytes: int) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB)")
    db.executemany(
        "INSERT INTO blobs(data) VALUES (?)", [(os.urandom(1 << 20),) for _ in range(megabytes)]
    )
    db.commit()
    db.close()


def _assert_no_partial_final_files(folder: Path) -> int:
    """Every file under a final backup name is complete; returns how many there are."""
    finals = [p for p in folder.iterdir() if parse_backup_name(p.name)]
    for path in finals:
        verify_compressed_file(path)  # raises on a truncated or corrupt file
    return len(finals)


def _start(platform: Platform, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "chatbot-backup"), *args],
        cwd=platform.root,
        env={**os.environ, **platform.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


@pytest.mark.slow
def test_kill_at_random_moments_leaves_no_partial_backup(sqlite_platform: Platform) -> None:
    _grow(sqlite_platform.db_path, 40)
    started = time.monotonic()
    assert sqlite_platform.run("db-backup").returncode == 0
    full_run = time.monotonic() - started
    rng = random.Random(20261126)
    for _ in range(8):
        process = _start(sqlite_platform, "db-backup")
        time.sleep(rng.uniform(0.5, full_run))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        _assert_no_partial_final_files(sqlite_platform.backups)
    # The next run needs no manual clean-up: the lock is free and leftovers are swept.
    done = sqlite_platform.run("db-backup")
    assert done.returncode == 0, done.stderr
    _assert_no_partial_final_files(sqlite_platform.backups)
    assert not [p for p in sqlite_platform.backups.iterdir() if ".partial-" in p.name]


def test_second_job_waits_then_fails_clearly(sqlite_platform: Platform) -> None:
    with backup_dir_lock(sqlite_platform.backups, "test-holder", timeout=0):
        done = sqlite_platform.run("db-backup", extra_env={"BACKUP_LOCK_TIMEOUT": "1"})
    assert done.returncode == 5
    assert "another backup job holds" in done.stderr and "test-holder" in done.stderr
    assert sqlite_platform.backup_files() == []
    assert sqlite_platform.run("db-backup").returncode == 0


def test_lock_of_a_killed_process_does_not_block(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from tasks.core.lock import backup_dir_lock\n"
        "with backup_dir_lock(Path(sys.argv[1]), 'victim', 0):\n    print('locked', flush=True); time.sleep(60)\n"
    )
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    with pytest.raises(LockError), backup_dir_lock(tmp_path, "second", timeout=0.3):
        pass
    holder.kill()
    holder.wait()
    with backup_dir_lock(tmp_path, "third", timeout=2):
        pass


def test_two_jobs_started_together_do_not_corrupt_each_other(platform: Platform) -> None:
    make_sqlite_db(platform.db_path, agents=200, messages=20000)
    first, second = _start(platform, "db-backup"), _start(platform, "db-backup")
    codes = [first.wait(timeout=300), second.wait(timeout=300)]
    errors = [p.stderr.read().decode() for p in (first, second) if p.stderr]  # type: ignore[union-attr]
    assert 0 in codes, errors
    assert all(code in (0, 5) for code in codes), errors
    assert _assert_no_partial_final_files(platform.backups) == codes.count(0)
