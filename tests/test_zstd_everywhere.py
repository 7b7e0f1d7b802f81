"""BACKUP_COMPRESSION=zstd: every job recognises the `.zst` artifacts (issue 8).

Real PostgreSQL, pg_dump/psql, the `zstd` binary, SQLite files and the real
`chatbot-backup` command in subprocesses; nothing is mocked.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tasks.core.naming import db_backup_name
from tests.conftest import (
    PG_ADMIN,
    Platform,
    fill_postgres,
    make_sqlite_db,
    pg_dump_text,
    pg_url,
)
from tests.test_backup_all import build_platform

pytestmark = pytest.mark.timeout(300)

ZSTD = "/usr/bin/zstd"
# test-restore's checks, in the order it reports them (as in tests/test_test_restore.py).
ALL_CHECKS = [
    "backup-file",
    "archive-integrity",
    "extraction",
    "manifest",
    "database",
    "config-files",
    "uploads",
    "app-data",
]


def outcome(stdout: str) -> dict[str, str]:
    """check name -> "PASS"/"FAIL", from test-restore's printed table."""
    rows = {}
    for line in stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0] in ("PASS", "FAIL"):
            rows[parts[1]] = parts[0]
    return rows


def reason(stdout: str, check: str) -> str:
    for line in stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] == check:
            return parts[2]
    raise AssertionError(f"{check} not reported:\n{stdout}")


def sidecar_ok(artifact: Path) -> None:
    """The sidecar is sha256sum's format and matches: `sha256sum -c` says so."""
    check = subprocess.run(
        ["sha256sum", "-c", f"{artifact.name}.sha256"],
        cwd=artifact.parent,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert artifact.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # a real zstd frame


def flip_middle(path: Path, count: int = 8) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(b ^ 0xFF for b in data[middle : middle + count])
    path.write_bytes(bytes(data))


def finding_line(stdout: str, name: str) -> str:
    for line in stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == name:
            return line
    raise AssertionError(f"no {name} row in:\n{stdout}")


@pytest.fixture
def zstd_platform(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    platform.set(monkeypatch, BACKUP_COMPRESSION="zstd")
    return platform


# -- 1. PostgreSQL: db-backup -> zstd -dc | psql -> db-restore ---------------------------------


def test_postgres_zstd_round_trip_and_restore(
    zstd_platform: Platform,
    pg_database: str,
    scratch_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fill_postgres(pg_database, rows=3000)
    zstd_platform.set(monkeypatch, ADMIN_DB_TYPE="postgres", ADMIN_DATABASE_URL=pg_url(pg_database))
    original = pg_dump_text(pg_database)

    done = zstd_platform.run("db-backup")
    assert done.returncode == 0, done.stderr
    assert zstd_platform.backup_files("*.gz") == []
    [artifact] = zstd_platform.backup_files("admin_postgres_*.sql.zst")
    assert Path(f"{artifact}.sha256").is_file() and Path(f"{artifact}.meta.json").is_file()
    sidecar_ok(artifact)

    # The shell way back, into an empty database.
    load = subprocess.run(
        f"{ZSTD} -dc '{artifact}' | psql -v ON_ERROR_STOP=1 -q -h 127.0.0.1 -U postgres "
        f"-d {scratch_database}",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert load.returncode == 0, load.stderr
    assert pg_dump_text(scratch_database) == original

    # Destroy the source, then restore the .sql.zst through the CLI.
    with psycopg.connect(**{**PG_ADMIN, "dbname": pg_database}, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute("DELETE FROM messages WHERE id % 3 = 0")
        conn.execute("DROP SCHEMA audit CASCADE")
    assert pg_dump_text(pg_database) != original
    restored = zstd_platform.run("db-restore", "--yes", str(artifact))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert pg_dump_text(pg_database) == original
    assert "match admin_postgres_" in restored.stdout and artifact.name in restored.stdout


# -- 2. test-restore on a zstd full backup -----------------------------------------------------


def test_test_restore_passes_a_zstd_archive_and_fails_a_damaged_copy(
    zstd_platform: Platform, tmp_path: Path
) -> None:
    build_platform(zstd_platform.root)
    make_sqlite_db(zstd_platform.db_path)
    done = zstd_platform.run("backup-all")
    assert done.returncode == 0, done.stderr
    [archive] = zstd_platform.backup_files("full_backup_*.tar.zst")
    sidecar_ok(archive)
    assert Path(f"{archive}.meta.json").is_file()

    # No --backup-file: test-restore must pick the newest full backup, a .tar.zst.
    good = zstd_platform.run("test-restore")
    assert good.returncode == 0, good.stdout + good.stderr
    assert f"Test restore of {archive}" in good.stdout
    assert outcome(good.stdout) == dict.fromkeys(ALL_CHECKS, "PASS")
    assert "All 8 checks passed" in good.stdout
    assert "row counts match" in reason(good.stdout, "database")

    # A copy with one flipped byte in the middle, without its sidecar: only reading
    # the zstd stream can find the damage.
    damaged_dir = tmp_path / "damaged"
    damaged_dir.mkdir()
    damaged = damaged_dir / archive.name
    shutil.copy2(archive, damaged)
    flip_middle(damaged, 1)
    bad = zstd_platform.run("test-restore", "--backup-file", str(damaged))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    rows = outcome(bad.stdout)
    assert rows["backup-file"] == "PASS" and rows["archive-integrity"] == "FAIL", bad.stdout
    assert "zstd" in reason(bad.stdout, "archive-integrity")
    assert "test-restore failed" in bad.stderr and "Traceback" not in bad.stderr


# -- 3. rotation over a mix of .db.gz and .db.zst ----------------------------------------------


def make_old_backup(folder: Path, days: float, suffix: str, db: Path) -> Path:
    """A real compressed SQLite backup dated `days` ago (the name carries the date)."""
    name = db_backup_name("sqlite", datetime.now(UTC) - timedelta(days=days))
    path = folder / (name.removesuffix(".gz") + suffix)
    tool = [ZSTD, "-q", "-c"] if suffix == ".zst" else ["gzip", "-c"]
    with open(path, "wb") as out:
        subprocess.run([*tool, str(db)], stdout=out, check=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")
    return path


def test_rotation_removes_old_gz_and_zst_and_keeps_the_newest(zstd_platform: Platform) -> None:
    make_sqlite_db(zstd_platform.db_path, agents=5, messages=20)
    folder = zstd_platform.backups
    folder.mkdir(mode=0o700)
    recent = [
        make_old_backup(folder, 1, ".zst", zstd_platform.db_path),
        make_old_backup(folder, 2, ".gz", zstd_platform.db_path),
    ]
    old = [
        make_old_backup(folder, days, suffix, zstd_platform.db_path)
        for days, suffix in ((10, ".zst"), (11, ".gz"), (20, ".gz"), (30, ".zst"))
    ]
    # Another kind: a lone old full backup is never eaten by a db-backup run.
    other = folder / "full_backup_20200101_000000.tar.zst"
    other.write_bytes(b"\x28\xb5\x2f\xfd" + b"x" * 100)

    done = zstd_platform.run("db-backup", "--retention-days", "7")
    assert done.returncode == 0, done.stdout + done.stderr
    [new] = [
        p for p in zstd_platform.backup_files("admin_sqlite_*.db.zst") if p not in recent + old
    ]
    survivors = {p.name for p in zstd_platform.backup_files()}
    expected = {p.name for p in recent} | {new.name, other.name}
    expected |= {f"{p.name}.sha256" for p in recent} | {f"{new.name}.sha256"}
    expected |= {f"{new.name}.meta.json"}
    assert survivors == expected, sorted(survivors ^ expected)
    for path in old:
        assert not path.exists() and not Path(f"{path}.sha256").exists()


# -- 4. monitor ------------------------------------------------------------------------------


def test_monitor_sees_zstd_backups_and_a_truncated_one(
    zstd_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_platform(zstd_platform.root)
    make_sqlite_db(zstd_platform.db_path)
    for job in ("db-backup", "backup-all", "db-backup"):
        done = zstd_platform.run(job)
        assert done.returncode == 0, done.stderr
    dbs = zstd_platform.backup_files("admin_sqlite_*.db.zst")
    fulls = zstd_platform.backup_files("full_backup_*.tar.zst")
    assert len(dbs) == 2 and len(fulls) == 1 and not zstd_platform.backup_files("*.gz")

    env = {"MONITOR_CHECK_DEPLOYMENTS": "false", "MONITOR_MIN_COUNT": "1"}
    healthy = zstd_platform.run("monitor", extra_env=env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    out = healthy.stdout
    assert "3 backups (2 database-only, 1 full)" in finding_line(out, "backup-dir")
    for name in ("backup-dir", "latest-age", "latest-size", "integrity", "rpo-database"):
        assert finding_line(out, name).split()[1] == "ok", out

    # The newest database backup stops halfway (sidecar left as it was).
    newest = dbs[-1]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    broken = zstd_platform.run("monitor", extra_env=env)
    assert broken.returncode == 2, broken.stdout + broken.stderr
    line = finding_line(broken.stdout, "integrity")
    assert "critical" in line and newest.name in line and "zstd" in line, broken.stdout


# -- 5. off-site: --offsite and offsite-sync --verify on a local path ----------------------------


def test_offsite_copies_and_verifies_zstd_backups(zstd_platform: Platform, tmp_path: Path) -> None:
    make_sqlite_db(zstd_platform.db_path)
    (tmp_path / "nas").mkdir()  # the mounted share exists; the tool makes its folder
    remote = tmp_path / "nas" / "chatbot"
    env = {"OFFSITE_DESTINATION": str(remote)}

    first = zstd_platform.run("db-backup", "--offsite", extra_env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    [local] = zstd_platform.backup_files("admin_sqlite_*.db.zst")
    names = sorted(p.name for p in remote.iterdir())
    assert names == sorted([local.name, f"{local.name}.meta.json", f"{local.name}.sha256"])
    assert (remote / local.name).read_bytes() == local.read_bytes()
    sidecar_ok(remote / local.name)

    # A second backup made without --offsite: offsite-sync must bring the .zst over.
    second = zstd_platform.run("db-backup")
    assert second.returncode == 0, second.stderr
    [newer] = [p for p in zstd_platform.backup_files("admin_sqlite_*.db.zst") if p != local]
    sync = zstd_platform.run("offsite-sync", extra_env=env)
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert "uploaded:      1" in sync.stdout and "already there: 1" in sync.stdout, sync.stdout
    assert (remote / newer.name).read_bytes() == newer.read_bytes()
    sidecar_ok(remote / newer.name)

    clean = zstd_platform.run("offsite-sync", "--verify", extra_env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "verified:      2 of 2" in clean.stdout, clean.stdout

    flip_middle(remote / local.name)  # same size: only a content check sees it
    caught = zstd_platform.run("offsite-verify", extra_env=env)
    assert caught.returncode == 6, caught.stdout + caught.stderr
    assert local.name in caught.stderr and "does not match its sidecar" in caught.stderr
    assert newer.name not in caught.stderr
    # The sync reads the copies already there back: the damaged one is uploaded again.
    mended = zstd_platform.run("offsite-sync", "--verify", extra_env=env)
    assert mended.returncode == 0, mended.stdout + mended.stderr
    assert "repaired:      1" in mended.stdout and "verified:      2 of 2" in mended.stdout
    assert (remote / local.name).read_bytes() == local.read_bytes()
