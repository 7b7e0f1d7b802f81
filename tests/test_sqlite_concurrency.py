"""SQLite under a steady writer: every backup is intact and one consistent snapshot (issue 9).

The writer, a separate process, commits as fast as it can in WAL mode. Each transaction
adds one row to `events`, adds one to `counter.n`, and writes a balanced debit/credit
pair to `ledger`. So a consistent snapshot has count(events) == counter.n and
sum(ledger.amount) == 0 with 2n ledger rows; a torn copy (pages from before and after a
commit) breaks one of them or fails `integrity_check`.

Twenty backups go through the real `db-backup` flow, called in-process: the CLI costs
~3 s of interpreter and Prefect start-up per run, which is not what is being tested here
(the CLI runs twice more in the race test below). The clock is simulated, a minute per
backup, because names have one-second resolution and the real clock would make each
backup wait for the next second.
"""

from __future__ import annotations

import gzip
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import pytest

from tasks.core.naming import parse_backup_name
from tasks.verify.backup_file import verify_compressed_file
from tests.conftest import BIN, Platform

MIN_COMMITS_PER_SECOND = 200
# Paced, not flat out: a writer at full speed (thousands a second) grows the database by
# megabytes a second and the test would measure gzip instead of consistency.
TARGET_COMMITS_PER_SECOND = 500


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(
        """
        CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
        CREATE TABLE counter (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
        CREATE TABLE ledger (id INTEGER PRIMARY KEY, event_id INTEGER NOT NULL, amount INTEGER NOT NULL);
        INSERT INTO counter VALUES (1, 0);
        """
    )
    db.commit()
    db.close()


def _writer(path: str, commits: Synchronized[int], stop_at: float) -> None:
    """One transaction per loop; `commits` is what the parent measures the rate from."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA synchronous=NORMAL")  # the usual WAL setting: no fsync per commit
    i = 0
    next_at = time.monotonic()
    while time.time() < stop_at:
        next_at += 1 / TARGET_COMMITS_PER_SECOND
        if (ahead := next_at - time.monotonic()) > 0:
            time.sleep(ahead)
        i += 1
        db.execute("BEGIN IMMEDIATE")
        event = db.execute("INSERT INTO events(body) VALUES (?)", (f"event {i} " * 4,)).lastrowid
        db.execute("UPDATE counter SET n = n + 1")
        amount = i % 997 + 1
        db.executemany(
            "INSERT INTO ledger(event_id, amount) VALUES (?, ?)",
            [(event, amount), (event, -amount)],
        )
        db.execute("COMMIT")
        commits.value = i
    db.close()


@pytest.fixture
def writer(platform: Platform) -> Iterator[Synchronized[int]]:
    """A WAL database at ADMIN_DB_PATH and a process committing to it until the test ends."""
    _create(platform.db_path)
    context = multiprocessing.get_context("spawn")
    commits = context.Value("q", 0, lock=False)
    process = context.Process(
        target=_writer, args=(str(platform.db_path), commits, time.time() + 900), daemon=True
    )
    process.start()
    try:
        deadline = time.monotonic() + 30
        while commits.value < 100:  # it is running at full speed before anything is measured
            assert process.is_alive() and time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.05)
        yield commits
        assert process.is_alive(), "the writer died during the test"
    finally:
        process.terminate()
        process.join(10)


def snapshot_state(artifact: Path, scratch: Path) -> int:
    """Check one backup: readable, integrity ok, consistent; returns its counter."""
    verify_compressed_file(artifact)  # sha256 sidecar and the whole gzip stream
    restored = scratch / (artifact.name + ".restored")
    with gzip.open(artifact, "rb") as src, open(restored, "wb") as dst:
        shutil.copyfileobj(src, dst)
    db = sqlite3.connect(f"file:{restored}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)], artifact.name
        (n,) = db.execute("SELECT n FROM counter").fetchone()
        (events,) = db.execute("SELECT count(*) FROM events").fetchone()
        rows, balance = db.execute(
            "SELECT count(*), coalesce(sum(amount), 0) FROM ledger"
        ).fetchone()
        (max_event,) = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
    finally:
        db.close()
    restored.unlink()
    assert (events, rows, balance, max_event) == (n, 2 * n, 0, n), (
        f"{artifact.name}: torn snapshot: counter {n}, {events} events, {rows} ledger rows, "
        f"balance {balance}"
    )
    return int(n)


@pytest.mark.slow
def test_twenty_backups_under_a_steady_writer_are_consistent(
    platform: Platform,
    writer: Synchronized[int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.settings import temporary_settings

    from flows import db_backup
    from tasks.core import clock

    moment = [datetime.now(UTC) - timedelta(hours=1)]
    monkeypatch.setattr(clock, "utc_now", lambda: moment[0])
    counters: list[int] = []
    start_commits, started = writer.value, time.monotonic()
    # The per-run heartbeat thread costs ~1 s per flow call and is irrelevant here.
    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        for _ in range(20):
            moment[0] += timedelta(minutes=1)
            result = db_backup()
            n = snapshot_state(Path(result.path), tmp_path)
            assert result.tables == {"events": n, "counter": 1, "ledger": 2 * n}
            counters.append(n)
    elapsed = time.monotonic() - started
    rate = (writer.value - start_commits) / elapsed
    print(f"writer: {rate:.0f} commits/s over {elapsed:.1f} s; counters {counters}")
    assert rate >= MIN_COMMITS_PER_SECOND, f"the writer only managed {rate:.0f} commits/s"
    assert counters == sorted(counters), "a later backup holds an older state"
    # The backups really were taken mid-stream: nearly every one saw a different state.
    assert len(set(counters)) >= 15 and counters[0] >= 100
    finals = [p for p in platform.backups.iterdir() if parse_backup_name(p.name)]
    assert len(finals) == 20


@pytest.mark.slow
def test_two_cli_jobs_started_at_the_same_moment(
    platform: Platform,
    writer: Synchronized[int],
    tmp_path: Path,
) -> None:
    """Two `chatbot-backup db-backup` started together: the second waits for the lock,
    then both succeed, each backup whole and consistent. (Failing clearly with exit 5
    when the wait runs out is test_backup_safety.py::test_second_job_waits_then_fails_clearly.)"""
    env = {**os.environ, **platform.env, "BACKUP_LOCK_TIMEOUT": "120"}
    command = [str(BIN / "chatbot-backup"), "db-backup"]
    jobs = [
        subprocess.Popen(
            command,
            cwd=platform.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [(job.wait(timeout=300), *job.communicate()) for job in jobs]
    assert [code for code, _, _ in outcomes] == [0, 0], outcomes
    finals = sorted(p for p in platform.backups.iterdir() if parse_backup_name(p.name))
    assert len(finals) == 2
    counters = [snapshot_state(path, tmp_path) for path in finals]
    assert counters[0] < counters[1] and counters[0] >= 100
    assert not [p for p in platform.backups.iterdir() if ".partial-" in p.name]
