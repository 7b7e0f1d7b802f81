"""`list`, `--latest` and `--as-of`: the catalog of every backup, and choosing one by time.

Backups are made by the real db-backup / backup-all flows with the product's clock moved
(tasks.core.clock), copied off-site by the real offsite-sync flow to a local destination,
then listed and restored through the real CLI.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Platform
from tests.test_db_restore import one_error_line

pytestmark = pytest.mark.slow

NOW = datetime.now(UTC).replace(microsecond=0)
TIMES = [NOW - timedelta(hours=h) for h in (4, 3, 2)]  # db backups holding marks 1, 2, 3
FULL_TIME = NOW - timedelta(minutes=150)


def _mark(db: Path, value: int) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS mark (v INTEGER)")
        conn.execute("DELETE FROM mark")
        conn.execute("INSERT INTO mark VALUES (?)", (value,))


def _marked(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT v FROM mark").fetchone()[0])


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%d_%H%M%S")


def _as_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def shelf(
    sqlite_platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    """Three db backups, one full, all copied off-site; the oldest db one then exists
    off-site only; plus a file named like a backup that is not one, and a base backup."""
    from flows import backup_all, db_backup, offsite_sync
    from tasks.core import clock

    offsite = tmp_path / "offsite"
    offsite.mkdir()
    sqlite_platform.set(monkeypatch, OFFSITE_DESTINATION=str(offsite))
    made: dict[str, Path] = {}
    for value, moment in enumerate(TIMES, start=1):
        _mark(sqlite_platform.db_path, value)
        monkeypatch.setattr(clock, "utc_now", lambda m=moment: m)
        made[f"db{value}"] = Path(db_backup().path)
        if value == 2:
            monkeypatch.setattr(clock, "utc_now", lambda: FULL_TIME)
            made["full"] = Path(backup_all().path)
    monkeypatch.setattr(clock, "utc_now", lambda: datetime.now(UTC))
    offsite_sync()
    for path in (made["db1"], *made["db1"].parent.glob(made["db1"].name + ".*")):
        path.unlink()  # the oldest db backup is now only off-site
    bad = sqlite_platform.backups / f"admin_sqlite_{_stamp(NOW - timedelta(minutes=30))}.db.gz"
    bad.write_bytes(b"")
    made["bad"] = bad
    base = sqlite_platform.backups / f"base_postgres_{_stamp(NOW - timedelta(hours=5))}.tar.gz"
    base.write_bytes(b"base backup bytes")
    digest = hashlib.sha256(base.read_bytes()).hexdigest()
    Path(f"{base}.sha256").write_text(f"{digest}  {base.name}\n")
    start = NOW - timedelta(hours=5)
    meta = {
        "kind": "base",
        "tier": "weekly",
        "size": base.stat().st_size,
        "sha256": digest,
        "timeline": 1,
        "start_lsn": "0/2000028",
        "end_lsn": "0/2000100",
        "start_wal": "000000010000000000000002",
        "start_time": start.isoformat(),
        "end_time": (start + timedelta(seconds=5)).isoformat(),
    }
    Path(f"{base}.meta.json").write_text(json.dumps(meta))
    made["base"] = base
    _mark(sqlite_platform.db_path, 99)  # the live database, changed since every backup
    return made


def test_list_then_restore_by_time(sqlite_platform: Platform, shelf: dict[str, Path]) -> None:
    from prefect.artifacts import Artifact

    done = sqlite_platform.run("list", "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    names = [e["name"] for e in listed]
    # Local only by default: db1 lives off-site now; the empty file is not a good backup.
    assert names == [shelf["db3"].name, shelf["full"].name, shelf["db2"].name, shelf["base"].name]
    assert all(
        set(e) == {"name", "kind", "tier", "created", "size", "sha256", "location"} for e in listed
    )
    by_name = {e["name"]: e for e in listed}
    db3 = by_name[shelf["db3"].name]
    assert db3["kind"] == "db" and db3["tier"] == "every-6h" and db3["location"] == "local"
    assert db3["sha256"] == hashlib.sha256(shelf["db3"].read_bytes()).hexdigest()
    assert db3["size"] == shelf["db3"].stat().st_size
    assert db3["created"] == TIMES[2].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert by_name[shelf["full"].name]["kind"] == "full"
    assert by_name[shelf["base"].name]["kind"] == "base"

    # --all shows the file that fails the good-backup test, and why.
    done = sqlite_platform.run("list", "--all")
    assert done.returncode == 0, done.stderr
    bad_line = next(line for line in done.stdout.splitlines() if shelf["bad"].name in line)
    assert "NOT GOOD: empty file" in bad_line
    assert done.stdout.splitlines()[1].startswith(shelf["bad"].name)  # newest first

    # --kind db --offsite: the off-site-only backup appears, located offsite.
    done = sqlite_platform.run("list", "--kind", "db", "--offsite", "--json")
    assert done.returncode == 0, done.stderr
    located = {e["name"]: e["location"] for e in json.loads(done.stdout)}
    assert located == {
        shelf["db3"].name: "both",
        shelf["db2"].name: "both",
        shelf["db1"].name: "offsite",
    }

    done = sqlite_platform.run("list", "--kind", "snapshot")
    assert (
        done.returncode == 3
        and "--kind: must be one of db, full, base or all" in one_error_line(done)
    )

    # The same catalog as a table artifact in the Prefect UI.
    from flows import list_backups

    list_backups(kind="all")
    artifact = Artifact.get("backup-catalog")
    assert artifact is not None
    rows = json.loads(str(artifact.data))
    assert [r["name"] for r in rows] == names
    assert rows[0]["sha256"] == db3["sha256"]

    # ---- choosing by time: local first, then off-site
    db = sqlite_platform.db_path

    # A time between the second and third backups restores the second.
    done = sqlite_platform.run(
        "db-restore", "--as-of", _as_of(TIMES[1] + timedelta(minutes=5)), "--yes"
    )
    assert done.returncode == 0, done.stderr
    assert shelf["db2"].name in done.stdout and _marked(db) == 2

    # Only the off-site copy is old enough: it is fetched, verified and restored.
    done = sqlite_platform.run(
        "db-restore", "--as-of", _as_of(TIMES[0] + timedelta(seconds=30)), "--yes"
    )
    assert done.returncode == 0, done.stderr
    assert shelf["db1"].name in done.stdout and _marked(db) == 1

    # --latest: the newest good one (the empty file made later is skipped).
    done = sqlite_platform.run("db-restore", "--latest", "--yes")
    assert done.returncode == 0, done.stderr
    assert shelf["db3"].name in done.stdout and _marked(db) == 3

    # A time before every backup is a clear error, exit 3, nothing changed.
    _mark(db, 42)
    before = db.read_bytes()
    early = _as_of(TIMES[0] - timedelta(hours=1))
    for job in ("db-restore", "restore-all"):
        done = sqlite_platform.run(job, "--as-of", early, "--yes")
        assert done.returncode == 3, done.stdout + done.stderr
        assert "is before every" in one_error_line(done)
    assert db.read_bytes() == before
    done = sqlite_platform.run("db-restore", "--as-of", "yesterday", "--yes")
    assert done.returncode == 3 and "YYYY-MM-DD HH:MM[:SS]" in one_error_line(done)
    done = sqlite_platform.run("db-restore", str(shelf["db2"]), "--latest", "--yes")
    assert done.returncode == 3 and "not more than one" in one_error_line(done)
    done = sqlite_platform.run("db-restore", "--yes")
    assert done.returncode == 3 and "--latest or --as-of" in one_error_line(done)
    assert db.read_bytes() == before

    # test-restore --as-of picks the full backup made by then, and proves it.
    done = sqlite_platform.run("test-restore", "--as-of", _as_of(NOW))
    assert done.returncode == 0, done.stdout + done.stderr
    assert shelf["full"].name in done.stdout
