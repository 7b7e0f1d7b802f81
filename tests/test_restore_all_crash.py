"""restore-all killed (SIGKILL) after each step of its swap phase, then the next command.

The test-only fault point (tasks/restore/journal.py, `CHATBOT_BACKUP_TEST_ONLY_SIGKILL_AT`)
makes the real CLI kill itself right after the N-th step: journal written, each rename,
the commit point, each replaced copy deleted. For every N until a run completes, the
next command that takes the backup lock must leave the whole platform — database,
uploads, config files, app data — exactly as before or exactly as restored, with the
pre-restore snapshot intact, no hidden leftovers and no journal; and before the commit
point it must be "before", after it "restored".
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import os
import shutil
import signal
import sqlite3
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.locking import job_lock
from tasks.core.settings import load_settings
from tasks.restore import journal as restore_journal
from tasks.restore.all_swap import swap_in_with_postgres, swap_in_with_sqlite
from tasks.restore.archive import new_staging_dir, stage_archive
from tasks.restore.files import SwapJournal, is_restore_leftover, stage_beside
from tasks.restore.journal import JOURNAL_NAME, TEST_KILL_VARIABLE
from tasks.restore.plan import plan_file_swaps
from tasks.restore.postgres import restore_postgres
from tasks.restore.postgres import snapshot_before_restore as pg_snapshot
from tasks.restore.sqlite import snapshot_before_restore as sqlite_snapshot
from tasks.restore.sqlite import stage_sqlite
from tasks.steps.restore import postgres_params
from tests.conftest import (
    Platform,
    fill_postgres,
    make_sqlite_db,
    pg_dump_text,
    pg_url,
    sqlite_dump,
)
from tests.test_db_restore import change_postgres, change_sqlite, tree_state

RECOVERED = "recovered an interrupted restore-all"


def small_platform(root: Path) -> None:
    """One entry of each kind restore-all swaps: uploads, a config file, app data."""
    data = root / "data"
    (data / "uploads" / "a").mkdir(parents=True, exist_ok=True)
    (data / "uploads" / "a" / "photo.bin").write_bytes(os.urandom(5000))
    os.symlink("a/photo.bin", data / "uploads" / "latest")
    (data / "cache").mkdir()
    (data / "cache" / "agents.json").write_text('{"n": 1}')
    (root / ".env").write_text("APP_NAME=chatbot\n")


def damage(root: Path) -> None:
    data = root / "data"
    shutil.rmtree(data / "uploads" / "a")
    (data / "uploads" / "new.txt").write_text("after the backup\n")
    (data / "cache" / "agents.json").write_text("changed")
    (data / "later.log").write_text("after\n")  # not in the backup: removed by a restore
    (root / ".env").write_text("APP_NAME=broken\n")


def files_state(platform: Platform) -> dict[str, str]:
    """Uploads, config files and app data, without the database and its snapshots."""
    return {
        path: value
        for path, value in tree_state(platform.root).items()
        if not Path(path).name.startswith("admin.db") and not is_restore_leftover(Path(path).name)
    }


def leftovers(*folders: Path) -> list[str]:
    found = []
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in dirnames + filenames:
                if is_restore_leftover(name) or ".partial-" in name or name == JOURNAL_NAME:
                    found.append(os.path.join(dirpath, name))
    return found


def run_killed_at(platform: Platform, archive: Path, step: int) -> bool:
    """The real CLI's restore-all with the fault point armed; True when killed at `step`."""
    done = platform.run(
        "restore-all", "--yes", str(archive), extra_env={TEST_KILL_VARIABLE: f"restore-all:{step}"}
    )
    if done.returncode == -signal.SIGKILL:
        return True
    assert done.returncode == 0, done.stderr
    return False


def swap_phase(archive: Path) -> None:
    """restore-all's work without Prefect (flows/restore_all_flow.py, same building blocks):
    lock, stage and check, pre-restore snapshot, then the journalled swap phase."""
    settings = load_settings()
    with job_lock(settings, "restore-all"):
        staging = new_staging_dir(settings.app_data)
        staged = stage_archive(archive, staging)
        assert staged.database is not None and staged.manifest.database is not None
        swapper = SwapJournal()
        if settings.db_type == "sqlite":
            copy = stage_sqlite(staged.database, "gzip", settings.db_path)
            plan, _ = plan_file_swaps(settings, staged, copy.path)
            plan = stage_beside(plan, swapper.token)
            snapshot, readable = sqlite_snapshot(settings.db_path)
            swap_in_with_sqlite(
                settings.backups,
                plan,
                swapper,
                copy,
                settings.db_path,
                readable,
                snapshot,
                [staging, copy.path],
            )
        else:
            params = postgres_params(settings)
            plan, _ = plan_file_swaps(settings, staged, None)
            plan = stage_beside(plan, swapper.token)
            pg_snapshot(params, settings.backups)
            swap_in_with_postgres(
                settings.backups,
                plan,
                swapper,
                params,
                staged.database,
                "gzip",
                staged.manifest.database.sha256,
                staged.manifest.database.tables,
                [staging],
            )
        shutil.rmtree(staging, ignore_errors=True)


def forked_swap_killed_at(archive: Path, step: int) -> bool:
    """`swap_phase` in a forked child armed to SIGKILL itself at `step` (no interpreter
    start, no Prefect: milliseconds per step). True when it was killed."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            restore_journal._steps_taken = 0
            os.environ[TEST_KILL_VARIABLE] = f"restore-all:{step}"
            swap_phase(archive)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0, "the swap phase failed in the child"
    return False


def recover_as_next_command_does(platform: Platform) -> None:
    """What every lock-taking command runs first (flows/locking.py)."""
    with job_lock(load_settings(), "test"):
        pass


class Checker:
    """Compares the platform with its two allowed states after each kill + recovery."""

    def __init__(
        self,
        platform: Platform,
        state: Callable[[], tuple[str, dict[str, str]]],
        restored: tuple[str, dict[str, str]],
        snapshot_ok: Callable[[], None],
    ) -> None:
        self.platform, self.state, self.restored, self.snapshot_ok = (
            platform,
            state,
            restored,
            snapshot_ok,
        )
        self.before = state()
        # Live parts that exist before and after a restore: a kill must never leave one
        # missing (the restored entry is exchanged in, not renamed in after a move-aside).
        uploads = platform.root / "data" / "uploads"
        self.always_there = [p for p in (platform.db_path, uploads) if os.path.lexists(p)]

    def outcome(self, step: int) -> str:
        assert not (self.platform.backups / JOURNAL_NAME).exists(), f"step {step}: journal left"
        now = self.state()
        outcome = (
            "before" if now == self.before else "restored" if now == self.restored else "MIXED"
        )
        assert outcome != "MIXED", f"step {step}: a mix of before and restored"
        assert leftovers(self.platform.root, self.platform.backups) == [], f"step {step}"
        self.snapshot_ok()
        return outcome


def every_step(checker: Checker, archive: Path, reset: Callable[[], None]) -> list[str]:
    """Kill the swap phase at step 1, 2, ... until it completes; recover; check each."""
    outcomes = []
    for step in range(1, 40):
        reset()
        if not forked_swap_killed_at(archive, step):
            assert checker.state() == checker.restored
            break
        assert (checker.platform.backups / JOURNAL_NAME).exists(), f"step {step}: no journal"
        missing = [p.name for p in checker.always_there if not os.path.lexists(p)]
        assert not missing, f"step {step}: {missing} missing right after the kill"
        recover_as_next_command_does(checker.platform)
        outcomes.append(checker.outcome(step))
    else:
        pytest.fail("the swap phase was still killed at step 40")
    # Before the commit point "before", after it "restored"; never back again.
    assert outcomes and outcomes[0] == "before" and outcomes[-1] == "restored", outcomes
    flips = sum(1 for a, b in itertools.pairwise(outcomes) if a != b)
    assert flips == 1, outcomes
    return outcomes


def cli_kill_then(
    checker: Checker, archive: Path, step: int, command: list[str], expect_code: int = 0
) -> str:
    """The real CLI killed at `step`; the real next command recovers, logging one line."""
    assert run_killed_at(checker.platform, archive, step), f"not killed at step {step}"
    done = checker.platform.run(*command)
    assert done.returncode == expect_code, done.stderr
    assert done.stderr.count(RECOVERED) == 1, done.stderr
    return checker.outcome(step)


def test_sqlite_killed_after_every_swap_step(platform: Platform, tmp_path: Path) -> None:
    make_sqlite_db(platform.db_path, agents=20, messages=200)
    small_platform(platform.root)
    done = platform.run("backup-all")
    assert done.returncode == 0, done.stderr
    [archive] = platform.backup_files("full_backup_*.tar.gz")
    restored = (sqlite_dump(platform.db_path), files_state(platform))
    change_sqlite(platform.db_path)
    changed_db = sqlite_dump(platform.db_path)
    damage(platform.root)
    pristine = tmp_path / "pristine"
    shutil.copytree(platform.root, pristine, symlinks=True)

    def reset() -> None:
        shutil.rmtree(platform.root)
        shutil.copytree(pristine, platform.root, symlinks=True)

    def state() -> tuple[str, dict[str, str]]:
        return sqlite_dump(platform.db_path), files_state(platform)

    def snapshot_ok() -> None:
        # The killed run's snapshot is the oldest; a later restore-all adds its own.
        snapshot = sorted(platform.db_path.parent.glob("admin.db.before_restore.*"))[0]
        assert oct(snapshot.stat().st_mode & 0o777) == "0o600"
        check = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        check.close()
        assert sqlite_dump(snapshot) == changed_db

    checker = Checker(platform, state, restored, snapshot_ok)
    outcomes = every_step(checker, archive, reset)
    # uploads, .env, data/cache, data/later.log (moved aside only), database: journal +
    # 9 renames before the commit point; commit + 5 replaced copies deleted after it.
    assert outcomes.count("before") == 10 and outcomes.count("restored") == 6, outcomes

    # The same through the real CLI, recovered by the next restore-all (refusing its file
    # after taking the lock) and by backup-all; db-backup is the PostgreSQL test's.
    not_a_backup = platform.backups / "full_backup_20250101_000000.tar.gz"
    reset()
    not_a_backup.write_bytes(gzip.compress(b"garbage"))  # refused after the lock: recovers first
    refused = ["restore-all", "--yes", str(not_a_backup)]
    assert cli_kill_then(checker, archive, 6, refused, expect_code=6) == "before"
    not_a_backup.unlink()
    reset()
    assert cli_kill_then(checker, archive, 12, ["backup-all"]) == "restored"


def test_postgres_killed_before_and_after_commit(
    platform: Platform, pg_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fill_postgres(pg_database, rows=300)
    platform.set(monkeypatch, ADMIN_DB_TYPE="postgres", ADMIN_DATABASE_URL=pg_url(pg_database))
    small_platform(platform.root)
    done = platform.run("backup-all")
    assert done.returncode == 0, done.stderr
    [archive] = platform.backup_files("full_backup_*.tar.gz")
    restored = (pg_dump_text(pg_database), files_state(platform))
    change_postgres(pg_database)
    changed_db = pg_dump_text(pg_database)
    damage(platform.root)
    pristine = tmp_path / "pristine"
    shutil.copytree(platform.root, pristine, symlinks=True)

    def state() -> tuple[str, dict[str, str]]:
        return pg_dump_text(pg_database), files_state(platform)

    def snapshot_ok() -> None:
        snapshots = sorted(platform.backups.glob("admin_postgres_before_restore_*.sql.gz"))
        assert snapshots, "no pre-restore snapshot"
        for snapshot in snapshots:
            assert oct(snapshot.stat().st_mode & 0o777) == "0o600"
            sidecar = snapshot.with_name(snapshot.name + ".sha256").read_text().split()[0]
            assert hashlib.sha256(snapshot.read_bytes()).hexdigest() == sidecar
            assert b"CREATE TABLE public.later" in gzip.decompress(snapshot.read_bytes())

    def reset() -> None:
        shutil.rmtree(platform.root)
        shutil.copytree(pristine, platform.root, symlinks=True)
        if pg_dump_text(pg_database) != changed_db:
            # Back to "changed" from the first pre-restore snapshot, by the product's own
            # transactional loader (no CLI run: seconds saved per step).
            first = sorted(platform.backups.glob("admin_postgres_before_restore_*.sql.gz"))[0]
            sha = first.with_name(first.name + ".sha256").read_text().split()[0]
            restore_postgres(postgres_params(load_settings()), first, "gzip", sha, None)
            assert pg_dump_text(pg_database) == changed_db

    checker = Checker(platform, state, restored, snapshot_ok)
    outcomes = every_step(checker, archive, reset)
    # journal + 7 renames before COMMIT; after it: committed, recorded, 4 replaced copies
    # deleted (no marker to drop any more: recovery asks PostgreSQL about the recorded
    # transaction id, and the database keeps nothing of the restore's).
    assert outcomes.count("before") == 8 and outcomes.count("restored") == 6, outcomes
    # The real CLI killed right after COMMIT, before the journal says so: the next
    # command finds the transaction committed and rolls forward.
    reset()
    assert cli_kill_then(checker, archive, 9, ["db-backup"]) == "restored"
    # The newest snapshot (taken from the "changed" state) restores it exactly.
    newest = sorted(platform.backups.glob("admin_postgres_before_restore_*.sql.gz"))[-1]
    sha = newest.with_name(newest.name + ".sha256").read_text().split()[0]
    restore_postgres(postgres_params(load_settings()), newest, "gzip", sha, None)
    assert pg_dump_text(pg_database) == changed_db
