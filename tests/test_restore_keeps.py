"""restore-all keeps what it replaces (issue 17, point 4), through the real CLI.

Before the swap the live state (database, uploads, config, data) is written as
`full_before_restore_YYYYMMDD_HHMMSS.tar.gz`; the summary says how many live-only
files went and where the copy is; restore-all of that copy brings the replaced state
back exactly; a later backup-all never archives it.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Platform, sqlite_dump
from tests.test_db_restore import change_sqlite
from tests.test_restore_all import damage, full_backup, live_files, populate


@pytest.fixture
def full_sqlite(sqlite_platform: Platform) -> Platform:
    populate(sqlite_platform.root)
    return sqlite_platform


@pytest.mark.slow
def test_restore_all_keeps_the_replaced_state_and_can_bring_it_back(full_sqlite: Platform) -> None:
    archive = full_backup(full_sqlite)
    damage(
        full_sqlite.root
    )  # two files made after the backup: uploads/new-after-backup.txt, data/later.log
    change_sqlite(full_sqlite.db_path)
    replaced_files = live_files(full_sqlite)
    replaced_db = sqlite_dump(full_sqlite.db_path)

    done = full_sqlite.run("restore-all", str(archive), "--yes")
    assert done.returncode == 0, done.stderr
    [kept_line] = [line for line in done.stdout.splitlines() if "replaced state kept:" in line]
    copy = Path(re.search(r"replaced state kept: (\S+)", kept_line).group(1))  # type: ignore[union-attr]
    assert copy.parent == full_sqlite.backups
    assert re.fullmatch(r"full_before_restore_\d{8}_\d{6}\.tar\.gz", copy.name)
    assert "live-only files removed: 2 " in done.stdout
    assert not (full_sqlite.root / "data" / "later.log").exists()

    # The copy is complete, checksummed, and holds the live-only files the swap removed.
    assert (
        subprocess.run(
            ["sha256sum", "-c", copy.name + ".sha256"], cwd=copy.parent, capture_output=True
        ).returncode
        == 0
    )
    with tarfile.open(copy) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile(f"{copy.name[:-7]}/MANIFEST.json").read())  # type: ignore[union-attr]
    assert any(n.endswith("uploads/new-after-backup.txt") for n in names)
    assert any(n.endswith("data/later.log") for n in names)
    assert manifest["database"]["tables"]["later"] == 1  # the database as it was replaced

    # restore-all brings the replaced state back, files and database.
    again = full_sqlite.run("restore-all", str(copy), "--yes")
    assert again.returncode == 0, again.stderr
    # config.php was deleted by the incident, so the copy has none: restore-all keeps a
    # live config file the backup lacks (and says so), as for any full backup.
    config = str(full_sqlite.root / "config.php")
    assert {k: v for k, v in live_files(full_sqlite).items() if k != config} == replaced_files
    assert "config/config.php: not in the backup; live file kept" in again.stdout
    assert sqlite_dump(full_sqlite.db_path) == replaced_db

    # A later backup-all never archives a pre-restore snapshot.
    later = full_sqlite.run("backup-all")
    assert later.returncode == 0, later.stderr
    newest = sorted(full_sqlite.backup_files("full_backup_*.tar.gz"))[-1]
    with tarfile.open(newest) as tar:
        assert not [n for n in tar.getnames() if "before_restore" in n]
