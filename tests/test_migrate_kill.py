"""kill -9 of migrate-to-postgres while it copies: the target is left empty, every time.

Same harness as tests/test_kill_backups.py (the real `flows.cli.main` in a pre-forked
child, killed with its process group). The marker is PostgreSQL's own view of the work:
a COPY into the target in `pg_stat_progress_copy`. Each run is killed at a seeded moment
after the first COPY started, within the copy-and-verify phase measured by a whole run;
then, once the killed session is gone from the server, the target must hold no relation
at all (nothing was committed) — or, when the kill landed after COMMIT under load, the
whole migration value by value (such a kill is not counted) — and the next whole run must succeed without any clean-up
and migrate every value (a stale lock would make it exit 5).
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PG_ADMIN, Platform, create_database, drop_database, pg_url
from tests.support.chatbot_sqlite import make_chatbot_db
from tests.support.kill import ForkingCli
from tests.test_migrate import compare_databases, relations

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

KILLS = 6
SEED = 20261201


@pytest.fixture
def target() -> Iterator[str]:
    name = f"cbkill_{uuid.uuid4().hex[:10]}"
    create_database(name)
    try:
        yield name
    finally:
        drop_database(name)


def _admin() -> psycopg.Connection:
    return psycopg.connect(**PG_ADMIN, autocommit=True)  # type: ignore[arg-type]


def copying(admin: psycopg.Connection, dbname: str) -> Callable[[], bool]:
    def seen() -> bool:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_progress_copy WHERE datname = %s", (dbname,)
        ).fetchone()
        return bool(row and row[0])

    return seen


def wait_until_gone(admin: psycopg.Connection, dbname: str, timeout: float = 30) -> None:
    """Until no session of ours is connected to the target (its rollback is done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchone()
        if not row or not row[0]:
            return
        time.sleep(0.05)
    raise AssertionError(f"sessions on {dbname} did not go away")


def reset(dbname: str) -> None:
    drop_database(dbname)
    create_database(dbname)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_kill_9_while_copying_leaves_the_target_empty(platform: Platform, target: str, tmp_path: Path) -> None:
    make_chatbot_db(platform.db_path, messages=40_000, conversations=800)
    env = {**platform.env, "MIGRATE_TARGET_DATABASE_URL": pg_url(target)}
    argv = ("migrate-to-postgres", "--yes")
    cli = ForkingCli(env, platform.root, tmp_path / "logs")
    admin = _admin()
    try:
        # A whole run: how long from the first COPY to the end.
        marker = copying(admin, target)
        started = time.monotonic()
        pid, log = cli.start(*argv)
        first = None
        while _alive(pid):
            if first is None and marker():
                first = time.monotonic()
            time.sleep(0.005)
        assert cli.wait(pid) == 0, log.read_text()
        assert first is not None, "no COPY was seen"
        work = time.monotonic() - first
        print(f"whole run {time.monotonic() - started:.1f} s, copy to end {work:.1f} s, load {os.getloadavg()[0]:.1f}")
        reset(target)

        rng = random.Random(SEED)
        killed = late = 0
        for _ in range(KILLS * 3):
            if killed >= KILLS:
                break
            delay = rng.uniform(0, work * 0.6)
            pid, log = cli.start(*argv)
            deadline = time.monotonic() + 120
            while not marker() and _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(delay)
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            code = cli.wait(pid)
            if code != -signal.SIGKILL:
                assert code == 0, log.read_text()
                print(f"  run ended on its own before {delay:.2f} s: committed")
                work = max(0.2, work * 0.8)
                reset(target)
                continue
            wait_until_gone(admin, target)
            if relations(target):
                # Under load the kill can land after COMMIT (the report and the fresh-session
                # check run after it). All-or-nothing still holds only if what is there is
                # the whole migration, value by value; such a kill does not count.
                compare_databases(platform.db_path, target)
                print(f"  killed {delay:.2f} s after the first COPY, after COMMIT: target complete")
                late += 1
                work = max(0.2, work * 0.8)
                reset(target)
                continue
            killed += 1
            print(f"  killed {delay:.2f} s after the first COPY: target empty")
        assert killed >= KILLS, f"only {killed} kills landed before COMMIT ({late} after)"

        code, output = cli.run(*argv)  # no clean-up: the next run just works
        assert code == 0, output
        compare_databases(platform.db_path, target)
    finally:
        admin.close()
        cli.close()
