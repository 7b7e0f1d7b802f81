"""Issue 15 (trust), settings / paths / rotation / locks: each defect through the real CLI.

2. backup-side folders overlapping backed-up ones are refused when settings load (exit 3);
3. SQLite paths with URI characters (`?`, `#`, `%41`) reach SQLite escaped;
4. rotation, the monitor and choosing go by one "good backup" test;
12. retention knobs too large to be a date are refused before anything is written;
13. a full BACKUP_DIR is the destination's fault (exit 8), a full disk in restore-all exit 7
    naming the folder, pre-restore snapshots are rotated, a restore blocked by the lock
    names who holds it.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.catalog.records import list_backups
from tasks.core.errors import ConfigError
from tasks.core.lock import backup_dir_lock
from tasks.core.naming import db_backup_name, timestamp
from tasks.core.settings import load_settings
from tasks.stream.checksum import sha256_file, write_sidecar
from tests.conftest import Platform, make_sqlite_db, sqlite_dump
from tests.support.disks import small_tmpfs
from tests.test_db_restore import tree_state
from tests.test_monitor import finding_line, make_backup, run_monitor
from tests.test_restore_all import populate


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    line = done.stderr.strip()
    assert line and "\n" not in line and "Traceback" not in line, done.stderr
    return line


def run_all(
    platform: Platform, commands: list[list[str]], extra_env: dict[str, str] | None = None
) -> list[subprocess.CompletedProcess[str]]:
    """Several CLI runs at once (each is mostly Prefect's start-up); results in order."""
    with ThreadPoolExecutor(3) as pool:
        return list(pool.map(lambda args: platform.run(*args, extra_env=extra_env), commands))


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# -- 2. folder rules -----------------------------------------------------------------------


@pytest.fixture
def installed(sqlite_platform: Platform) -> Platform:
    """uploads, data, config files, a database, and one db and one full backup of it."""
    populate(sqlite_platform.root)
    for job in ("db-backup", "backup-all"):
        done = sqlite_platform.run(job)
        assert done.returncode == 0, done.stderr
    return sqlite_platform


@pytest.mark.slow
@pytest.mark.parametrize(
    ("layout", "variable", "other"),
    [
        ("data/uploads/backups", "BACKUP_DIR", "UPLOADS_DIR"),  # BACKUP_DIR inside UPLOADS_DIR
        ("data", "BACKUP_DIR", "APP_DATA_DIR"),  # BACKUP_DIR equal to APP_DATA_DIR
    ],
)
def test_backup_dir_overlapping_backed_up_folders_is_refused_by_every_job(
    installed: Platform, monkeypatch: pytest.MonkeyPatch, layout: str, variable: str, other: str
) -> None:
    """Before: backup-all archived the earlier backups, restore-all then swapped them away."""
    platform = installed
    bad = platform.root / layout
    bad.mkdir(parents=True, exist_ok=True)
    for path in platform.backup_files():  # the operator's backups live in that folder
        shutil.copy2(path, bad / path.name)
    db_file = next(bad.glob("admin_sqlite_*.db.gz"))
    full_file = next(bad.glob("full_backup_*.tar.gz"))
    platform.set(monkeypatch, BACKUP_DIR=str(bad))
    before = tree_state(platform.root)

    commands = [
        ["backup-all"],
        ["db-backup"],
        ["restore-all", "--yes", str(full_file)],
        ["db-restore", "--yes", str(db_file)],
        ["test-restore", "--backup-file", str(full_file)],
        ["monitor"],
    ]
    for args, done in zip(commands, run_all(platform, commands), strict=True):
        assert done.returncode == 3, (args, done.stdout, done.stderr)
        line = one_line(done)
        assert variable in line and other in line, (args, line)
        assert str(bad) in line and str(platform.root / "data") in line, (args, line)
    assert tree_state(platform.root) == before  # nothing written, nothing removed


def _env_for(root: Path, **values: str) -> dict[str, str]:
    return {"APP_ROOT": str(root), "BACKUP_DIR": str(root.parent / "backups"), **values}


def _layout_problem(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> str | None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        load_settings()
    except ConfigError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize(
    ("case", "refused_with"),
    [
        ("default layout", None),
        ("backups beside data, same name prefix", None),
        ("backup dir inside uploads", "lies inside UPLOADS_DIR"),
        ("backup dir is the data dir", "is the same path as APP_DATA_DIR"),
        ("backup dir above uploads", "contains UPLOADS_DIR"),
        ("backup dir reached through a link", "lies inside UPLOADS_DIR"),
        ("backup dir through ..", "lies inside APP_DATA_DIR"),
        ("wal archive inside data", "WAL_ARCHIVE_DIR"),
        ("metrics file inside uploads", "METRICS_FILE"),
        ("metrics file in the app root", None),
        ("reports folder is a link into uploads", "reports/ folder"),
        ("config file inside the backup dir", "contains CONFIG_FILES"),
        ("config folder holding the backup dir", "lies inside CONFIG_FILES"),
        ("backup dir under a regular config file", None),  # not a folder: exit 8 later
        ("database inside the backup dir", "contains ADMIN_DB_PATH"),
        ("postgres: no database file to protect", None),
    ],
)
def test_folder_rules_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, refused_with: str | None
) -> None:
    root = tmp_path / "app"
    (root / "data" / "uploads").mkdir(parents=True)
    (root / "config.php").write_text("<?php\n")
    os.symlink(root / "data" / "uploads" / "inner", tmp_path / "link-to-uploads")
    env = {
        "default layout": _env_for(root),
        "backups beside data, same name prefix": _env_for(
            root, BACKUP_DIR=str(root / "data-backups")
        ),
        "backup dir inside uploads": _env_for(root, BACKUP_DIR="data/uploads/b"),
        "backup dir is the data dir": _env_for(root, BACKUP_DIR=str(root / "data")),
        "backup dir above uploads": _env_for(
            root, BACKUP_DIR=str(root / "data"), APP_DATA_DIR="./other"
        ),
        "backup dir reached through a link": _env_for(
            root, BACKUP_DIR=str(tmp_path / "link-to-uploads")
        ),
        "backup dir through ..": _env_for(root, BACKUP_DIR=str(root / "x" / ".." / "data" / "b")),
        "wal archive inside data": _env_for(root, WAL_ARCHIVE_DIR="data/wal"),
        "metrics file inside uploads": _env_for(root, METRICS_FILE="data/uploads/x.prom"),
        "metrics file in the app root": _env_for(root, METRICS_FILE="chatbot.prom"),
        "reports folder is a link into uploads": _env_for(root),
        "config file inside the backup dir": _env_for(
            root,
            BACKUP_DIR=str(root),
            APP_DATA_DIR="/nonexistent-data",
            UPLOADS_DIR="/nonexistent-up",
        ),
        "config folder holding the backup dir": _env_for(
            root, CONFIG_FILES="etc", BACKUP_DIR="etc/backups"
        ),
        "backup dir under a regular config file": _env_for(root, BACKUP_DIR="config.php/backups"),
        "database inside the backup dir": _env_for(
            root,
            BACKUP_DIR="data/db",
            APP_DATA_DIR="./d2",
            UPLOADS_DIR="./u2",
            ADMIN_DB_PATH="data/db/admin.db",
        ),
        "postgres: no database file to protect": _env_for(
            root,
            BACKUP_DIR="data/db",
            APP_DATA_DIR="./d2",
            UPLOADS_DIR="./u2",
            ADMIN_DB_PATH="data/db/admin.db",
            ADMIN_DB_TYPE="postgres",
            ADMIN_DATABASE_URL="postgresql://u@127.0.0.1:5432/admin",
        ),
    }[case]
    if case == "config folder holding the backup dir":
        (root / "etc").mkdir()
    if case == "reports folder is a link into uploads":
        backups = root.parent / "backups"
        backups.mkdir()
        os.symlink(root / "data" / "uploads", backups / "reports")
    problem = _layout_problem(monkeypatch, env)
    if refused_with is None:
        assert problem is None, problem
    else:
        assert problem is not None and refused_with in problem, problem
        assert "set " in problem  # says what to change


# -- 3. SQLite paths with URI characters -----------------------------------------------------


def _files_under(*roots: Path) -> set[Path]:
    return {
        Path(dirpath) / name
        for root in roots
        for dirpath, dirnames, filenames in os.walk(root)
        for name in filenames + dirnames
    }


@pytest.mark.slow
@pytest.mark.parametrize("db_name", ["we?ird #1 ü%41 sp ace.db", "x%41y.db"])
def test_sqlite_path_with_uri_characters_backs_up_and_restores(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, db_name: str
) -> None:
    """Before: `file:{path}?mode=ro` opened another (new, empty) file: an empty backup, exit 0."""
    folder = platform.root / "data" / "odd #dir?"
    db = make_sqlite_db(folder / db_name, agents=7, messages=70)
    decoy = make_sqlite_db(folder / db_name.replace("%41", "A"), agents=1, messages=1)
    decoy_state = decoy.read_bytes()
    platform.set(monkeypatch, ADMIN_DB_PATH=str(db))
    expected = sqlite_dump(db)
    before = _files_under(platform.root)

    done = platform.run("db-backup")
    assert done.returncode == 0, done.stderr
    [artifact] = platform.backup_files("admin_sqlite_*.db.gz")
    restored = platform.root.parent / "check.db"
    restored.write_bytes(gzip.decompress(artifact.read_bytes()))
    assert sqlite_dump(restored) == expected  # the right file, not an empty or a decoy one
    restored.unlink()
    checked = platform.run("test-restore", "--backup-file", str(artifact))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    change = sqlite3.connect(db)
    change.execute("DELETE FROM messages")
    change.commit()
    change.close()
    done = platform.run("db-restore", "--yes", str(artifact))
    assert done.returncode == 0, done.stderr
    assert sqlite_dump(db) == expected

    full = platform.run("backup-all")
    assert full.returncode == 0, full.stderr
    checked = platform.run("test-restore")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (folder / db_name).unlink()
    done = platform.run("restore-all", "--yes", str(platform.backup_files("full_backup_*")[0]))
    assert done.returncode == 0, done.stderr
    assert sqlite_dump(db) == expected
    assert decoy.read_bytes() == decoy_state

    # No stray file anywhere: only the pre-restore snapshots are new beside the database.
    new = _files_under(platform.root) - before
    assert all(
        p.parent == folder and p.name.startswith(f"{db_name}.before_restore.") for p in new
    ), new


# -- 13. a full disk is named for what it is -------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "small", 6) as mount:
        yield mount


def _random_database(path: Path, megabytes: int) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB)")
    db.executemany(
        "INSERT INTO blobs(data) VALUES (?)", [(os.urandom(1 << 20),) for _ in range(megabytes)]
    )
    db.commit()
    db.close()


@pytest.mark.slow
def test_full_backup_dir_is_the_destinations_fault(
    platform: Platform, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: "SQLite backup of admin.db failed: database or disk is full", exit 4."""
    backups = small_disk / "backups"
    platform.set(monkeypatch, BACKUP_DIR=str(backups))
    platform.backups = backups
    platform.db_path.parent.mkdir(parents=True, exist_ok=True)
    _random_database(platform.db_path, 8)  # more than the 6 MB the folder can take
    for job in ("db-backup", "backup-all"):  # one after the other: they share the lock
        done = platform.run(job)
        assert done.returncode == 8, (job, done.stderr)
        line = one_line(done)
        assert "no space left" in line and str(backups) in line, line
        left = {p.name for p in backups.iterdir()} - {".chatbot-backup.lock", "metrics"}
        assert left == set(), left  # nothing kept, nothing partial


@pytest.mark.slow
def test_full_disk_during_restore_all_names_the_folder_and_changes_nothing(
    platform: Platform, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: "OSError: [Errno 28] No space left on device", exit 1, no path."""
    root = small_disk / "app"
    (root / "data" / "uploads").mkdir(parents=True)
    (root / "data" / "uploads" / "big.bin").write_bytes(os.urandom(2_500_000))
    (root / ".env").write_text("APP_NAME=chatbot\n")
    make_sqlite_db(root / "data" / "admin.db")
    platform.set(monkeypatch, APP_ROOT=str(root))
    platform.root = root
    done = platform.run("backup-all")
    assert done.returncode == 0, done.stderr
    [archive] = platform.backup_files("full_backup_*.tar.gz")
    (root / "data" / "uploads" / "big.bin").write_bytes(os.urandom(2_400_000))
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - 1_000_000))  # 1 MB left, 2.5 MB needed
    before = tree_state(root)

    done = platform.run("restore-all", "--yes", str(archive))
    assert done.returncode == 7, done.stderr
    line = one_line(done)
    assert "no space left" in line and str(root) in line and "nothing was changed" in line, line
    (small_disk / "filler").unlink()
    assert tree_state(root) == before


# -- 4. one "good backup" test ---------------------------------------------------------------


def good_db_backup(folder: Path, moment: datetime, source: Path, meta: bool = True) -> Path:
    """A real database-only backup (a SQLite snapshot, gzip, sidecar, meta) dated `moment`."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / db_backup_name("sqlite", moment)
    path.write_bytes(gzip.compress(source.read_bytes()))
    write_sidecar(path, sha256_file(path))
    if meta:
        path.with_name(path.name + ".meta.json").write_text(
            json.dumps(
                {
                    "kind": "db",
                    "tier": "every-6h",
                    "size": path.stat().st_size,
                    "sha256": sha256_file(path),
                }
            )
        )
    return path


def empty_dump(folder: Path, moment: datetime, db_type: str = "postgres") -> Path:
    """What `pg_dump | gzip > admin_postgres_....sql.gz` leaves when pg_dump fails."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / db_backup_name(db_type, moment)
    path.write_bytes(gzip.compress(b""))
    return path


@pytest.mark.slow
def test_rotation_keeps_good_backups_and_never_counts_empty_dumps(
    sqlite_platform: Platform,
) -> None:
    """Before: the three empty gzips were "the newest 3" and the good backups were deleted."""
    platform = sqlite_platform
    now = now_utc()
    old = [
        good_db_backup(
            platform.backups, now - timedelta(days=10, hours=h), platform.db_path, meta=h != 2
        )
        for h in (0, 1, 2)
    ]
    junk = [empty_dump(platform.backups, now - timedelta(hours=h)) for h in (1, 2)]
    junk.append(empty_dump(platform.backups, now - timedelta(hours=3), "sqlite"))

    done = platform.run("db-backup", "--retention-days", "2")
    assert done.returncode == 0, done.stderr
    [new] = [p for p in platform.backup_files("admin_sqlite_*.db.gz") if p not in old + junk]
    # The newest 3 good backups: the new one and the two newest old ones; the third old
    # one is beyond the minimum and older than 2 days, so it goes, with its sidecar.
    assert new.exists() and old[0].exists() and old[1].exists()
    assert not old[2].exists() and not Path(f"{old[2]}.sha256").exists()
    assert all(p.exists() for p in junk)  # within the retention: left, but never counted
    verdicts = {r.path: r.good for r in list_backups(platform.backups)}
    assert verdicts == {new: True, old[0]: True, old[1]: True, **dict.fromkeys(junk, False)}


def test_monitor_counts_only_good_backups_and_names_the_others(platform: Platform) -> None:
    for age in (1, 7, 13, 19):
        make_backup(platform.backups, "db", age)
    for age in (2, 26, 50):
        make_backup(platform.backups, "full", age)
    newest = empty_dump(platform.backups, now_utc() - timedelta(minutes=20))
    empty_dump(platform.backups, now_utc() - timedelta(minutes=40), "sqlite")

    code, out, err = run_monitor(platform)
    assert code == 2, out + err
    count = finding_line(out, "backup-count")
    assert "ok" in count and "4 database-only" in count, count  # was 6: the junk counted
    folder = finding_line(out, "backup-dir")
    assert "warning" in folder and newest.name in folder and "not good" in folder, folder
    integrity = finding_line(out, "integrity")
    assert "critical" in integrity and newest.name in integrity and "empty" in integrity
    assert "ok" in finding_line(out, "latest-age")  # the newest good backup is 1 h old


def test_junk_is_never_chosen_as_the_newest_good_backup(tmp_path: Path) -> None:
    from tasks.catalog.records import newest_good

    source = make_sqlite_db(tmp_path / "src.db", agents=1, messages=1)
    now = now_utc()
    good = good_db_backup(tmp_path / "b", now - timedelta(days=3), source)
    empty_dump(tmp_path / "b", now - timedelta(hours=1))
    cut = good_db_backup(tmp_path / "b", now - timedelta(hours=2), source)
    cut.write_bytes(cut.read_bytes()[:-10])  # its meta records the whole size
    chosen = newest_good(list_backups(tmp_path / "b"), "db")
    assert chosen is not None and chosen.path == good


# -- the good-backup test itself (pure, on real files) ---------------------------------------


def _tar_of(top: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(f"{top}/MANIFEST.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"ok\n"))
    return buffer.getvalue()


STAMP = "20260102_030405"
SQL = b"--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\nSET statement_timeout = 0;\n"


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize(
    ("name", "content", "sidecar", "meta", "verdict"),
    [
        (
            f"admin_sqlite_{STAMP}.db.gz",
            gzip.compress(b"SQLite format 3\0" + b"x" * 100),
            True,
            True,
            None,
        ),
        (f"admin_postgres_{STAMP}.sql.gz", gzip.compress(SQL), True, True, None),
        (f"admin_postgres_{STAMP}.sql.zst", _zstd(SQL), True, False, None),
        (
            f"full_backup_{STAMP}.tar.gz",
            gzip.compress(_tar_of(f"full_backup_{STAMP}")),
            False,
            False,
            None,
        ),
        (
            f"full_backup_{STAMP}.tar.gz",
            gzip.compress(b"") + gzip.compress(_tar_of(f"full_backup_{STAMP}")),
            False,
            False,
            None,
        ),
        (f"admin_postgres_{STAMP}.sql.gz", b"", False, False, "empty file"),
        (
            f"admin_postgres_{STAMP}.sql.gz",
            gzip.compress(b""),
            False,
            False,
            "the SQL dump is empty",
        ),
        (
            f"admin_postgres_{STAMP}.sql.gz",
            gzip.compress(b"\n  \n"),
            False,
            False,
            "the SQL dump is empty",
        ),
        (
            f"admin_postgres_{STAMP}.sql.gz",
            gzip.compress(b"PGDMP\x01\x0e\x00binary"),
            False,
            False,
            "plain-SQL",
        ),
        (f"admin_sqlite_{STAMP}.db.gz", gzip.compress(SQL), False, False, "SQLite"),
        (
            f"admin_sqlite_{STAMP}.db.gz",
            b"SQLite format 3\0 raw, not gzip",
            False,
            False,
            "not a gzip file",
        ),
        (
            f"admin_sqlite_{STAMP}.db.zst",
            gzip.compress(b"SQLite format 3\0"),
            False,
            False,
            "not a zstd file",
        ),
        (
            f"admin_sqlite_{STAMP}.db.gz",
            b"\x1f\x8b\x08\x00garbage-garbage-garbage",
            False,
            False,
            "damaged",
        ),
        (  # a copy renamed by hand: the top folder of the run that made it
            f"full_backup_{STAMP}.tar.gz",
            gzip.compress(_tar_of("full_backup_20200101_000000")),
            False,
            False,
            None,
        ),
        (
            f"full_backup_{STAMP}.tar.gz",
            gzip.compress(_tar_of("etc")),
            False,
            False,
            "not under",
        ),
        (
            f"full_backup_{STAMP}.tar.gz",
            gzip.compress(b"just text, no tar"),
            False,
            False,
            "tar header",
        ),
        (f"full_backup_{STAMP}.tar.gz", gzip.compress(b""), False, False, "archive is empty"),
    ],
    ids=[  # the content has a gzip time stamp in it: ids must not (xdist compares them)
        "sqlite",
        "sql",
        "sql zstd",
        "tar, guide-made",
        "tar after an empty gzip member",
        "empty file",
        "empty gzip",
        "blank sql",
        "custom-format dump",
        "sql named .db",
        "raw sqlite named .gz",
        "gzip named .zst",
        "damaged gzip",
        "renamed tar copy",
        "tar of something else",
        "text named .tar",
        "empty archive",
    ],
)
def test_good_backup_table(
    tmp_path: Path, name: str, content: bytes, sidecar: bool, meta: bool, verdict: str | None
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    if sidecar:
        write_sidecar(path, sha256_file(path))
    if meta:
        record = {"kind": "db" if name.startswith("admin") else "full", "size": len(content)}
        path.with_name(name + ".meta.json").write_text(
            json.dumps({**record, "sha256": sha256_file(path)})
        )
    [listed] = list_backups(tmp_path)
    if verdict is None:
        assert listed.good, listed.why
    else:
        assert not listed.good and verdict in listed.why, listed.why


def test_sidecar_and_meta_must_agree_with_the_file(tmp_path: Path) -> None:
    source = make_sqlite_db(tmp_path / "src.db", agents=1, messages=1)
    folder = tmp_path / "b"
    now = now_utc()

    def judged(path: Path) -> str:
        [record] = [r for r in list_backups(folder) if r.path == path]
        return "good" if record.good else record.why

    cut = good_db_backup(folder, now - timedelta(hours=1), source)
    cut.write_bytes(cut.read_bytes()[:-10])  # cut short after its meta was written
    assert "its meta recorded" in judged(cut)

    other = good_db_backup(folder, now - timedelta(hours=2), source)
    Path(f"{other}.sha256").write_text(f"{'ab' * 32}  {other.name}\n")  # another digest
    assert "different sha256" in judged(other)

    renamed = good_db_backup(folder, now - timedelta(hours=3), source, meta=False)
    Path(f"{renamed}.sha256").write_text(f"{sha256_file(renamed)}  admin_sqlite_x.db.gz\n")
    assert "not a sha256sum line for" in judged(renamed)

    hand_made = good_db_backup(folder, now - timedelta(hours=4), source, meta=False)
    Path(f"{hand_made}.sha256").unlink()  # the guide's scripts write neither sidecar nor meta
    assert judged(hand_made) == "good"


# -- 13. pre-restore snapshots are rotated like backups of their kind ------------------------


def _sql_gz(path: Path) -> Path:
    path.write_bytes(gzip.compress(b"-- PostgreSQL database dump\nCREATE TABLE t (i int);\n"))
    write_sidecar(path, sha256_file(path))
    return path


def _full_snapshot(path: Path) -> Path:
    buffer = io.BytesIO()
    top = path.name.split(".", 1)[0]
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(f"{top}/MANIFEST.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"ok\n"))
    path.write_bytes(gzip.compress(buffer.getvalue()))
    write_sidecar(path, sha256_file(path))
    return path


@pytest.mark.slow
def test_pre_restore_snapshots_are_rotated_like_backups_of_their_kind(
    sqlite_platform: Platform,
) -> None:
    """Before: `*.before_restore.*` / `*_before_restore_*` snapshots piled up for ever."""
    platform = sqlite_platform
    platform.backups.mkdir(mode=0o700)
    now = now_utc()
    days = (20, 21, 22, 23, 24)
    moments = [now - timedelta(days=d) for d in days]
    sqlite_snaps = []
    for moment in moments:
        snap = platform.db_path.with_name(f"admin.db.before_restore.{timestamp(moment)}")
        shutil.copy2(platform.db_path, snap)
        sqlite_snaps.append(snap)
    broken = platform.db_path.with_name(
        f"admin.db.before_restore.{timestamp(now - timedelta(days=19))}"
    )
    broken.write_bytes(b"")  # junk: never one of the kept 3, old: removed
    pg_snaps = [
        _sql_gz(platform.backups / f"admin_postgres_before_restore_{timestamp(m)}.sql.gz")
        for m in moments
    ]
    full_snaps = [
        _full_snapshot(platform.backups / f"full_before_restore_{timestamp(m)}.tar.gz")
        for m in moments
    ]
    recent = platform.db_path.with_name(
        f"admin.db.before_restore.{timestamp(now - timedelta(hours=1))}"
    )
    shutil.copy2(platform.db_path, recent)  # within the retention: kept whatever else

    done = platform.run("db-backup", "--retention-days", "7")
    assert done.returncode == 0, done.stderr
    assert "pre-restore snapshots removed" in done.stdout
    # SQLite family: recent + the two newest old ones are the newest 3 good; the rest go.
    assert recent.exists() and sqlite_snaps[0].exists() and sqlite_snaps[1].exists()
    assert not any(p.exists() for p in [*sqlite_snaps[2:], broken])
    assert [p.exists() for p in pg_snaps] == [True, True, True, False, False]
    assert not Path(f"{pg_snaps[4]}.sha256").exists()
    assert all(p.exists() for p in full_snaps)  # not db-backup's kind

    done = platform.run("backup-all", "--retention-days", "7")
    assert done.returncode == 0, done.stderr
    assert [p.exists() for p in full_snaps] == [True, True, True, False, False]
    # The monitor never counts them as backups.
    code, out, _ = run_monitor(platform)
    assert "2 backups (1 database-only, 1 full)" in finding_line(out, "backup-dir"), out


# -- 12. retention that is no date -------------------------------------------------------------


@pytest.mark.slow
def test_retention_too_large_is_refused_before_anything_is_written(
    sqlite_platform: Platform,
) -> None:
    """Before: OverflowError after the backup file had been written (exit 1)."""
    platform = sqlite_platform
    runs = [
        (["db-backup", "--retention-days", "99999999"], {}, 2, r"--retention-days"),
        (["backup-all", "--retention-days", "99999999"], {}, 2, r"--retention-days"),
        (["db-backup"], {"RETENTION_DAYS": "99999999"}, 3, "RETENTION_DAYS"),
        (["backup-all"], {"OFFSITE_RETENTION_DAYS": "99999999"}, 3, "OFFSITE_RETENTION_DAYS"),
        (["monitor"], {"MONITOR_MAX_AGE_HOURS": "1e20"}, 3, "MONITOR_MAX_AGE_HOURS"),
    ]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda r: platform.run(*r[0], extra_env=r[1]), runs))
    for (args, env, code, named), done in zip(runs, results, strict=True):
        assert done.returncode == code, (args, env, done.stderr)
        line = one_line(done)
        assert named in line and "OverflowError" not in line, line
    assert platform.backup_files() == []


# -- 13. a restore blocked by the lock says who holds it ---------------------------------------


@pytest.mark.slow
def test_restore_blocked_by_the_lock_says_who_holds_it(sqlite_platform: Platform) -> None:
    """Before: "(backup-all, pid N)" only — no host, no since."""
    platform = sqlite_platform
    done = platform.run("db-backup")
    assert done.returncode == 0, done.stderr
    [artifact] = platform.backup_files("admin_sqlite_*.db.gz")
    before = platform.db_path.read_bytes()
    with backup_dir_lock(platform.backups, "backup-all", timeout=0):
        done = platform.run(
            "db-restore", "--yes", str(artifact), extra_env={"BACKUP_LOCK_TIMEOUT": "1"}
        )
    assert done.returncode == 5, done.stderr
    line = one_line(done)
    for part in (
        "backup-all",
        f"pid {os.getpid()}",
        f"host {socket.gethostname()}",
        "since",
        "UTC",
    ):
        assert part in line, line
    assert "changed nothing" in line
    assert platform.db_path.read_bytes() == before


def test_serve_refuses_overlapping_folders_before_it_serves(tmp_path: Path) -> None:
    """Every tier's run would refuse the layout: `serve` says so when it starts."""
    from tests.conftest import BIN

    (tmp_path / "data" / "uploads").mkdir(parents=True)
    env = {
        **os.environ,
        "APP_ROOT": str(tmp_path),
        "BACKUP_DIR": str(tmp_path / "data" / "uploads" / "backups"),
        "PREFECT_API_URL": "http://127.0.0.1:9/api",  # never reached
    }
    done = subprocess.run(
        [str(BIN / "chatbot-backup"), "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert "BACKUP_DIR" in one_line(done) and "lies inside UPLOADS_DIR" in done.stderr
