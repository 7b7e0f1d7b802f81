"""restore-all: a full backup made by `backup-all` comes back whole — database, uploads,
configuration, application data — or, when anything is wrong, nothing changes at all."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasks.restore.files import is_restore_leftover
from tests.conftest import Platform, fill_postgres, pg_dump_text, pg_url, sqlite_dump
from tests.test_db_restore import (
    WARNING,
    change_postgres,
    change_sqlite,
    flip_byte,
    one_error_line,
    snapshot_path,
    tree_state,
)

# -- an installation with every kind of data -----------------------------------------


def populate(root: Path) -> None:
    """Uploads (nested, binary, a link inside), config files, app data beside the DB."""
    data = root / "data"
    (data / "uploads" / "2025" / "11").mkdir(parents=True, exist_ok=True)
    (data / "uploads" / "2025" / "11" / "photo.png").write_bytes(os.urandom(70_000))
    (data / "uploads" / "readme ü.txt").write_text("uploaded\n")
    os.symlink("2025/11/photo.png", data / "uploads" / "latest.png")
    (data / "cache").mkdir()
    (data / "cache" / "agents.json").write_text(json.dumps({"n": 1}))
    (data / "sessions").mkdir()
    (data / "sessions" / "s1").write_bytes(os.urandom(500))
    (data / "settings.ini").write_text("[app]\nx=1\n")
    os.chmod(data / "settings.ini", 0o640)
    (root / "config.php").write_text("<?php return ['debug' => false];\n")
    env = root / ".env"
    # The application's .env also configures the backup tool: keep what the test set.
    env.write_text("APP_NAME=chatbot\n")


def damage(root: Path) -> None:
    """What an incident does: lost and changed uploads, config and app data."""
    data = root / "data"
    shutil.rmtree(data / "uploads" / "2025")
    (data / "uploads" / "new-after-backup.txt").write_text("later\n")
    (data / "cache" / "agents.json").write_text("corrupted")
    shutil.rmtree(data / "sessions")
    (data / "later.log").write_text("after\n")
    (root / "config.php").unlink()
    (root / ".env").write_text("APP_NAME=broken\n")


def live_files(platform: Platform) -> dict[str, str]:
    """Uploads, config and app data — everything restore-all restores except the database."""
    state = tree_state(platform.root)
    return {
        path: value
        for path, value in state.items()
        if not Path(path).name.startswith("admin.db") and not is_restore_leftover(Path(path).name)
    }


def full_backup(platform: Platform) -> Path:
    done = platform.run("backup-all")
    assert done.returncode == 0, done.stderr
    [archive] = platform.backup_files("full_backup_*.tar.gz")
    return archive


@pytest.fixture
def full_sqlite(sqlite_platform: Platform) -> Platform:
    populate(sqlite_platform.root)
    return sqlite_platform


# -- rebuilding archives for the refusal tests ----------------------------------------


def rewrite_archive(archive: Path, target: Path, edit: Callable[[Path], None], tmp: Path) -> Path:
    """Unpack `archive`, let `edit` change the tree, pack it again (no sidecar)."""
    work = tmp / "rewrite"
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="tar")
    [top] = list(work.iterdir())
    edit(top)
    manifests = ("MANIFEST.txt", "MANIFEST.json")  # last, as backup-all writes them
    with tarfile.open(target, "w:gz") as tar:
        tar.add(top, arcname=top.name, recursive=False)
        for entry in sorted(top.iterdir()):
            if entry.name not in manifests:
                tar.add(entry, arcname=f"{top.name}/{entry.name}")
        for name in manifests:
            if (top / name).exists():
                tar.add(top / name, arcname=f"{top.name}/{name}")
    return target


def set_manifest_entry(top: Path, rel: str) -> None:
    manifest = json.loads((top / "MANIFEST.json").read_text())
    data = (top / rel).read_bytes()
    entry = manifest["database"] if manifest["database"]["artifact"] == rel else None
    if entry is None:
        [entry] = [f for f in manifest["files"] if f["path"] == rel]
    entry["size"] = len(data)
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    (top / "MANIFEST.json").write_text(json.dumps(manifest))


def evil_archive(path: Path, add: Callable[[tarfile.TarFile], None]) -> Path:
    """A full-backup-looking archive with one hostile member."""
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("full_backup_20250101_000000")
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        add(tar)
    return path


def _file(name: str, data: bytes = b"pwned\n") -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    return add


def _link(name: str, target: str, hard: bool = False) -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
        info.linkname = target
        tar.addfile(info)

    return add


def _device(name: str) -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.CHRTYPE
        info.devmajor, info.devminor = 1, 3
        tar.addfile(info)

    return add


# -- SQLite installations -------------------------------------------------------------


def test_full_round_trip_through_the_cli(full_sqlite: Platform) -> None:
    platform = full_sqlite
    archive = full_backup(platform)
    backed_up_db = sqlite_dump(platform.db_path)
    backed_up_files = live_files(platform)
    change_sqlite(platform.db_path)
    changed_db = sqlite_dump(platform.db_path)
    damage(platform.root)

    done = platform.run("restore-all", str(archive), input="yes\n")
    assert done.returncode == 0, done.stderr
    assert WARNING in done.stdout
    assert sqlite_dump(platform.db_path) == backed_up_db
    assert live_files(platform) == backed_up_files
    assert os.readlink(platform.root / "data" / "uploads" / "latest.png") == "2025/11/photo.png"
    assert "match MANIFEST.json" in done.stdout
    assert "uploads (" in done.stdout and "config (" in done.stdout and "data (" in done.stdout
    snapshot = snapshot_path(done.stdout)
    assert sqlite_dump(snapshot) == changed_db
    # Nothing of the restore's machinery is left behind, in the data folder or above it.
    for folder in (platform.root, platform.root / "data", platform.root / "data" / "uploads"):
        leftovers = [
            p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".env"
        ]
        assert leftovers == [], folder


def test_snapshots_inside_the_data_folder_are_kept(full_sqlite: Platform) -> None:
    """(A BACKUP_DIR inside the data folder is refused when settings load, issue 15:
    tests/test_trust_core.py; the database's snapshots beside it stay protected.)"""
    platform = full_sqlite
    old_snapshot = platform.root / "data" / "admin.db.before_restore.20240101_000000"
    old_snapshot.write_bytes(b"an older snapshot")
    archive = full_backup(platform)
    backups_before = tree_state(platform.backups)
    damage(platform.root)
    done = platform.run("restore-all", "--yes", str(archive))
    assert done.returncode == 0, done.stderr
    assert old_snapshot.read_bytes() == b"an older snapshot"
    after = tree_state(platform.backups)
    assert all(after.get(path) == value for path, value in backups_before.items())
    assert (platform.root / "data" / "uploads" / "2025" / "11" / "photo.png").is_file()


@pytest.fixture
def other_filesystem() -> Iterator[Path]:
    """A folder on another filesystem than the test's (tmpfs), for cross-device swaps."""
    shm = Path("/dev/shm")  # noqa: S108  (a private folder is made inside, removed after)
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(Path.cwd()).st_dev:
        pytest.skip("no second filesystem here")
    folder = Path(tempfile.mkdtemp(prefix="chatbot-restore-test-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_uploads_on_another_filesystem(
    full_sqlite: Platform, other_filesystem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staging lies beside the data folder; uploads elsewhere are copied over, then renamed."""
    platform = full_sqlite
    uploads = other_filesystem / "uploads"
    shutil.move(platform.root / "data" / "uploads", uploads)
    platform.set(monkeypatch, UPLOADS_DIR=str(uploads))
    archive = full_backup(platform)
    backed_up = tree_state(uploads)
    shutil.rmtree(uploads / "2025")
    (uploads / "new.txt").write_text("after the backup\n")
    done = platform.run("restore-all", "--yes", str(archive))
    assert done.returncode == 0, done.stderr
    assert tree_state(uploads) == backed_up
    assert [p.name for p in other_filesystem.iterdir()] == ["uploads"]  # no copies left


@pytest.mark.parametrize("answer", ["no\n", ""])
def test_no_or_end_of_input_aborts(full_sqlite: Platform, answer: str) -> None:
    archive = full_backup(full_sqlite)
    damage(full_sqlite.root)
    before = tree_state(full_sqlite.root, full_sqlite.backups)
    done = full_sqlite.run("restore-all", str(archive), input=answer)
    assert done.returncode == 1
    assert "aborted" in one_error_line(done)
    assert tree_state(full_sqlite.root, full_sqlite.backups) == before


EVIL = {
    "dot-dot member": _file("full_backup_20250101_000000/../../escaped.txt"),
    "absolute member": _file("/chatbot-restore-absolute.txt"),
    "link pointing out": _link("full_backup_20250101_000000/data/etc", "../../../../../etc"),
    "absolute link": _link("full_backup_20250101_000000/uploads/passwd", "/etc/passwd"),
    "hard link out": _link("full_backup_20250101_000000/data/shadow", "/etc/shadow", hard=True),
    "device file": _device("full_backup_20250101_000000/data/null"),
}


@pytest.mark.parametrize("case", sorted(EVIL))
def test_hostile_archive_members_are_refused(
    full_sqlite: Platform, tmp_path: Path, case: str
) -> None:
    archive = evil_archive(tmp_path / "full_backup_20250101_000000.tar.gz", EVIL[case])
    full_sqlite.backups.mkdir(mode=0o700)  # as a first run's lock would make it
    before = tree_state(full_sqlite.root, full_sqlite.backups)
    outside = {p.name for p in tmp_path.iterdir()}
    done = full_sqlite.run("restore-all", "--yes", str(archive))
    line = one_error_line(done)
    assert "refused" in line, line
    assert tree_state(full_sqlite.root, full_sqlite.backups) == before
    assert {p.name for p in tmp_path.iterdir()} == outside
    assert not Path("/chatbot-restore-absolute.txt").exists()


def _altered_upload(top: Path) -> None:
    (top / "uploads" / "readme ü.txt").write_text("tampered\n")


def _unlisted_file(top: Path) -> None:
    (top / "data" / "extra.bin").write_bytes(b"not in the manifest")


def _missing_file(top: Path) -> None:
    (top / "data" / "settings.ini").unlink()


def _no_manifest(top: Path) -> None:
    (top / "MANIFEST.json").unlink()


def _bad_manifest(top: Path) -> None:
    (top / "MANIFEST.json").write_text("{not json")


MISMATCH = {
    "altered upload": (_altered_upload, "does not match its sha256"),
    "unlisted file": (_unlisted_file, "not listed in the manifest"),
    "missing file": (_missing_file, "settings.ini missing"),
    "no manifest": (_no_manifest, "no MANIFEST.json"),
    "malformed manifest": (_bad_manifest, "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(MISMATCH))
def test_archive_that_disagrees_with_its_manifest_is_refused(
    full_sqlite: Platform, tmp_path: Path, case: str
) -> None:
    edit, expected = MISMATCH[case]
    archive = full_backup(full_sqlite)
    bad = rewrite_archive(archive, tmp_path / "full_backup_20250101_000000.tar.gz", edit, tmp_path)
    damage(full_sqlite.root)
    before = tree_state(full_sqlite.root, full_sqlite.backups)
    line = one_error_line(full_sqlite.run("restore-all", "--yes", str(bad)))
    assert expected in line, line
    assert tree_state(full_sqlite.root, full_sqlite.backups) == before


@pytest.mark.parametrize("fault", ["truncated", "flipped byte", "sha256 mismatch"])
def test_damaged_archive_is_refused(full_sqlite: Platform, fault: str) -> None:
    archive = full_backup(full_sqlite)
    sidecar = archive.with_name(archive.name + ".sha256")
    if fault == "truncated":
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
        sidecar.unlink()
    elif fault == "flipped byte":
        flip_byte(archive)
    else:
        sidecar.write_text(f"{'1' * 64}  {archive.name}\n")
    damage(full_sqlite.root)
    before = tree_state(full_sqlite.root, full_sqlite.backups)
    line = one_error_line(full_sqlite.run("restore-all", "--yes", str(archive)))
    assert "truncated" in line or "damaged" in line or "sha256 does not match" in line, line
    assert tree_state(full_sqlite.root, full_sqlite.backups) == before


def test_database_in_use_puts_the_files_back(full_sqlite: Platform) -> None:
    """A database in use is refused before any file is swapped in: nothing changes."""
    platform = full_sqlite
    archive = full_backup(platform)
    damage(platform.root)
    files_before = live_files(platform)
    app = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            f"db = sqlite3.connect({str(platform.db_path)!r}); db.execute('PRAGMA journal_mode=WAL')\n"
            "db.execute('INSERT INTO agents(name) VALUES (1)'); db.commit()\n"
            "print('ready', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout is not None and app.stdout.readline().strip() == "ready"
        content = sqlite_dump(platform.db_path)
        line = one_error_line(platform.run("restore-all", "--yes", str(archive)))
        # Refused before the first live change (the swap phase starts only after it).
        assert "in use by another process" in line and "nothing was changed" in line
        assert sqlite_dump(platform.db_path) == content
        assert live_files(platform) == files_before
    finally:
        app.communicate("", timeout=30)


def test_disaster_recovery_into_an_empty_installation(full_sqlite: Platform) -> None:
    platform = full_sqlite
    archive = full_backup(platform)
    backed_up_db = sqlite_dump(platform.db_path)
    backed_up_files = live_files(platform)
    shutil.rmtree(platform.root / "data")
    (platform.root / "config.php").unlink()
    (platform.root / ".env").unlink()
    done = platform.run("restore-all", "--yes", str(archive))
    assert done.returncode == 0, done.stderr
    assert "pre-restore snapshot: none" in done.stdout
    assert sqlite_dump(platform.db_path) == backed_up_db
    assert live_files(platform) == backed_up_files


def test_python_api_needs_confirmation(full_sqlite: Platform) -> None:
    from flows import RestoreResult, restore_all
    from tasks.core.errors import AbortedByOperator

    archive = full_backup(full_sqlite)
    damage(full_sqlite.root)
    before = tree_state(full_sqlite.root, full_sqlite.backups)
    with pytest.raises(AbortedByOperator):
        restore_all(str(archive))
    assert tree_state(full_sqlite.root, full_sqlite.backups) == before
    result = restore_all(archive.name, confirm=True)
    assert isinstance(result, RestoreResult)
    assert result.job == "restore-all" and result.tables == {"agents": 50, "messages": 500}
    assert result.counts_checked_against == "MANIFEST.json"


def test_a_database_backup_is_not_a_full_backup(full_sqlite: Platform) -> None:
    done = full_sqlite.run("db-backup")
    assert done.returncode == 0, done.stderr
    [artifact] = full_sqlite.backup_files("admin_sqlite_*.db.gz")
    line = one_error_line(full_sqlite.run("restore-all", "--yes", str(artifact)))
    assert "not a full backup" in line and "db-restore" in line


# -- PostgreSQL installations ---------------------------------------------------------


@pytest.fixture
def full_pg(platform: Platform, pg_database: str, monkeypatch: pytest.MonkeyPatch) -> Platform:
    fill_postgres(pg_database, rows=2000)
    platform.set(monkeypatch, ADMIN_DB_TYPE="postgres", ADMIN_DATABASE_URL=pg_url(pg_database))
    platform.env["_DBNAME"] = pg_database
    populate(platform.root)
    return platform


def test_postgres_full_round_trip(full_pg: Platform) -> None:
    dbname = full_pg.env["_DBNAME"]
    archive = full_backup(full_pg)
    backed_up_db = pg_dump_text(dbname)
    backed_up_files = live_files(full_pg)
    change_postgres(dbname)
    damage(full_pg.root)
    done = full_pg.run("restore-all", "--yes", str(archive))
    assert done.returncode == 0, done.stderr
    assert pg_dump_text(dbname) == backed_up_db
    assert live_files(full_pg) == backed_up_files
    snapshot = snapshot_path(done.stdout)
    assert snapshot.parent == full_pg.backups and snapshot.name.startswith(
        "admin_postgres_before_restore_"
    )


def test_postgres_dump_failing_at_the_end_puts_everything_back(
    full_pg: Platform, tmp_path: Path
) -> None:
    dbname = full_pg.env["_DBNAME"]
    archive = full_backup(full_pg)

    def break_last_statement(top: Path) -> None:
        [dump] = list((top / "database").iterdir())
        sql = gzip.decompress(dump.read_bytes())
        end = sql.rindex(b"\n--\n-- PostgreSQL database dump complete")  # before the trailer
        dump.write_bytes(gzip.compress(sql[:end] + b"\nSELECT no_such_function();\n" + sql[end:]))
        set_manifest_entry(top, f"database/{dump.name}")

    bad = rewrite_archive(
        archive, tmp_path / "full_backup_20250101_000000.tar.gz", break_last_statement, tmp_path
    )
    change_postgres(dbname)
    damage(full_pg.root)
    db_before = pg_dump_text(dbname)
    files_before = live_files(full_pg)
    line = one_error_line(full_pg.run("restore-all", "--yes", str(bad)))
    assert "no_such_function" in line and "were put back" in line
    assert pg_dump_text(dbname) == db_before
    assert live_files(full_pg) == files_before


def test_sqlite_archive_into_a_postgres_installation_is_refused(
    full_sqlite: Platform, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = full_backup(full_sqlite)
    full_sqlite.set(monkeypatch, ADMIN_DB_TYPE="postgres", ADMIN_DATABASE_URL=pg_url(pg_database))
    before = tree_state(full_sqlite.root, full_sqlite.backups)
    line = one_error_line(full_sqlite.run("restore-all", "--yes", str(archive)))
    assert "holds a SQLite database" in line
    assert tree_state(full_sqlite.root, full_sqlite.backups) == before
    assert sqlite3.connect(full_sqlite.db_path).execute("SELECT count(*) FROM agents").fetchone()
