"""db-restore: round trips on real SQLite files and a real PostgreSQL, and every way a
restore must refuse — each leaving the live data byte for byte as it was."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import (
    PG_ADMIN,
    Platform,
    drop_database,
    fill_postgres,
    pg_dump_text,
    pg_url,
    sqlite_dump,
)

PASSWORD = "r3st0re:p@ss/w%rd'\"X"
WARNING = "⚠️  WARNING: This will OVERWRITE the current database!"
LOCK = ".chatbot-backup.lock"
# Written by every run, by design: the lock's holder and the monitor's metrics file.
NOT_DATA = {LOCK, "chatbot_backup.prom"}


# -- helpers shared with the other restore tests --------------------------------------


def tree_state(*roots: Path) -> dict[str, str]:
    """Every file and link under `roots`: path -> sha256 (or link target), mode included."""
    state: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            if Path(dirpath) == root and "metrics" in dirnames:
                dirnames.remove("metrics")  # BACKUP_DIR/metrics: the monitor's output
            for name in sorted(filenames + dirnames):
                path = Path(dirpath) / name
                if name in NOT_DATA:
                    continue
                info = os.lstat(path)
                key = str(path)
                if stat.S_ISLNK(info.st_mode):
                    state[key] = "link:" + os.readlink(path)
                elif stat.S_ISREG(info.st_mode):
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                    state[key] = f"{oct(stat.S_IMODE(info.st_mode))}:{digest}"
                else:
                    state[key] = "dir"
    return state


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def gzip_file(source: Path, target: Path) -> Path:
    with open(source, "rb") as src, gzip.open(target, "wb") as dst:
        dst.write(src.read())
    return target


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def make_backup(platform: Platform) -> Path:
    done = platform.run("db-backup")
    assert done.returncode == 0, done.stderr
    [artifact] = [p for p in platform.backup_files("admin_*.gz") if "before_restore" not in p.name]
    return artifact


def change_sqlite(db_path: Path) -> None:
    db = sqlite3.connect(db_path)
    db.execute("DELETE FROM messages WHERE id % 3 = 0")
    db.execute("UPDATE agents SET name = 'changed' WHERE id < 10")
    db.execute("CREATE TABLE later (x)")
    db.execute("INSERT INTO later VALUES (1)")
    db.commit()
    db.close()


def snapshot_path(stdout: str) -> Path:
    [line] = [line for line in stdout.splitlines() if "pre-restore snapshot:" in line]
    return Path(line.split("pre-restore snapshot:", 1)[1].strip())


# -- SQLite ---------------------------------------------------------------------------


def test_sqlite_round_trip_through_the_cli(sqlite_platform: Platform, tmp_path: Path) -> None:
    db_path = sqlite_platform.db_path
    artifact = make_backup(sqlite_platform)
    backed_up = sqlite_dump(db_path)
    change_sqlite(db_path)
    changed = sqlite_dump(db_path)
    assert changed != backed_up

    done = sqlite_platform.run("db-restore", str(artifact), input="yes\n")
    assert done.returncode == 0, done.stderr
    assert WARNING in done.stdout and "Are you sure you want to continue? (yes/no):" in done.stdout
    assert sqlite_dump(db_path) == backed_up
    assert "Restore completed" in done.stdout and "match admin_sqlite_" in done.stdout
    # The pre-restore snapshot holds the changed state and restores it.
    snapshot = snapshot_path(done.stdout)
    assert snapshot.parent == db_path.parent
    assert snapshot.name.startswith("admin.db.before_restore.") and len(snapshot.name) == len(
        "admin.db.before_restore.YYYYMMDD_HHMMSS"
    )
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    assert sqlite_dump(snapshot) == changed
    back = gzip_file(snapshot, tmp_path / "snapshot.db.gz")
    again = sqlite_platform.run("db-restore", "--yes", str(back))
    assert again.returncode == 0, again.stderr
    assert sqlite_dump(db_path) == changed
    assert not any(p.name.startswith(".") for p in db_path.parent.iterdir())  # no staging left


@pytest.mark.parametrize("answer", ["no\n", "", "y\n", "yess\n", "\n"])
def test_anything_but_yes_aborts(sqlite_platform: Platform, answer: str) -> None:
    artifact = make_backup(sqlite_platform)
    change_sqlite(sqlite_platform.db_path)
    before = tree_state(sqlite_platform.root, sqlite_platform.backups)
    done = sqlite_platform.run("db-restore", str(artifact), input=answer)
    assert done.returncode == 1
    line = one_error_line(done)
    assert "aborted" in line and "nothing was changed" in line
    assert WARNING in done.stdout
    assert tree_state(sqlite_platform.root, sqlite_platform.backups) == before


@pytest.mark.parametrize("answer", ["YES\n", "  Yes  \n", "yes"])
def test_yes_in_any_case_proceeds(sqlite_platform: Platform, answer: str) -> None:
    artifact = make_backup(sqlite_platform)
    backed_up = sqlite_dump(sqlite_platform.db_path)
    change_sqlite(sqlite_platform.db_path)
    done = sqlite_platform.run("db-restore", str(artifact), input=answer)
    assert done.returncode == 0, done.stderr
    assert sqlite_dump(sqlite_platform.db_path) == backed_up


def _missing(artifact: Path) -> Path:
    return artifact.with_name("admin_sqlite_20200101_000000.db.gz")


def _not_a_backup(artifact: Path) -> Path:
    path = artifact.with_name("notes.txt")
    path.write_text("just some notes\n")
    return path


def _gzip_of_text(artifact: Path) -> Path:
    path = artifact.with_name("admin_sqlite_20200101_000000.db.gz")
    path.write_bytes(gzip.compress(b"hello, this is not a database\n" * 100))
    return path


def _truncated(artifact: Path) -> Path:
    artifact.write_bytes(artifact.read_bytes()[: artifact.stat().st_size // 2])
    artifact.with_name(artifact.name + ".sha256").unlink()  # so the stream itself must tell
    return artifact


def _flipped_no_sidecar(artifact: Path) -> Path:
    flip_byte(artifact)
    artifact.with_name(artifact.name + ".sha256").unlink()
    return artifact


def _flipped(artifact: Path) -> Path:
    flip_byte(artifact)
    return artifact


def _sha_mismatch(artifact: Path) -> Path:
    sidecar = artifact.with_name(artifact.name + ".sha256")
    sidecar.write_text(f"{'0' * 64}  {artifact.name}\n")
    return artifact


def _corrupt_database_inside(artifact: Path) -> Path:
    raw = bytearray(gzip.decompress(artifact.read_bytes()))
    raw[4096 : 3 * 4096] = os.urandom(2 * 4096)  # wreck two b-tree pages, keep the file header
    path = artifact.with_name("hand_made.db.gz")
    path.write_bytes(gzip.compress(bytes(raw)))
    return path


def _a_directory(artifact: Path) -> Path:
    path = artifact.with_name("folder.db.gz")
    path.mkdir()
    return path


BAD_INPUTS = {
    "missing file": (_missing, "no such backup file"),
    "not a backup": (_not_a_backup, "not a gzip or zstd file"),
    "gzip of text": (_gzip_of_text, "SQLite"),
    "truncated gzip": (_truncated, "truncated"),
    "flipped byte, no sidecar": (_flipped_no_sidecar, "damaged or truncated"),
    "flipped byte": (_flipped, "damaged|sha256 does not match"),
    "sha256 mismatch": (_sha_mismatch, "sha256 does not match"),
    "corrupt database inside": (_corrupt_database_inside, "integrity_check"),
    "a directory": (_a_directory, "directory"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_backup_changes_nothing(sqlite_platform: Platform, case: str) -> None:
    make_fault, expected = BAD_INPUTS[case]
    artifact = make_backup(sqlite_platform)
    change_sqlite(sqlite_platform.db_path)
    target = make_fault(artifact)
    before = tree_state(sqlite_platform.root, sqlite_platform.backups)
    done = sqlite_platform.run("db-restore", "--yes", str(target))
    line = one_error_line(done)
    assert line.startswith("chatbot-backup: error: ") and re.search(expected, line), line
    assert tree_state(sqlite_platform.root, sqlite_platform.backups) == before


def _crash_writer(db_path: str) -> None:
    """Commit rows into the WAL, then die without checkpointing (like a killed app)."""
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.executemany("INSERT INTO agents(name) VALUES (?)", [(f"wal-{i}",) for i in range(200)])
    db.commit()
    os.kill(os.getpid(), signal.SIGKILL)


def test_wal_mode_live_database_with_an_unfolded_wal(
    sqlite_platform: Platform, tmp_path: Path
) -> None:
    """The old WAL must end up in the snapshot and never be replayed into the restored file."""
    db_path = sqlite_platform.db_path
    artifact = make_backup(sqlite_platform)
    backed_up = sqlite_dump(db_path)
    writer = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from {__name__} import _crash_writer; _crash_writer({str(db_path)!r})",
        ],
        cwd=Path(__file__).resolve().parents[1],
    )
    assert writer.returncode == -signal.SIGKILL
    wal = Path(f"{db_path}-wal")
    assert wal.stat().st_size > 0  # committed rows live only in the WAL

    done = sqlite_platform.run("db-restore", "--yes", str(artifact))
    assert done.returncode == 0, done.stderr
    assert not wal.exists() and not Path(f"{db_path}-shm").exists()
    assert sqlite_dump(db_path) == backed_up
    snapshot = snapshot_path(done.stdout)
    count = (
        sqlite3.connect(snapshot)
        .execute("SELECT count(*) FROM agents WHERE name LIKE 'wal-%'")
        .fetchone()[0]
    )
    assert count == 200
    # The restored database works in WAL mode again, with no trace of the old WAL.
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("INSERT INTO agents(name) VALUES ('after')")
    db.commit()
    db.close()
    assert sqlite3.connect(db_path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_database_held_open_by_the_application_is_refused(sqlite_platform: Platform) -> None:
    db_path = sqlite_platform.db_path
    artifact = make_backup(sqlite_platform)
    change_sqlite(db_path)
    app = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"db = sqlite3.connect({str(db_path)!r}); db.execute('PRAGMA journal_mode=WAL')\n"
            "db.execute('INSERT INTO agents(name) VALUES (\"app\")'); db.commit()\n"
            "print('ready', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout is not None and app.stdout.readline().strip() == "ready"
        content = sqlite_dump(db_path)
        done = sqlite_platform.run("db-restore", "--yes", str(artifact))
        line = one_error_line(done)
        assert "in use by another process" in line and "stop the application" in line
        assert sqlite_dump(db_path) == content
    finally:
        app.communicate("", timeout=30)


def test_disaster_recovery_without_a_live_database(sqlite_platform: Platform) -> None:
    artifact = make_backup(sqlite_platform)
    backed_up = sqlite_dump(sqlite_platform.db_path)
    sqlite_platform.db_path.unlink()
    done = sqlite_platform.run("db-restore", "--yes", str(artifact))
    assert done.returncode == 0, done.stderr
    assert "pre-restore snapshot: none" in done.stdout
    assert sqlite_dump(sqlite_platform.db_path) == backed_up


def test_sqlite_restore_killed_while_staging_changes_nothing(sqlite_platform: Platform) -> None:
    db_path = sqlite_platform.db_path
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE blobs (b BLOB)")
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150000) "
        "INSERT INTO blobs SELECT randomblob(1000) FROM n"
    )
    db.commit()
    db.close()
    artifact = make_backup(sqlite_platform)
    change_sqlite(db_path)
    content = sqlite_dump(db_path)
    live = hashlib.sha256(db_path.read_bytes()).hexdigest()
    restore = subprocess.Popen(
        [str(Path(sys.executable).parent / "chatbot-backup"), "db-restore", "--yes", str(artifact)],
        cwd=sqlite_platform.root,
        env={**os.environ, **sqlite_platform.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(db_path.parent.glob(".admin.db.partial-*")):
            assert restore.poll() is None, "the restore ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        restore.send_signal(signal.SIGKILL)
    finally:
        restore.wait(30)
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == live
    assert sqlite_dump(db_path) == content
    # The next restore clears what the killed one left and completes.
    done = sqlite_platform.run("db-restore", "--yes", str(artifact))
    assert done.returncode == 0, done.stderr
    assert not list(db_path.parent.glob(".admin.db.partial-*"))


def test_hand_made_sqlite_backup_with_the_guides_tools(
    sqlite_platform: Platform, tmp_path: Path
) -> None:
    db_path = sqlite_platform.db_path
    made = tmp_path / "by-hand.db"
    subprocess.run(["sqlite3", str(db_path), f".backup '{made}'"], check=True)
    subprocess.run(["gzip", str(made)], check=True)
    backed_up = sqlite_dump(db_path)
    change_sqlite(db_path)
    done = sqlite_platform.run("db-restore", "--yes", str(tmp_path / "by-hand.db.gz"))
    assert done.returncode == 0, done.stderr
    assert "no checksum recorded" in done.stdout and "not compared" in done.stdout
    assert sqlite_dump(db_path) == backed_up


def test_zstd_backup_restores(sqlite_platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    sqlite_platform.set(monkeypatch, BACKUP_COMPRESSION="zstd")
    done = sqlite_platform.run("db-backup")
    assert done.returncode == 0, done.stderr
    [artifact] = sqlite_platform.backup_files("admin_sqlite_*.db.zst")
    backed_up = sqlite_dump(sqlite_platform.db_path)
    change_sqlite(sqlite_platform.db_path)
    done = sqlite_platform.run("db-restore", "--yes", str(artifact))
    assert done.returncode == 0, done.stderr
    assert sqlite_dump(sqlite_platform.db_path) == backed_up


def test_recorded_row_counts_that_differ_refuse(sqlite_platform: Platform) -> None:
    artifact = make_backup(sqlite_platform)
    meta_path = artifact.with_name(artifact.name + ".meta.json")
    meta = json.loads(meta_path.read_text())
    meta["tables"]["messages"] += 1
    meta_path.write_text(json.dumps(meta))
    change_sqlite(sqlite_platform.db_path)
    before = tree_state(sqlite_platform.root, sqlite_platform.backups)
    line = one_error_line(sqlite_platform.run("db-restore", "--yes", str(artifact)))
    assert "row counts differ" in line and "messages has 500 rows, 501 recorded" in line
    assert tree_state(sqlite_platform.root, sqlite_platform.backups) == before


def test_wrong_kinds_of_backup_are_refused(sqlite_platform: Platform, tmp_path: Path) -> None:
    import tarfile

    artifact = make_backup(sqlite_platform)
    full = tmp_path / "full_backup_20250101_000000.tar.gz"
    with tarfile.open(full, "w:gz") as tar:
        tar.add(sqlite_platform.db_path, arcname="full_backup_20250101_000000/database/x.db")
    before = tree_state(sqlite_platform.root, sqlite_platform.backups)
    line = one_error_line(sqlite_platform.run("db-restore", "--yes", str(full)))
    assert "restore-all" in line
    sql = tmp_path / "dump.sql.gz"
    sql.write_bytes(gzip.compress(b"CREATE TABLE t (x int);\n"))
    line = one_error_line(sqlite_platform.run("db-restore", "--yes", str(sql)))
    assert "PostgreSQL dump" in line and "ADMIN_DB_TYPE=sqlite" in line
    assert tree_state(sqlite_platform.root, sqlite_platform.backups) == before
    assert artifact.exists()


def test_python_api(sqlite_platform: Platform) -> None:
    from flows import RestoreResult, db_restore
    from tasks.core.errors import AbortedByOperator

    artifact = make_backup(sqlite_platform)
    backed_up = sqlite_dump(sqlite_platform.db_path)
    change_sqlite(sqlite_platform.db_path)
    before = tree_state(sqlite_platform.root, sqlite_platform.backups)
    with pytest.raises(AbortedByOperator, match="confirm=True"):
        db_restore(str(artifact))  # a plain call never pauses for a UI
    assert tree_state(sqlite_platform.root, sqlite_platform.backups) == before
    # A bare name is looked up in BACKUP_DIR.
    result = db_restore(artifact.name, confirm=True)
    assert isinstance(result, RestoreResult)
    assert sqlite_dump(sqlite_platform.db_path) == backed_up
    assert result.tables == {"agents": 50, "messages": 500}
    assert result.counts_checked_against == f"{artifact.name}.meta.json"
    assert result.pre_restore_snapshot and Path(result.pre_restore_snapshot).is_file()
    assert result.backup_file == str(artifact) and result.checksum == "sidecar"


def test_summary_artifact_is_published(sqlite_platform: Platform) -> None:
    from prefect.artifacts import Artifact

    artifact = make_backup(sqlite_platform)
    done = sqlite_platform.run("db-restore", "--yes", str(artifact))
    assert done.returncode == 0, done.stderr
    published = Artifact.get("db-restore-summary")
    assert published is not None
    table = json.loads(published.data) if isinstance(published.data, str) else published.data
    items = {row["item"]: row["value"] for row in table}
    assert items["backup"] == str(artifact)
    assert items["pre-restore snapshot"].startswith(str(sqlite_platform.db_path))


# -- PostgreSQL ----------------------------------------------------------------------


@pytest.fixture
def pg_platform(platform: Platform, pg_database: str, monkeypatch: pytest.MonkeyPatch) -> Platform:
    fill_postgres(pg_database, rows=3000)
    platform.set(
        monkeypatch,
        ADMIN_DB_TYPE="postgres",
        ADMIN_DATABASE_URL=pg_url(pg_database, password=PASSWORD),
    )
    platform.env["_DBNAME"] = pg_database
    return platform


def pg_execute(dbname: str, *statements: str) -> None:
    with psycopg.connect(**{**PG_ADMIN, "dbname": dbname}, autocommit=True) as conn:  # type: ignore[arg-type]
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def pg_value(dbname: str, query: str) -> object:
    with psycopg.connect(**{**PG_ADMIN, "dbname": dbname}) as conn:  # type: ignore[arg-type]
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def change_postgres(dbname: str) -> None:
    pg_execute(
        dbname,
        "DELETE FROM messages WHERE id % 4 = 0",
        "UPDATE agents SET name = 'changed' WHERE id < 5",
        "DROP SCHEMA audit CASCADE",
        "CREATE TABLE later (x int)",
        "INSERT INTO later VALUES (1)",
    )


def test_postgres_round_trip_through_the_cli(pg_platform: Platform, scratch_database: str) -> None:
    dbname = pg_platform.env["_DBNAME"]
    artifact = make_backup(pg_platform)
    backed_up = pg_dump_text(dbname)
    acl = pg_value(dbname, "SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'")
    change_postgres(dbname)
    changed = pg_dump_text(dbname)

    done = pg_platform.run("db-restore", str(artifact), input="yes\n")
    assert done.returncode == 0, done.stderr
    assert pg_dump_text(dbname) == backed_up
    assert pg_value(dbname, "SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'") == acl
    assert "match admin_postgres_" in done.stdout
    for text in (done.stdout, done.stderr):
        assert PASSWORD not in text and "r3st0re" not in text
    # The pre-restore snapshot: BACKUP_DIR, 0600, with a sidecar, restoring the changed state.
    snapshot = snapshot_path(done.stdout)
    assert snapshot.parent == pg_platform.backups
    assert snapshot.name.startswith("admin_postgres_before_restore_") and snapshot.name.endswith(
        ".sql.gz"
    )
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    assert snapshot.with_name(snapshot.name + ".sha256").is_file()
    load = subprocess.run(
        f"gunzip -c '{snapshot}' | psql -v ON_ERROR_STOP=1 -q -h 127.0.0.1 -U postgres -d {scratch_database}",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert load.returncode == 0, load.stderr
    # A reload may place rows on other pages than a table with deleted rows had them,
    # so COPY order can differ: compare the dumps' lines as multisets.
    assert sorted(pg_dump_text(scratch_database).splitlines()) == sorted(changed.splitlines())


def test_dump_failing_on_its_last_statement_changes_nothing(
    pg_platform: Platform, tmp_path: Path
) -> None:
    dbname = pg_platform.env["_DBNAME"]
    artifact = make_backup(pg_platform)
    change_postgres(dbname)
    before = pg_dump_text(dbname)
    bad = tmp_path / "bad.sql.gz"
    sql = gzip.decompress(artifact.read_bytes())
    end = sql.rindex(b"\n--\n-- PostgreSQL database dump complete")  # last, before the trailer
    bad.write_bytes(gzip.compress(sql[:end] + b"\nSELECT no_such_function();\n" + sql[end:]))
    done = pg_platform.run("db-restore", "--yes", str(bad))
    line = one_error_line(done)
    assert "nothing was applied" in line and "no_such_function" in line
    assert pg_dump_text(dbname) == before


def test_recorded_row_counts_are_checked_inside_the_transaction(pg_platform: Platform) -> None:
    dbname = pg_platform.env["_DBNAME"]
    artifact = make_backup(pg_platform)
    meta_path = artifact.with_name(artifact.name + ".meta.json")
    meta = json.loads(meta_path.read_text())
    meta["tables"]["audit.events"] = 21
    meta_path.write_text(json.dumps(meta))
    change_postgres(dbname)
    before = pg_dump_text(dbname)
    line = one_error_line(pg_platform.run("db-restore", "--yes", str(artifact)))
    assert "audit.events has 20 rows, the backup recorded 21" in line
    assert pg_dump_text(dbname) == before


@pytest.mark.parametrize("case", ["truncated gzip", "flipped byte", "sha256 mismatch"])
def test_bad_postgres_backup_changes_nothing(pg_platform: Platform, case: str) -> None:
    dbname = pg_platform.env["_DBNAME"]
    make_fault, expected = BAD_INPUTS[case]
    artifact = make_fault(make_backup(pg_platform))
    change_postgres(dbname)
    before = pg_dump_text(dbname)
    files = tree_state(pg_platform.backups)
    line = one_error_line(pg_platform.run("db-restore", "--yes", str(artifact)))
    assert re.search(expected, line), line
    assert pg_dump_text(dbname) == before
    assert tree_state(pg_platform.backups) == files  # no snapshot either: verified first


@pytest.mark.parametrize("owner_flag", [[], ["--no-owner"]])
def test_hand_made_pg_dump_gzip(
    pg_platform: Platform, tmp_path: Path, owner_flag: list[str]
) -> None:
    dbname = pg_platform.env["_DBNAME"]
    made = tmp_path / "by-hand.sql.gz"
    subprocess.run(
        f"pg_dump -h 127.0.0.1 -U postgres {' '.join(owner_flag)} {dbname} | gzip > '{made}'",
        shell=True,
        check=True,
    )
    backed_up = pg_dump_text(dbname)
    change_postgres(dbname)
    done = pg_platform.run("db-restore", "--yes", str(made))
    assert done.returncode == 0, done.stderr
    assert pg_dump_text(dbname) == backed_up


def test_disaster_recovery_creates_the_missing_database(pg_platform: Platform) -> None:
    dbname = pg_platform.env["_DBNAME"]
    artifact = make_backup(pg_platform)
    backed_up = pg_dump_text(dbname)
    drop_database(dbname)
    done = pg_platform.run("db-restore", "--yes", str(artifact))
    assert done.returncode == 0, done.stderr
    assert "pre-restore snapshot: none" in done.stdout
    assert pg_dump_text(dbname) == backed_up


def _psql_sessions(dbname: str) -> int:
    value = pg_value(
        "postgres",
        f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{dbname}' AND application_name = 'psql'",
    )
    return int(value)  # type: ignore[call-overload]


def test_restore_killed_halfway_changes_nothing(pg_platform: Platform, tmp_path: Path) -> None:
    dbname = pg_platform.env["_DBNAME"]
    pg_execute(
        dbname,
        "INSERT INTO messages(agent_id, body, score) SELECT (g % 50) + 1, repeat(md5(g::text), 8), g "
        "FROM generate_series(1, 400000) g",
    )
    artifact = make_backup(pg_platform)
    change_postgres(dbname)
    before = pg_dump_text(dbname)
    env = {**os.environ, **pg_platform.env}
    restore = subprocess.Popen(
        [str(Path(sys.executable).parent / "chatbot-backup"), "db-restore", "--yes", str(artifact)],
        cwd=pg_platform.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while _psql_sessions(dbname) == 0:  # wait until psql is loading the dump
            assert restore.poll() is None, "the restore ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        restore.send_signal(signal.SIGKILL)  # only our process: psql sees its input end
    finally:
        restore.wait(30)
    deadline = time.monotonic() + 60
    while _psql_sessions(dbname) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pg_dump_text(dbname) == before


def test_psql_killed_halfway_is_one_line_and_changes_nothing(pg_platform: Platform) -> None:
    """psql itself killed (the OOM killer, say): the error says so, not the last notice
    psql printed before it died ("drop cascades to table ...")."""
    dbname = pg_platform.env["_DBNAME"]
    pg_execute(
        dbname,
        "INSERT INTO messages(agent_id, body, score) SELECT (g % 50) + 1, repeat(md5(g::text), 8), g "
        "FROM generate_series(1, 400000) g",
    )
    artifact = make_backup(pg_platform)
    change_postgres(dbname)
    before = pg_dump_text(dbname)
    restore = subprocess.Popen(
        [str(Path(sys.executable).parent / "chatbot-backup"), "db-restore", "--yes", str(artifact)],
        cwd=pg_platform.root,
        env={**os.environ, **pg_platform.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while _psql_sessions(dbname) == 0:  # psql is loading the dump
        assert restore.poll() is None, "the restore ended before psql could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    children = subprocess.run(
        ["pgrep", "-x", "-P", str(restore.pid), "psql"], capture_output=True, text=True
    ).stdout.split()
    assert len(children) == 1, children
    os.kill(int(children[0]), signal.SIGKILL)
    _, stderr = restore.communicate(timeout=120)
    assert restore.returncode == 7, stderr
    lines = stderr.strip().splitlines()
    assert lines == [
        "chatbot-backup: error: psql was killed (signal 9) before COMMIT; nothing was applied"
    ], stderr
    deadline = time.monotonic() + 60
    while _psql_sessions(dbname) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pg_dump_text(dbname) == before
