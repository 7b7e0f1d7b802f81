"""kill -9 at 20+ seeded moments of `db-backup`, `backup-all` and an off-site upload.

Each moment: the real `flows.cli.main` in a forked child (tests/support/kill.py: the
imports are paid once, so the moments land in the run, not in Python's start-up), killed
with its process group at a seeded delay — a few in Prefect's start-up, most after the
run's work marker (its first `.partial-` file) within the measured work phase. After each
kill, in-process and cheap: every file under a final backup name verifies (gzip/zstd
stream whole, sha256 sidecar matches).

"The next run succeeds without clean-up" is proven by the run itself: every 5th moment
is a whole run instead of a kill, and a whole run ends the test — each right after
killed runs, with nothing removed by hand, and with BACKUP_LOCK_TIMEOUT=5, so a lock
left by a killed run (the kernel drops a dead holder's flock) would fail it with exit 5.
Those runs also sweep the partial files, checked at the end.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasks.core.naming import parse_backup_name
from tasks.verify.backup_file import verify_compressed_file
from tests.conftest import Platform, make_sqlite_db
from tests.support.kill import ForkingCli, Moments, calibrate, new_entry

KILLS = 20
WHOLE_RUN_EVERY = 6
MAX_RUNS = 60


@pytest.fixture
def cli(platform: Platform, tmp_path: Path) -> Iterator[ForkingCli]:
    worker = ForkingCli(platform.env, platform.root, tmp_path / "logs")
    yield worker
    worker.close()


def grow(path: Path, megabytes: int) -> None:
    """Incompressible rows: the backup's work phase lasts about a second."""
    make_sqlite_db(path)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
    db.executemany(
        "INSERT INTO blobs(data) VALUES (?)", [(os.urandom(1 << 20),) for _ in range(megabytes)]
    )
    db.commit()
    db.close()


def finals_verify(folder: Path) -> int:
    """Every file under a final backup name is whole; returns how many there are."""
    finals = [p for p in folder.iterdir() if p.is_file() and parse_backup_name(p.name)]
    for path in finals:
        verify_compressed_file(path)  # raises on a truncated/corrupt file or a lying sidecar
    return len(finals)


def check_finals(folder: Path) -> None:
    finals_verify(folder)


def check_remote(remote: Path) -> None:
    remote_committed(remote)


def partial_appears(folder: Path) -> Callable[[], Callable[[], bool]]:
    return lambda: new_entry(folder, lambda name: ".partial-" in name)


def kill_at_moments(
    cli: ForkingCli,
    argv: tuple[str, ...],
    seed: int,
    make_marker: Callable[[], Callable[[], bool]],
    check: Callable[[], None],
) -> int:
    """Calibrate, then runs until KILLS of them were killed (every WHOLE_RUN_EVERY-th
    is a whole run; a run that ends before its moment counts as a whole run too)."""
    startup, work, _ = calibrate(cli, argv, make_marker)
    print(f"{argv}: start-up {startup:.2f} s, work {work:.2f} s, load {os.getloadavg()[0]:.1f}")
    moments = Moments(seed, startup, work)
    killed = 0
    for i in range(1, MAX_RUNS + 1):
        if killed >= KILLS:
            break
        if i % WHOLE_RUN_EVERY == 0:
            code, output = cli.run(*argv)
            assert code == 0, f"run after kills needed clean-up: {output}"
        else:
            outcome = moments.kill_one(cli, argv, make_marker)
            killed += outcome.killed
            assert outcome.killed or outcome.code == 0, outcome.log
        check()
    assert killed >= KILLS
    code, output = cli.run(*argv)
    assert code == 0, output
    check()
    return killed


def no_partials_left(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if ".partial-" in p.name]


@pytest.mark.slow
def test_db_backup_killed_at_seeded_moments(platform: Platform, cli: ForkingCli) -> None:
    grow(platform.db_path, 6)
    platform.backups.mkdir(exist_ok=True)
    kill_at_moments(
        cli,
        ("db-backup",),
        20261126,
        partial_appears(platform.backups),
        lambda: check_finals(platform.backups),
    )
    assert finals_verify(platform.backups) >= 2
    no_partials_left(platform.backups)


@pytest.mark.slow
def test_backup_all_killed_at_seeded_moments(platform: Platform, cli: ForkingCli) -> None:
    grow(platform.db_path, 4)
    uploads = platform.root / "data" / "uploads"
    for i in range(6):
        (uploads / f"u{i}.bin").write_bytes(os.urandom(1 << 20))
    platform.backups.mkdir(exist_ok=True)
    kill_at_moments(
        cli,
        ("backup-all",),
        20261127,
        partial_appears(platform.backups),
        lambda: check_finals(platform.backups),
    )
    assert len([p for p in platform.backups.iterdir() if p.name.startswith("full_backup_")])
    no_partials_left(platform.backups)


def remote_committed(remote: Path) -> tuple[int, int]:
    """Every off-site object with its `.sha256` commit marker matches it and verifies.

    An object under a final name without its marker (killed between the rename and the
    marker) is uncommitted: readers skip it and the next sync uploads it again.
    """
    committed = uncommitted = 0
    for path in remote.rglob("*"):
        if not path.is_file() or not parse_backup_name(path.name):
            continue
        marker = path.with_name(path.name + ".sha256")
        if not marker.exists():
            uncommitted += 1
            continue
        recorded = marker.read_text().split()[0]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == recorded, path
        verify_compressed_file(path)
        committed += 1
    return committed, uncommitted


@pytest.mark.slow
def test_offsite_sync_killed_at_seeded_moments(
    platform: Platform, cli: ForkingCli, tmp_path: Path
) -> None:
    """`offsite-sync` to a local-path destination (rename commit, `.sha256` marker last)."""
    remote = tmp_path / "nas" / "chatbot"
    remote.mkdir(parents=True)
    platform.env["OFFSITE_DESTINATION"] = str(remote)
    cli.env["OFFSITE_DESTINATION"] = str(remote)
    grow(platform.db_path, 8)
    for _ in range(3):
        code, output = cli.run("db-backup")
        assert code == 0, output
    local = [p for p in platform.backups.iterdir() if parse_backup_name(p.name)]

    def fresh_remote() -> Callable[[], bool]:
        # Each moment starts from an empty destination, so every run has uploads to do.
        for path in remote.iterdir():
            path.unlink()
        return new_entry(remote, lambda name: ".partial" in name or name.endswith(".gz"))

    kill_at_moments(cli, ("offsite-sync",), 20261128, fresh_remote, lambda: check_remote(remote))
    committed, uncommitted = remote_committed(remote)
    assert committed >= len(local) and uncommitted == 0
    # Hidden `.NAME.partial-*` uploads of killed runs may remain: another host could still
    # be writing one, so the off-site prune removes them only once older than
    # STALE_PARTIAL_AGE (tasks/offsite/remote.py). None carries a backup name.
    assert all(p.name.startswith(".") for p in remote.iterdir() if ".partial-" in p.name)
