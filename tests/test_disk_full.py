"""Disk full while writing a backup: a clear error, nothing partial, old backups untouched."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Platform
from tests.support.disks import small_tmpfs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "small", 24) as mount:
        yield mount


def _fill_database(path: Path, megabytes: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
    # Random bytes do not compress: the backup needs as much room as the database.
    db.executemany(
        "INSERT INTO blobs(data) VALUES (?)", [(os.urandom(1 << 20),) for _ in range(megabytes)]
    )
    db.commit()
    db.close()


def test_disk_full_then_space_back(
    platform: Platform, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backups = small_disk / "backups"
    platform.set(monkeypatch, BACKUP_DIR=str(backups))
    platform.backups = backups
    _fill_database(platform.db_path, 3)
    first = platform.run("db-backup")
    assert first.returncode == 0, first.stderr
    old = {p.name: p.read_bytes() for p in platform.backup_files()}

    _fill_database_more = sqlite3.connect(platform.db_path)
    _fill_database_more.executemany(
        "INSERT INTO blobs(data) VALUES (?)", [(os.urandom(1 << 20),) for _ in range(7)]
    )
    _fill_database_more.commit()
    _fill_database_more.close()
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (10 << 20))  # leave less room than one new backup needs

    failed = platform.run("db-backup")
    assert failed.returncode != 0
    line = failed.stderr.strip()
    assert "\n" not in line and ("space" in line.lower() or "full" in line.lower()), line
    assert {p.name: p.read_bytes() for p in platform.backup_files()} == old
    assert not [p for p in backups.iterdir() if ".partial-" in p.name]

    filler.unlink()
    again = platform.run("db-backup")
    assert again.returncode == 0, again.stderr
    assert len(platform.backup_files("admin_sqlite_*.db.gz")) == 2
