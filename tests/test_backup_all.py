"""backup-all: a platform folder backed up, wiped, and found again with plain `tar` and `gunzip`.

Real files (nested folders, names in several scripts and one that is not UTF-8, empty
files and folders, links in and out of the tree, modes), a live SQLite database in WAL
mode with rows only in its -wal file, and the machine's PostgreSQL.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.catalog.records import read_meta, write_meta
from tasks.core.naming import db_backup_name, full_backup_name
from tasks.stream.checksum import sha256_file, write_sidecar
from tests.conftest import (
    BIN,
    Platform,
    fill_postgres,
    make_sqlite_db,
    pg_dump_text,
    pg_url,
    sqlite_dump,
)
from tests.support.manifests import parse_manifest

PASSWORD = "full-b@ckup:s3cret/%Zq"
NON_UTF8 = os.fsdecode(b"caf\xe9-latin1.bin")


# -- building and comparing trees ---------------------------------------------------------


def build_platform(root: Path) -> None:
    """What an operator's installation holds, in the guide's default layout."""
    data = root / "data"
    up = data / "uploads"
    (up / "2025" / "11").mkdir(parents=True, exist_ok=True)
    (up / "2025" / "11" / "photo.jpg").write_bytes(os.urandom(300_000))
    (up / "2025" / "11" / "доклад.pdf").write_bytes(os.urandom(50_000))
    (up / "用户").mkdir()
    (up / "用户" / "头像.png").write_bytes(os.urandom(20_000))
    (up / "emoji_😀 with spaces.txt").write_text("grinning\n")
    (up / "empty.txt").write_bytes(b"")
    (up / "empty_folder").mkdir()
    (up / "a" / "b" / "c" / "d").mkdir(parents=True)
    (up / "a" / "b" / "c" / "d" / "deep.txt").write_text("deep\n" * 100)
    (up / "big.bin").write_bytes(os.urandom(5 * 1024 * 1024 + 123))
    (up / "compressible.txt").write_text("the same line again\n" * 50_000)
    (up / NON_UTF8).write_bytes(b"latin-1 name\n")
    script = up / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o750)
    key = up / "private.key"
    key.write_text("not really a key\n")
    key.chmod(0o600)
    os.symlink("2025/11/photo.jpg", up / "latest.jpg")  # inside the tree
    os.symlink("2025", up / "year_link")  # a link to a folder: stored as a link, not entered
    os.symlink("/etc/hostname", up / "outside_link")  # out of the tree: stored, never followed
    os.symlink("no-such-file", up / "dangling_link")
    (data / "cache" / "sessions").mkdir(parents=True)
    (data / "cache" / "sessions" / "s1.json").write_text(json.dumps({"user": 1}))
    (data / "logs").mkdir()
    (data / "logs" / "app.log").write_text("started\n" * 1000)
    (data / "empty_data_folder").mkdir()
    (root / ".env").write_text("APP_NAME=chatbot\nOPENAI_MODEL=gpt-4o\n")


def tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[object, ...]]:
    """Every entry under `root`: files by sha256 and mode, folders by mode, links by target."""
    found: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel in skip:
                if name in dirnames:
                    dirnames.remove(name)
                continue
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                found[rel] = ("file", sha256_file(Path(path)), stat.S_IMODE(info.st_mode))
    return found


def extract_with_tar(archive: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(target)], check=True)
    [top] = list(target.iterdir())
    return top


@pytest.fixture
def full_platform(platform: Platform) -> Iterator[Platform]:
    """The platform with its files and a live WAL-mode database holding rows only in -wal."""
    build_platform(platform.root)
    make_sqlite_db(platform.db_path)
    live = sqlite3.connect(platform.db_path)
    live.execute("PRAGMA journal_mode=WAL")
    live.execute("PRAGMA wal_autocheckpoint=0")
    live.executemany("INSERT INTO agents(name) VALUES (?)", [(f"wal-{i}",) for i in range(25)])
    live.commit()
    assert Path(f"{platform.db_path}-wal").stat().st_size > 0
    try:
        yield platform
    finally:
        live.close()


# -- the round trip --------------------------------------------------------------------------


def test_round_trip_with_plain_tar(full_platform: Platform, tmp_path: Path) -> None:
    root = full_platform.root
    uploads_before = tree(root / "data" / "uploads")
    data_before = tree(root / "data", skip=("uploads", "admin.db", "admin.db-wal", "admin.db-shm"))
    env_before = (root / ".env").read_bytes()
    db_before = sqlite_dump(full_platform.db_path)

    done = full_platform.run("backup-all")
    assert done.returncode == 0, done.stderr
    [archive] = full_platform.backup_files("full_backup_*.tar.gz")
    assert "Full backup completed" in done.stdout and archive.name in done.stdout
    assert "skipped: config/config.php" in done.stdout  # no config.php on this install

    # sha256sum -c accepts the sidecar; the guide's manifest command prints the manifest.
    check = subprocess.run(
        ["sha256sum", "-c", f"{archive.name}.sha256"], cwd=archive.parent, capture_output=True
    )
    assert check.returncode == 0, check.stdout
    # GNU tar needs --wildcards for a pattern (bsdtar does not); the layout makes it match.
    shown = subprocess.run(
        ["tar", "--wildcards", "-xzf", str(archive), "-O", "*/MANIFEST.txt"],
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8", "surrogateescape")
    assert shown.startswith("GPT Chatbot platform — full backup manifest")
    assert "agents: 75 rows" in shown and "messages: 500 rows" in shown

    # Destroy, then get everything back with plain tar.
    shutil.rmtree(root / "data")
    (root / ".env").unlink()
    top = extract_with_tar(archive, tmp_path / "restored")
    assert top.name == archive.name.removesuffix(".tar.gz")
    assert sorted(p.name for p in top.iterdir()) == [
        "MANIFEST.json",
        "MANIFEST.txt",
        "config",
        "data",
        "database",
        "uploads",
    ]
    assert tree(top / "uploads") == uploads_before
    assert tree(top / "data") == data_before  # no live db, no -wal/-shm, no second uploads/
    assert (top / "config" / ".env").read_bytes() == env_before
    assert os.readlink(top / "uploads" / "outside_link") == "/etc/hostname"

    [db_artifact] = list((top / "database").iterdir())
    assert db_artifact.name.startswith("admin_sqlite_") and db_artifact.name.endswith(".db.gz")
    restored = tmp_path / "admin.db"
    subprocess.run(f"gunzip -c '{db_artifact}' > '{restored}'", shell=True, check=True)
    assert sqlite_dump(restored) == db_before  # the rows that were only in -wal too


def test_manifest_describes_every_file(full_platform: Platform) -> None:
    from flows import BackupAllResult, backup_all

    result = backup_all(tier="weekly")
    assert isinstance(result, BackupAllResult)
    archive = Path(result.path)
    assert result.tables == {"agents": 75, "messages": 500}
    assert result.sha256 == sha256_file(archive) and result.size == archive.stat().st_size
    assert result.sections["uploads"] == 11 and result.sections["config"] == 1
    import tarfile

    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = parse_manifest(tar.extractfile(f"{names[0]}/MANIFEST.json").read())  # type: ignore[union-attr]
        contents = {
            m.name.split("/", 1)[1]: hashlib.sha256(tar.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }
    assert names[-2:] == [f"{names[0]}/MANIFEST.txt", f"{names[0]}/MANIFEST.json"]  # last
    assert manifest.tier == "weekly" and manifest.db_type == "sqlite"
    created = datetime.fromisoformat(manifest.created_at)
    assert created.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - created).total_seconds()) < 300
    assert manifest.host and manifest.database is not None
    assert manifest.database.tables == {"agents": 75, "messages": 500}
    assert contents[manifest.database.artifact] == manifest.database.sha256
    files = {f.path: f for f in manifest.files}
    for entry in files.values():
        if entry.type == "file":
            assert contents[entry.path] == entry.sha256, entry.path
            assert not entry.changed
    assert files["uploads/empty.txt"].size == 0
    assert files[f"uploads/{NON_UTF8}"].sha256 == hashlib.sha256(b"latin-1 name\n").hexdigest()
    assert files["uploads/latest.jpg"].type == "symlink"
    assert files["uploads/latest.jpg"].target == "2025/11/photo.jpg"
    assert files["uploads/year_link"].type == "symlink"  # not entered
    assert not any(p.startswith("uploads/year_link/") for p in files)
    assert files["uploads/empty_folder"].type == "dir"
    assert files["uploads/script.sh"].mode == 0o750
    assert not any(p.startswith("data/uploads") or p.startswith("data/admin.db") for p in files)
    assert {
        "path": "config/config.php",
        "reason": f"{full_platform.root / 'config.php'} does not exist",
    } in manifest.skipped
    meta = read_meta(archive)
    assert meta["tier"] == "weekly" and meta["kind"] == "full" and meta["sha256"] == result.sha256


def test_files_are_private_and_nothing_partial_is_left(full_platform: Platform) -> None:
    assert full_platform.run("backup-all").returncode == 0
    assert stat.S_IMODE(full_platform.backups.stat().st_mode) == 0o700
    for path in full_platform.backup_files():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    leftovers = [p.name for p in full_platform.backups.iterdir() if p.name.startswith(".")]
    assert leftovers == [".chatbot-backup.lock"]


def test_backup_dir_inside_the_data_folder_is_refused(
    full_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: a BACKUP_DIR inside a backed-up folder is a configuration error (exit 3),
    checked when settings load, for every job alike (it used to be left out of data/ by
    backup-all only, while restore-all could still swap it away with uploads/)."""
    inside = full_platform.root / "data" / "backups"
    full_platform.set(monkeypatch, BACKUP_DIR=str(inside))
    full_platform.backups = inside
    from flows import backup_all
    from tasks.core.errors import ConfigError

    with pytest.raises(ConfigError, match="BACKUP_DIR .* lies inside APP_DATA_DIR"):
        backup_all()
    assert not inside.exists()


def test_postgres_round_trip(
    platform: Platform,
    pg_database: str,
    scratch_database: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    fill_postgres(pg_database, rows=2000)
    build_platform(platform.root)
    platform.set(
        monkeypatch,
        ADMIN_DB_TYPE="postgres",
        ADMIN_DATABASE_URL=pg_url(pg_database, password=PASSWORD),
    )
    before = pg_dump_text(pg_database)
    done = platform.run("backup-all", "--tier", "monthly")
    assert done.returncode == 0, done.stderr
    [archive] = platform.backup_files("full_backup_*.tar.gz")
    top = extract_with_tar(archive, tmp_path / "restored")
    [dump] = list((top / "database").glob("admin_postgres_*.sql.gz"))
    load = subprocess.run(
        f"gunzip -c '{dump}' | psql -v ON_ERROR_STOP=1 -q -h 127.0.0.1 -U postgres -d {scratch_database}",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert load.returncode == 0, load.stderr
    assert pg_dump_text(scratch_database) == before
    manifest = parse_manifest((top / "MANIFEST.json").read_bytes())
    assert manifest.db_type == "postgres" and manifest.tier == "monthly"
    assert manifest.database is not None
    assert manifest.database.tables == {"agents": 50, "messages": 2000, "audit.events": 20}
    # The password is nowhere: output, manifest, meta, sidecar.
    texts = [
        done.stdout,
        done.stderr,
        (top / "MANIFEST.json").read_text(),
        (top / "MANIFEST.txt").read_text(),
        *[p.read_text() for p in platform.backups.glob("*.json")],
    ]
    assert not [t for t in texts if PASSWORD in t or "s3cret" in t]


# -- operators' odd files ------------------------------------------------------------------


def _appender(path: str, stop_at: float) -> None:
    with open(path, "ab", buffering=0) as log:
        while time.time() < stop_at:
            log.write(b"x" * 4096)
            time.sleep(0.001)


def _churner(folder: str, stop_at: float) -> None:
    """Keep ~300 files, deleting one at random and adding one, about every millisecond.

    The walker lists the folder and then works through it; some of the names it listed
    are gone by the time it gets to them.
    """
    import random

    rng = random.Random(7)
    n = 0
    live: list[str] = []
    while time.time() < stop_at:
        name = os.path.join(folder, f"f{n:09d}")
        with open(name, "wb") as handle:
            handle.write(b"y" * 4096)
        live.append(name)
        if len(live) > 300:
            os.unlink(live.pop(rng.randrange(len(live))))
        n += 1
        time.sleep(0.0005)


def test_files_that_change_or_vanish_while_read(platform: Platform) -> None:
    import multiprocessing

    from flows import backup_all

    make_sqlite_db(platform.db_path)
    log = platform.root / "data" / "growing.log"
    log.write_bytes(os.urandom(16 * 1024 * 1024))  # big enough to be read while it grows
    churn = platform.root / "data" / "churn"
    churn.mkdir()
    context = multiprocessing.get_context("spawn")
    stop_at = time.time() + 60
    workers = [
        context.Process(target=_appender, args=(str(log), stop_at)),
        context.Process(target=_churner, args=(str(churn), stop_at)),
    ]
    for worker in workers:
        worker.start()
    vanished = changed = 0
    try:
        deadline = time.time() + 30  # spawned workers import this module first
        while time.time() < deadline and not (
            len(list(churn.iterdir())) > 100 and log.stat().st_size > 16 * 1024 * 1024
        ):
            time.sleep(0.2)
        for _ in range(4):
            result = backup_all()  # never a crash, whatever moves underneath
            manifest_reasons = {s["reason"] for s in result.skipped}
            assert manifest_reasons <= {
                "vanished while the backup ran",
                f"{platform.root / 'config.php'} does not exist",
                f"{platform.root / '.env'} does not exist",
            }, manifest_reasons
            vanished += sum(1 for s in result.skipped if s["reason"].startswith("vanished"))
            changed += "data/growing.log" in result.changed
            test = platform.run("test-restore", "--backup-file", result.path)
            assert test.returncode == 0, test.stdout  # what was stored is what the manifest says
            if vanished and changed:
                break
            time.sleep(1.1)
    finally:
        for worker in workers:
            worker.terminate()
            worker.join()
    assert changed >= 1 and vanished >= 1


def test_special_files_are_noted_not_waited_on(sqlite_platform: Platform) -> None:
    os.mkfifo(sqlite_platform.root / "data" / "worker.fifo")
    done = sqlite_platform.run("backup-all", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "skipped: data/worker.fifo: not a regular file, folder or link (fifo)" in done.stdout


def test_missing_folders_are_noted(
    sqlite_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_platform.set(monkeypatch, UPLOADS_DIR="./no-uploads-here")
    done = sqlite_platform.run("backup-all")
    assert done.returncode == 0, done.stderr
    assert "skipped: uploads:" in done.stdout and "no-uploads-here does not exist" in done.stdout


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder another user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="cb-unreadable-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv"
)
def test_unreadable_file_is_a_clear_error_unless_skipped(
    shared_tmp: Path, prefect_api_url: str
) -> None:
    """Run as `nobody`, for whom one upload is unreadable (root would read anything)."""
    root = shared_tmp / "app"
    make_sqlite_db(root / "data" / "admin.db")
    (root / "data" / "uploads").mkdir()
    (root / "data" / "uploads" / "ok.txt").write_text("fine\n")
    secret = root / "data" / "uploads" / "locked.bin"
    secret.write_bytes(b"x" * 100)
    (shared_tmp / "home").mkdir()
    backups = shared_tmp / "backups"
    for path in [shared_tmp, *shared_tmp.rglob("*")]:
        if path != secret:
            os.chown(path, 65534, 65534)
    secret.chmod(0o600)  # still owned by root: nobody cannot read it
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(shared_tmp / "home"),
        "PREFECT_HOME": str(shared_tmp / "home" / ".prefect"),
        "PREFECT_API_URL": prefect_api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "APP_ROOT": str(root),
        "BACKUP_DIR": str(backups),
    }
    command = [
        "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
        str(BIN / "chatbot-backup"), "backup-all",
    ]  # fmt: skip
    failed = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 4, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and str(secret) in lines[0] and "Permission denied" in lines[0]
    assert "BACKUP_SKIP_UNREADABLE" in lines[0]
    assert not list(backups.glob("full_backup_*"))

    skipped = subprocess.run(
        command,
        env={**env, "BACKUP_SKIP_UNREADABLE": "true"},
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped: uploads/locked.bin: cannot read: Permission denied" in skipped.stdout
    assert len(list(backups.glob("full_backup_*.tar.gz"))) == 1


# -- rotation, flags and clear errors ----------------------------------------------------------


def _fake_full(folder: Path, source: Path, days_ago: float, tier: str | None) -> Path:
    path = folder / full_backup_name(datetime.now(UTC) - timedelta(days=days_ago))
    shutil.copyfile(source, path)
    write_sidecar(path, sha256_file(path))
    if tier is not None:
        write_meta(path, {"kind": "full", "tier": tier})
    return path


def test_rotation_is_per_tier_and_keeps_three(sqlite_platform: Platform) -> None:
    from flows import backup_all

    first = Path(backup_all().path)
    folder = sqlite_platform.backups
    old_daily = [_fake_full(folder, first, d, "daily") for d in (10, 11, 12)]
    unmarked = _fake_full(folder, first, 13, None)  # made by the guide's script: daily tier
    weekly = _fake_full(folder, first, 20, "weekly")
    db_only = folder / db_backup_name("sqlite", datetime.now(UTC) - timedelta(days=30))
    db_only.write_bytes(gzip.compress(b"x"))
    stranger = folder / "full_backup_notes.txt"
    stranger.write_text("not a backup name")

    time.sleep(1.1)
    result = backup_all(retention_days=7)
    kept = set(result.kept)
    assert Path(result.path).name in kept and first.name in kept
    # Newest 3 daily kept (new, first, and the 10-day-old one); older daily ones go.
    assert old_daily[0].name in kept
    assert set(result.removed) == {old_daily[1].name, old_daily[2].name, unmarked.name}
    for path in (old_daily[1], old_daily[2], unmarked):
        assert not path.exists() and not Path(f"{path}.sha256").exists()
        assert not Path(f"{path}.meta.json").exists()
    assert weekly.exists() and db_only.exists() and stranger.exists()


def test_a_weekly_backup_without_its_meta_keeps_its_tier_from_the_manifest(
    sqlite_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A weekly backup copied back from off-site (file and .sha256 only, no .meta.json)
    is not deleted by a daily run: its MANIFEST.json says weekly. One whose manifest
    cannot be read (cut short) is kept, and the run says so."""
    from flows import backup_all
    from tasks.core import clock

    folder = sqlite_platform.backups
    made_at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20)
    monkeypatch.setattr(clock, "utc_now", lambda: made_at)
    weekly = Path(backup_all(tier="weekly").path)
    monkeypatch.setattr(clock, "utc_now", lambda: datetime.now(UTC))
    Path(f"{weekly}.meta.json").unlink()  # as copied back from off-site
    cut = folder / full_backup_name(made_at - timedelta(days=1))
    cut.write_bytes(weekly.read_bytes()[: weekly.stat().st_size // 2])
    write_sidecar(cut, sha256_file(cut))
    first = Path(backup_all().path)
    for days in (1, 2):  # three newer daily backups: the kept minimum is no reason to keep
        _fake_full(folder, first, days, "daily")

    listed = sqlite_platform.run("list", "--kind", "full")
    assert listed.returncode == 0, listed.stderr
    line = next(row for row in listed.stdout.splitlines() if row.startswith(weekly.name))
    assert "daily (assumed)" in line  # not claimed: its manifest was not read

    time.sleep(1.1)
    done = sqlite_platform.run("backup-all", "--retention-days", "7")
    assert done.returncode == 0, done.stderr
    assert weekly.exists() and Path(f"{weekly}.sha256").exists()
    assert f"rotation: {weekly.name}: no .meta.json; its MANIFEST.json records tier weekly" in (
        done.stdout
    )
    assert read_meta(weekly)["tier"] == "weekly"  # written back: the archive is read once
    assert cut.exists()
    assert f"rotation: {cut.name}: kept although older than 7 days" in done.stdout

    listed = sqlite_platform.run("list", "--json", "--kind", "full")
    assert listed.returncode == 0, listed.stderr
    tiers = {e["name"]: e["tier"] for e in json.loads(listed.stdout)}
    assert tiers[weekly.name] == "weekly"
    # The weekly run now sees it as its own (and its retention keeps it).
    later = backup_all(tier="weekly", retention_days=30)
    assert weekly.name in later.kept


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--tier", "hourly"], 3, "--tier: must be one of daily, weekly, monthly"),
        (["--retention-days", "0"], 2, "retention"),
        (["--offsite"], 3, "OFFSITE_DESTINATION is not set"),  # checked before any work
    ],
)
def test_bad_flags_are_clear(
    sqlite_platform: Platform, args: list[str], code: int, text: str
) -> None:
    done = sqlite_platform.run("backup-all", *args)
    assert done.returncode == code, done.stderr
    assert text in done.stderr and "Traceback" not in done.stderr
    assert sqlite_platform.backup_files("full_backup_*") == []


def test_config_files_with_one_name_are_refused(
    sqlite_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sqlite_platform.root / "etc").mkdir()
    (sqlite_platform.root / "etc" / ".env").write_text("A=1\n")
    (sqlite_platform.root / ".env").write_text("B=2\n")
    sqlite_platform.set(monkeypatch, CONFIG_FILES=".env,etc/.env")
    done = sqlite_platform.run("backup-all")
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "config/.env" in lines[0]


def test_missing_database_fails_and_leaves_nothing(platform: Platform) -> None:
    done = platform.run("backup-all")
    assert done.returncode == 3
    assert "does not exist" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert platform.backup_files() == []
    # Refused before the run starts: BACKUP_DIR is not even created.
    assert not platform.backups.exists() or not [
        p for p in platform.backups.iterdir() if ".partial-" in p.name
    ]


def test_python_m_flows_backup_all(sqlite_platform: Platform) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flows", "backup-all", "--retention-days", "3"],
        cwd=sqlite_platform.root,
        env={**os.environ, **sqlite_platform.env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert len(sqlite_platform.backup_files("full_backup_*.tar.gz")) == 1


def test_zstd_archive_round_trips(
    full_platform: Platform, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    full_platform.set(monkeypatch, BACKUP_COMPRESSION="zstd")
    done = full_platform.run("backup-all")
    assert done.returncode == 0, done.stderr
    [archive] = full_platform.backup_files("full_backup_*.tar.zst")
    target = tmp_path / "x"
    target.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(archive), "-C", str(target)], check=True)
    [top] = list(target.iterdir())
    assert tree(top / "uploads") == tree(full_platform.root / "data" / "uploads")
    assert list((top / "database").glob("admin_sqlite_*.db.zst"))
    test = full_platform.run("test-restore", "--backup-file", str(archive))
    assert test.returncode == 0, test.stdout + test.stderr


@pytest.mark.slow
def test_killed_backup_leaves_no_partial_archive(sqlite_platform: Platform) -> None:
    import signal

    (sqlite_platform.root / "data" / "uploads" / "large.bin").write_bytes(
        os.urandom(200 * 1024 * 1024)
    )
    process = subprocess.Popen(
        [str(BIN / "chatbot-backup"), "backup-all"],
        cwd=sqlite_platform.root,
        env={**os.environ, **sqlite_platform.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(
            sqlite_platform.backups.glob(".full_backup_*.partial-*")
        ):
            time.sleep(0.05)
        time.sleep(0.3)  # well into the archive
        assert process.poll() is None, "the backup finished before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert sqlite_platform.backup_files("full_backup_*") == []  # nothing under a final name
    assert list(sqlite_platform.backups.glob(".*.partial-*"))  # the killed run's leftovers
    done = sqlite_platform.run("backup-all")
    assert done.returncode == 0, done.stderr
    assert not list(sqlite_platform.backups.glob(".*.partial-*"))  # swept under the lock
    assert len(sqlite_platform.backup_files("full_backup_*.tar.gz")) == 1
