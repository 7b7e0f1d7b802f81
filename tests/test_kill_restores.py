"""kill -9 at 20+ seeded moments of `db-restore` (real PostgreSQL) and `restore-all` (SQLite).

Same harness as tests/test_kill_backups.py (real `flows.cli.main` in a pre-forked child,
killed with its process group; a few moments in start-up, most after the run's first
`.partial-` file — the pre-restore snapshot being written — within the measured work).

Every run starts from the same live state "before" (A); the backup holds "restored"
(B). After each kill, checked in-process:
- db-restore: `pg_dump` text of the live database is exactly A or exactly B (the load is
  one transaction that COMMITs only after the whole verified dump was read);
- restore-all: each live part — database, uploads, config files, app data — is exactly
  its A or its B right after the kill; then, if the kill left a swap journal, the next
  command that takes the backup lock (`db-backup`, the cheapest) recovers it, and the
  whole set must be A everywhere or B everywhere. Without a journal it must already be.
- every pre-restore snapshot under its final name verifies (sidecar, whole stream);
  at the end the newest one is restored by hand and equals A.
When a run left B, the test turns the live state back into A (and checks it is exactly
A), so each moment really tests a restore over different data.

"The next run succeeds without clean-up": every 6th run is a whole restore, right after
killed ones, with BACKUP_LOCK_TIMEOUT=5 (a stale lock would make it exit 5), and must
leave exactly B; a whole run also ends the test.
"""

from __future__ import annotations

import gzip
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasks.core.atomic import is_partial
from tasks.restore.files import is_restore_leftover
from tasks.restore.journal import JOURNAL_NAME
from tasks.verify.backup_file import verify_compressed_file
from tests.conftest import (
    Platform,
    fill_postgres,
    make_sqlite_db,
    pg_dump_text,
    pg_url,
    sqlite_dump,
)
from tests.support.kill import ForkingCli, Moments, calibrate, new_entry
from tests.test_db_restore import change_postgres, change_sqlite
from tests.test_restore_all import damage, live_files, populate

KILLS = 20
WHOLE_RUN_EVERY = 6
MAX_RUNS = 60


@pytest.fixture
def cli(platform: Platform, tmp_path: Path) -> Iterator[ForkingCli]:
    worker = ForkingCli(platform.env, platform.root, tmp_path / "logs")
    yield worker
    worker.close()


def snapshots(backups: Path) -> list[Path]:
    return sorted(
        (p for p in backups.iterdir() if "before_restore" in p.name and not p.name.startswith(".")
         and not p.name.endswith((".sha256", ".meta.json"))),
        key=lambda p: p.stat().st_mtime_ns,
    )


def snapshots_verify(backups: Path) -> None:
    for path in snapshots(backups):
        verify_compressed_file(path)


def partial_appears(folder: Path) -> Callable[[], Callable[[], bool]]:
    return lambda: new_entry(folder, lambda name: ".partial-" in name)


def kill_restores(
    cli: ForkingCli,
    argv: tuple[str, ...],
    seed: int,
    backups: Path,
    after_kill: Callable[[], str],
    after_whole: Callable[[], None],
    make_marker: Callable[[], Callable[[], bool]] | None = None,
) -> dict[str, int]:
    """Runs until KILLS were killed; `after_kill` checks and returns "before"/"restored"."""
    make_marker = make_marker or partial_appears(backups)
    startup, work, _ = calibrate(cli, argv, make_marker)
    after_whole()
    print(f"{argv}: start-up {startup:.2f} s, work {work:.2f} s, load {os.getloadavg()[0]:.1f}")
    moments = Moments(seed, startup, work)
    outcomes = {"before": 0, "restored": 0}
    killed = 0
    for i in range(1, MAX_RUNS + 1):
        if killed >= KILLS:
            break
        if i % WHOLE_RUN_EVERY == 0:
            code, output = cli.run(*argv)
            assert code == 0, f"run after kills needed clean-up: {output}"
            after_whole()
            continue
        outcome = moments.kill_one(cli, argv, make_marker)
        assert outcome.killed or outcome.code == 0, outcome.log
        killed += outcome.killed
        if outcome.killed:
            outcomes[after_kill()] += 1
        else:
            after_whole()
    assert killed >= KILLS
    code, output = cli.run(*argv)
    assert code == 0, output
    after_whole()
    return outcomes


# -- db-restore, PostgreSQL ------------------------------------------------------------


@pytest.mark.slow
def test_db_restore_postgres_killed_at_seeded_moments(
    platform: Platform, cli: ForkingCli, pg_database: str, scratch_database: str
) -> None:
    fill_postgres(pg_database, rows=40000)
    url = pg_url(pg_database)
    platform.env.update(ADMIN_DB_TYPE="postgres", ADMIN_DATABASE_URL=url)
    cli.env.update(ADMIN_DB_TYPE="postgres", ADMIN_DATABASE_URL=url)
    code, output = cli.run("db-backup")
    assert code == 0, output
    [backup] = [p for p in platform.backups.glob("admin_*.gz") if "before_restore" not in p.name]
    restored = pg_dump_text(pg_database)
    change_postgres(pg_database)
    before = pg_dump_text(pg_database)
    assert before != restored

    def back_to_before() -> None:
        change_postgres(pg_database)
        assert pg_dump_text(pg_database) == before

    def after_kill() -> str:
        live = pg_dump_text(pg_database)
        assert live in (before, restored), "live database is a mix"
        snapshots_verify(platform.backups)
        if live == restored:
            back_to_before()
            return "restored"
        return "before"

    def after_whole() -> None:
        assert pg_dump_text(pg_database) == restored
        snapshots_verify(platform.backups)
        back_to_before()

    outcomes = kill_restores(
        cli, ("db-restore", str(backup), "--yes"), 20261129, platform.backups, after_kill, after_whole
    )
    print(outcomes)
    # The newest pre-restore snapshot restores, by hand, to the state it was taken of.
    newest = snapshots(platform.backups)[-1]
    sql = gzip.decompress(newest.read_bytes())
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", scratch_database],
        input=sql, check=True, capture_output=True,
    )
    # Same rows, statements and sequences; COPY row order follows the physical layout.
    assert sorted(pg_dump_text(scratch_database).splitlines()) == sorted(before.splitlines())


# -- restore-all, SQLite ---------------------------------------------------------------


def parts(platform: Platform) -> dict[str, object]:
    """The live set in the units restore-all swaps, one rename each: the database, the
    uploads folder, each config file, each top-level app-data entry. A unit absent on
    one side is `{}` there."""
    root = str(platform.root)
    split: dict[str, dict[str, str]] = {}
    for path, value in live_files(platform).items():
        relative = os.path.relpath(path, root)
        names = Path(relative).parts
        if any(is_partial(n) or is_restore_leftover(n) for n in names):
            continue  # staging or a write in progress (swept by the next run), not live data
        if relative == "data":
            continue
        unit = "/".join(names[:2]) if names[0] == "data" else names[0]
        split.setdefault(unit, {})[relative] = value
    return {"database": sqlite_dump(platform.db_path), **split}


@pytest.mark.slow
def test_restore_all_sqlite_killed_at_seeded_moments(platform: Platform, cli: ForkingCli) -> None:
    make_sqlite_db(platform.db_path, agents=100, messages=20000)
    populate(platform.root)
    uploads = platform.root / "data" / "uploads"
    for i in range(4):
        (uploads / f"big{i}.bin").write_bytes(os.urandom(1 << 20))
    code, output = cli.run("backup-all")
    assert code == 0, output
    [archive] = platform.backups.glob("full_backup_*.tar.gz")
    restored = parts(platform)
    damage(platform.root)
    change_sqlite(platform.db_path)
    before = parts(platform)
    assert before["database"] != restored["database"] and before != restored

    def back_to_before() -> None:
        damage(platform.root)
        change_sqlite(platform.db_path)
        assert parts(platform) == before

    def whole_set() -> str:
        live = parts(platform)
        if live == before:
            return "before"
        assert live == restored, "after recovery the set is a mix of before and restored"
        return "restored"

    def after_kill() -> str:
        live = parts(platform)
        for name in {*live, *before, *restored}:
            value = live.get(name, {})
            assert value in (before.get(name, {}), restored.get(name, {})), f"{name}: a mix"
        if (platform.backups / JOURNAL_NAME).exists():
            code, output = cli.run("db-backup")  # the next command: recovers under the lock
            assert code == 0, output
        outcome = whole_set()
        sqlite_snapshots_intact()
        if outcome == "restored":
            back_to_before()
        return outcome

    def after_whole() -> None:
        assert parts(platform) == restored
        back_to_before()

    def staging_appears() -> Callable[[], bool]:
        # restore-all stages beside each live part: a new hidden entry in the app's data.
        in_data = new_entry(platform.root / "data", lambda name: name.startswith("."))
        in_backups = new_entry(platform.backups, lambda name: ".partial-" in name)
        return lambda: in_data() or in_backups()

    def sqlite_snapshots() -> list[Path]:
        folder = platform.db_path.parent
        return sorted(folder.glob("admin.db.before_restore.*"), key=lambda p: p.stat().st_mtime_ns)

    def sqlite_snapshots_intact() -> None:
        for path in sqlite_snapshots():
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",), path
            finally:
                db.close()

    outcomes = kill_restores(
        cli,
        ("restore-all", str(archive), "--yes"),
        20261130,
        platform.backups,
        after_kill,
        after_whole,
        staging_appears,
    )
    print(outcomes)
    sqlite_snapshots_intact()
    copy = platform.root.parent / "snapshot.db"
    copy.write_bytes(sqlite_snapshots()[-1].read_bytes())
    assert sqlite3.connect(copy).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert sqlite_dump(copy) == before["database"]
