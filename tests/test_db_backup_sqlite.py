"""db-backup on SQLite: round trip with the plain tools, consistency, files and modes."""

from __future__ import annotations

import gzip
import multiprocessing
import os
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Platform, make_sqlite_db, sqlite_dump


def gunzip_to(artifact: Path, target: Path) -> Path:
    with gzip.open(artifact, "rb") as src, open(target, "wb") as dst:
        dst.write(src.read())
    return target


def test_cli_round_trip_with_plain_tools(sqlite_platform: Platform, tmp_path: Path) -> None:
    before = sqlite_dump(sqlite_platform.db_path)
    done = sqlite_platform.run("db-backup")
    assert done.returncode == 0, done.stderr
    files = sqlite_platform.backup_files("admin_sqlite_*.db.gz")
    assert len(files) == 1
    artifact = files[0]
    assert "Backup completed" in done.stdout and artifact.name in done.stdout
    # The guide's way back: gunzip, then sqlite3.
    restored = tmp_path / "restored.db"
    subprocess.run(f"gunzip -c '{artifact}' > '{restored}'", shell=True, check=True)
    assert (
        subprocess.run(
            ["sqlite3", str(restored), "PRAGMA integrity_check"], capture_output=True, text=True
        ).stdout.strip()
        == "ok"
    )
    os.unlink(sqlite_platform.db_path)  # destroy
    assert sqlite_dump(restored) == before
    # sha256sum -c accepts the sidecar.
    check = subprocess.run(
        ["sha256sum", "-c", f"{artifact.name}.sha256"],
        cwd=artifact.parent,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and ": OK" in check.stdout


def test_files_are_private(sqlite_platform: Platform) -> None:
    assert sqlite_platform.run("db-backup").returncode == 0
    assert stat.S_IMODE(sqlite_platform.backups.stat().st_mode) == 0o700
    for path in sqlite_platform.backup_files():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_python_api_returns_a_typed_result(sqlite_platform: Platform) -> None:
    from flows import DbBackupResult, db_backup

    result = db_backup(retention_days=3)
    assert isinstance(result, DbBackupResult)
    assert Path(result.path).is_file() and result.size == Path(result.path).stat().st_size
    assert result.tables == {"agents": 50, "messages": 500}
    assert result.db_type == "sqlite" and len(result.sha256) == 64


def test_wal_database_is_backed_up_with_its_wal(sqlite_platform: Platform, tmp_path: Path) -> None:
    writer = sqlite3.connect(sqlite_platform.db_path)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # keep the new rows in the -wal file only
    writer.executemany("INSERT INTO agents(name) VALUES (?)", [(f"wal-{i}",) for i in range(100)])
    writer.commit()
    assert Path(f"{sqlite_platform.db_path}-wal").stat().st_size > 0
    from flows import db_backup

    result = db_backup()
    writer.close()
    restored = gunzip_to(Path(result.path), tmp_path / "r.db")
    count = (
        sqlite3.connect(restored)
        .execute("SELECT count(*) FROM agents WHERE name LIKE 'wal-%'")
        .fetchone()[0]
    )
    assert count == 100
    assert result.tables["agents"] == 150


def _steady_writer(path: str, stop_at: float) -> None:
    """Each commit adds one agent and one message: the counts stay equal in every snapshot."""
    db = sqlite3.connect(path, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    i = 0
    while time.time() < stop_at:
        with db:
            db.execute("INSERT INTO agents(name) VALUES (?)", (f"w{i}",))
            db.execute(
                "INSERT INTO messages(agent_id, body) VALUES (last_insert_rowid(), 'paired')"
            )
        i += 1
    db.close()


def _wait_for_first_commit(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db = sqlite3.connect(path, timeout=30)
        try:
            if db.execute("SELECT count(*) FROM messages").fetchone()[0] > 0:
                return
        finally:
            db.close()
        time.sleep(0.1)
    raise AssertionError(f"the writer made no commit within {timeout:.0f} s")


def test_backup_under_a_steady_writer_is_consistent(platform: Platform, tmp_path: Path) -> None:
    make_sqlite_db(platform.db_path, agents=0, messages=0)
    writer = multiprocessing.get_context("spawn").Process(
        target=_steady_writer, args=(str(platform.db_path), time.time() + 300)
    )
    writer.start()
    try:
        from flows import db_backup

        _wait_for_first_commit(platform.db_path)  # a spawned writer starts slowly under load
        for n in range(5):
            result = db_backup()
            restored = gunzip_to(Path(result.path), tmp_path / f"r{n}.db")
            db = sqlite3.connect(restored)
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            agents, messages = (
                db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("agents", "messages")
            )
            db.close()
            assert agents == messages > 0
            assert result.tables == {"agents": agents, "messages": messages}
            time.sleep(1.0)
    finally:
        writer.terminate()
        writer.join()


def test_missing_database_is_a_clear_error(platform: Platform) -> None:
    done = platform.run("db-backup")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0] and "Traceback" not in done.stderr
    assert platform.backup_files() == []


def test_not_a_database_is_a_clear_error(platform: Platform) -> None:
    platform.db_path.write_bytes(os.urandom(4096))
    done = platform.run("db-backup")
    assert done.returncode != 0
    assert "not a SQLite database" in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_bad_retention_flag(sqlite_platform: Platform, value: str) -> None:
    done = sqlite_platform.run("db-backup", "--retention-days", value)
    assert done.returncode != 0 and "retention" in done.stderr.lower()
    assert sqlite_platform.backup_files() == []


def test_unknown_db_type(sqlite_platform: Platform) -> None:
    done = sqlite_platform.run("db-backup", extra_env={"ADMIN_DB_TYPE": "oracle"})
    assert done.returncode == 3
    assert (
        done.stderr.strip()
        == "chatbot-backup: error: ADMIN_DB_TYPE: must be 'sqlite' or 'postgres', got 'oracle'"
    )


def test_debug_shows_traceback(platform: Platform) -> None:
    done = platform.run("--debug", "db-backup")
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_python_m_flows_works(sqlite_platform: Platform) -> None:
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "flows", "db-backup"],
        cwd=sqlite_platform.root,
        env={**os.environ, **sqlite_platform.env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert len(sqlite_platform.backup_files("*.db.gz")) == 1
