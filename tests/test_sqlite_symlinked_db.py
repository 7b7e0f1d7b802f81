"""A symlinked ADMIN_DB_PATH (`data/admin.db -> /srv/db/admin.db`), driven through the
real CLI: backups read through the link, restores write where it points.

The application opens the database through the link, and SQLite keeps `-wal`/`-journal`
beside the target, so a restore that put a regular file in the link's place would
leave the application on the old, unrestored target. Here the link must stay the same
link, the target must hold the backed-up database, and a link to nothing must be
refused in one line (exit 7) with nothing changed.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Platform, make_sqlite_db, sqlite_dump
from tests.test_db_restore import one_error_line, tree_state


@pytest.fixture
def linked(platform: Platform, tmp_path: Path) -> tuple[Platform, Path]:
    """The platform with data/admin.db a link to a database in another folder (WAL mode)."""
    target = make_sqlite_db(tmp_path / "srv" / "db" / "admin.db")
    with sqlite3.connect(target) as db:
        db.execute("PRAGMA journal_mode=WAL")
    platform.db_path.symlink_to(target)
    return platform, target


def add_rows(path: Path, count: int = 7) -> None:
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO agents(name) VALUES (?)", [(f"new-{i}",) for i in range(count)])
    db.close()


def agent_count(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM agents").fetchone()[0])
    finally:
        db.close()


def assert_link_kept(platform: Platform, target: Path) -> None:
    assert platform.db_path.is_symlink(), "the restore replaced the link by a file"
    assert os.readlink(platform.db_path) == str(target)
    assert target.is_file() and not target.is_symlink()


def leftovers_beside(target: Path) -> list[str]:
    """Anything but the database itself in the target's folder (stages, companions)."""
    return sorted(p.name for p in target.parent.iterdir() if p.name != target.name)


def test_db_restore_writes_through_the_link(linked: tuple[Platform, Path]) -> None:
    platform, target = linked
    done = platform.run("db-backup")
    assert done.returncode == 0, done.stderr
    backed_up = sqlite_dump(target)
    (backup,) = platform.backup_files("admin_sqlite_*.db.gz")

    add_rows(target)
    changed = sqlite_dump(target)
    assert changed != backed_up

    done = platform.run("db-restore", "--yes", str(backup))
    assert done.returncode == 0, done.stderr
    assert_link_kept(platform, target)
    assert sqlite_dump(target) == backed_up
    assert sqlite_dump(platform.db_path) == backed_up  # what the application opens
    assert leftovers_beside(target) == []  # staged beside the target, renamed over it
    # The pre-restore snapshot is `{DB_PATH}.before_restore.*`, beside the link, and
    # holds what the target held (read through the link), not the link.
    (snapshot,) = platform.db_path.parent.glob("admin.db.before_restore.*")
    assert not snapshot.is_symlink()
    assert sqlite_dump(snapshot) == changed


def test_restore_all_writes_through_the_link(linked: tuple[Platform, Path]) -> None:
    platform, target = linked
    (platform.root / "data" / "uploads" / "a.txt").write_text("kept\n")
    done = platform.run("backup-all")
    assert done.returncode == 0, done.stderr
    backed_up = sqlite_dump(target)
    (archive,) = platform.backup_files("full_backup_*.tar.gz")

    add_rows(target, 3)
    assert sqlite_dump(target) != backed_up

    done = platform.run("restore-all", "--yes", str(archive))
    assert done.returncode == 0, done.stderr
    assert_link_kept(platform, target)
    assert sqlite_dump(target) == backed_up
    assert leftovers_beside(target) == []
    assert (platform.root / "data" / "uploads" / "a.txt").read_text() == "kept\n"

    done = platform.run("test-restore", "--backup-file", str(archive))
    assert done.returncode == 0, done.stdout + done.stderr


def test_backup_reads_the_wal_beside_the_target_and_restore_refuses_while_open(
    linked: tuple[Platform, Path],
) -> None:
    """SQLite keeps the WAL beside the target: a backup must see the rows still only in
    it, and a restore must see that the application still has the database open."""
    platform, target = linked
    before = agent_count(target)
    app = sqlite3.connect(platform.db_path)  # the application, through the link
    try:
        app.execute("PRAGMA wal_autocheckpoint=0")
        app.executemany("INSERT INTO agents(name) VALUES (?)", [(f"wal-{i}",) for i in range(5)])
        app.commit()
        assert Path(f"{target}-wal").stat().st_size > 0
        assert not Path(f"{platform.db_path}-wal").exists()

        done = platform.run("db-backup")
        assert done.returncode == 0, done.stderr
        (backup,) = platform.backup_files("admin_sqlite_*.db.gz")

        content = sqlite_dump(target)
        done = platform.run("db-restore", "--yes", str(backup))
        line = one_error_line(done)
        assert done.returncode == 7, done.stderr
        assert "in use by another process" in line and str(target) in line
        assert_link_kept(platform, target)
        assert sqlite_dump(target) == content
        assert leftovers_beside(target) == ["admin.db-shm", "admin.db-wal"]  # no stage left
    finally:
        app.close()

    done = platform.run("db-restore", "--yes", str(backup))
    assert done.returncode == 0, done.stderr
    assert_link_kept(platform, target)
    assert agent_count(target) == before + 5  # the WAL's rows were in the backup


def test_a_link_to_nothing_is_refused_with_nothing_changed(
    linked: tuple[Platform, Path],
) -> None:
    platform, target = linked
    assert platform.run("db-backup").returncode == 0
    assert platform.run("backup-all").returncode == 0
    (backup,) = platform.backup_files("admin_sqlite_*.db.gz")
    (archive,) = platform.backup_files("full_backup_*.tar.gz")
    for path in target.parent.iterdir():
        path.unlink()  # the disk with the real database went away; the link dangles
    state = tree_state(platform.root, target.parent, platform.backups)

    for command in (("db-restore", "--yes", str(backup)), ("restore-all", "--yes", str(archive))):
        done = platform.run(*command)
        line = one_error_line(done)
        assert done.returncode == 7, (command, done.stderr)
        assert "ADMIN_DB_PATH" in line and "which does not exist" in line
        assert "nothing was changed" in line
        assert platform.db_path.is_symlink() and not platform.db_path.exists()
        assert tree_state(platform.root, target.parent, platform.backups) == state
