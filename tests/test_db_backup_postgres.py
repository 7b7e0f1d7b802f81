"""db-backup on PostgreSQL: round trip through `gunzip -c | psql`, consistency, secrets."""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from tests.conftest import PG_ADMIN, Platform, fill_postgres, pg_dump_text, pg_url

PASSWORD = "p@ss:w/rd%&'\"Zq9"


@pytest.fixture
def pg_platform(platform: Platform, pg_database: str, monkeypatch: pytest.MonkeyPatch) -> Platform:
    fill_postgres(pg_database, rows=3000)
    # Trust auth ignores the password, but the product must still carry it safely.
    platform.set(
        monkeypatch,
        ADMIN_DB_TYPE="postgres",
        ADMIN_DATABASE_URL=pg_url(pg_database, password=PASSWORD),
    )
    platform.env["_DBNAME"] = pg_database
    return platform


def test_round_trip_with_gunzip_and_psql(pg_platform: Platform, scratch_database: str) -> None:
    source = pg_platform.env["_DBNAME"]
    before = pg_dump_text(source)
    done = pg_platform.run("db-backup")
    assert done.returncode == 0, done.stderr
    [artifact] = pg_platform.backup_files("admin_postgres_*.sql.gz")
    # The guide's way back, into an empty database.
    load = subprocess.run(
        f"gunzip -c '{artifact}' | psql -v ON_ERROR_STOP=1 -q -h 127.0.0.1 -U postgres -d {scratch_database}",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert load.returncode == 0, load.stderr
    assert pg_dump_text(scratch_database) == before
    check = subprocess.run(
        ["sha256sum", "-c", f"{artifact.name}.sha256"],
        cwd=artifact.parent,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_row_counts_come_from_the_dumped_snapshot(pg_platform: Platform) -> None:
    from flows import db_backup

    result = db_backup()
    assert result.tables == {"agents": 50, "messages": 3000, "audit.events": 20}
    with gzip.open(result.path, "rt") as dump:
        text = dump.read()
    assert "COPY public.messages" in text and "password" not in text.lower()


def _app_writer(dbname: str, stop: threading.Event) -> None:
    with psycopg.connect(**{**PG_ADMIN, "dbname": dbname}, autocommit=True) as conn:  # type: ignore[arg-type]
        while not stop.is_set():
            with conn.transaction():
                conn.execute("INSERT INTO agents(name) VALUES ('w')")
                conn.execute("INSERT INTO audit.events(what) VALUES ('w')")


def test_backup_while_the_application_writes_is_consistent(
    pg_platform: Platform, scratch_database: str
) -> None:
    """Each write adds one agent and one audit event: the dump must show equal growth."""
    source = pg_platform.env["_DBNAME"]
    stop = threading.Event()
    writer = threading.Thread(target=_app_writer, args=(source, stop))
    writer.start()
    try:
        time.sleep(0.3)
        from flows import db_backup

        result = db_backup()
    finally:
        stop.set()
        writer.join()
    subprocess.run(
        f"gunzip -c '{result.path}' | psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d {scratch_database}",
        shell=True,
        check=True,
        capture_output=True,
    )
    with psycopg.connect(**{**PG_ADMIN, "dbname": scratch_database}) as conn:  # type: ignore[arg-type]
        agents = conn.execute("SELECT count(*) FROM agents").fetchone()[0]  # type: ignore[index]
        events = conn.execute("SELECT count(*) FROM audit.events").fetchone()[0]  # type: ignore[index]
    assert agents - 50 == events - 20
    assert result.tables["agents"] == agents and result.tables["audit.events"] == events


def test_counts_read_late_still_see_the_dumped_snapshot(
    pg_platform: Platform, scratch_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counts run on the exporting transaction; started 0.5 s late, while the
    application commits, they must still see the dump's snapshot (REPEATABLE READ; in
    READ COMMITTED each count would take a newer one)."""
    import tasks.sources.postgres as postgres

    source = pg_platform.env["_DBNAME"]
    real = postgres.row_counts

    def late(connection: psycopg.Connection) -> dict[str, int]:
        time.sleep(0.5)
        return real(connection)

    monkeypatch.setattr(postgres, "row_counts", late)
    stop = threading.Event()
    writer = threading.Thread(target=_app_writer, args=(source, stop))
    writer.start()
    try:
        time.sleep(0.2)
        from flows import db_backup

        result = db_backup()
    finally:
        stop.set()
        writer.join()
    subprocess.run(
        f"gunzip -c '{result.path}' | psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d {scratch_database}",
        shell=True,
        check=True,
        capture_output=True,
    )
    with psycopg.connect(**{**PG_ADMIN, "dbname": scratch_database}) as conn:  # type: ignore[arg-type]
        agents = conn.execute("SELECT count(*) FROM agents").fetchone()[0]  # type: ignore[index]
    with psycopg.connect(**{**PG_ADMIN, "dbname": source}) as conn:  # type: ignore[arg-type]
        live = conn.execute("SELECT count(*) FROM agents").fetchone()[0]  # type: ignore[index]
    assert live > agents  # the application wrote after the snapshot
    assert result.tables["agents"] == agents


def test_a_table_the_role_may_not_read_is_named_as_the_cause(
    platform: Platform, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The count scan hits the table first and aborts the exporting transaction; pg_dump
    then only said "could not import the requested snapshot"."""
    role = f"{pg_database}_app"
    with psycopg.connect(**{**PG_ADMIN, "dbname": pg_database}, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
        conn.execute("CREATE TABLE secret_t (x int)")  # owned by postgres, no grant
        conn.execute(f"SET ROLE {role}")
        conn.execute("CREATE TABLE mine (x int)")
        conn.execute("RESET ROLE")
    try:
        platform.set(
            monkeypatch, ADMIN_DB_TYPE="postgres", ADMIN_DATABASE_URL=pg_url(pg_database, user=role)
        )
        done = platform.run("db-backup")
        assert done.returncode == 4, done.stderr
        assert "permission denied for table secret_t" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert platform.backup_files("admin_postgres_*.sql.gz") == []
    finally:
        with psycopg.connect(**{**PG_ADMIN, "dbname": pg_database}, autocommit=True) as conn:  # type: ignore[arg-type]
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_password_never_in_arguments_logs_or_artifacts(
    pg_platform: Platform, tmp_path: Path, prefect_api_url: str
) -> None:
    # A pg_dump on PATH that records how it was called, then runs the real one.
    shim = tmp_path / "bin"
    shim.mkdir()
    record = tmp_path / "pg_dump_calls"
    real = subprocess.run(
        ["which", "pg_dump"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (shim / "pg_dump").write_text(
        f'#!/bin/sh\ncat /proc/$$/cmdline | tr "\\0" " " >> "{record}"\necho >> "{record}"\n'
        f'[ -n "$PGPASSWORD" ] && echo "PGPASSWORD set" >> "{record}"\nexec "{real}" "$@"\n'
    )
    (shim / "pg_dump").chmod(0o755)
    done = pg_platform.run("db-backup", extra_env={"PATH": f"{shim}:{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr
    calls = record.read_text()
    assert "pg_dump" in calls and "PGPASSWORD set" in calls
    secrets = [PASSWORD, quote(PASSWORD, safe=""), "p@ss:w/rd"]
    haystacks = {"cmdline": calls, "stdout": done.stdout, "stderr": done.stderr}
    for path in pg_platform.backups.iterdir():
        if path.is_file() and not path.name.endswith(".gz"):
            haystacks[path.name] = path.read_text(errors="replace")
    haystacks.update(_prefect_records(prefect_api_url))
    for where, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"secret found in {where}"


def _prefect_records(api_url: str) -> dict[str, str]:
    """Flow-run parameters, logs and artifacts of every run the test server has seen."""
    from prefect.client.orchestration import get_client

    async def collect() -> dict[str, str]:
        async with get_client() as client:
            runs = await client.read_flow_runs(limit=200)
            logs = await client.read_logs(limit=200)
            artifacts = await client.read_artifacts(limit=200)
        return {
            "parameters": repr([r.parameters for r in runs]),
            "logs": "\n".join(log.message for log in logs),
            "artifacts": repr([a.data for a in artifacts]),
        }

    return asyncio.run(collect())


def test_unreachable_server_is_a_clear_error(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform.set(
        monkeypatch,
        ADMIN_DB_TYPE="postgres",
        ADMIN_DATABASE_URL=f"postgresql://postgres:{quote(PASSWORD, safe='')}@127.0.0.1:1/x",
    )
    done = platform.run("db-backup")
    assert done.returncode != 0
    assert "cannot connect to PostgreSQL" in done.stderr and PASSWORD not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert platform.backup_files() == []


def test_missing_database_is_a_clear_error(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform.set(
        monkeypatch,
        ADMIN_DB_TYPE="postgres",
        ADMIN_DATABASE_URL=pg_url("no_such_db_here", password=PASSWORD),
    )
    done = platform.run("db-backup")
    assert done.returncode != 0 and "no_such_db_here" in done.stderr and PASSWORD not in done.stderr


def test_pg_dump_failing_midway_reports_its_own_error_while_rows_are_counted(
    pg_platform: Platform, tmp_path: Path
) -> None:
    # Row counts run in a second thread during the dump: when pg_dump dies halfway, its
    # error (not the cancelled count's) is the one line, and nothing is kept.
    shim = tmp_path / "bin"
    shim.mkdir()
    real = subprocess.run(
        ["which", "pg_dump"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (shim / "pg_dump").write_text(
        f'#!/bin/bash\n"{real}" "$@" | head -c 200000\n'
        'echo "pg_dump: error: simulated loss of the connection" >&2\nexit 3\n'
    )
    (shim / "pg_dump").chmod(0o755)
    done = pg_platform.run("db-backup", extra_env={"PATH": f"{shim}:{os.environ['PATH']}"})
    assert done.returncode == 4, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pg_dump failed (exit 3)" in lines[0], lines
    assert "simulated loss of the connection" in lines[0]
    assert pg_platform.backup_files() == []
    assert list(pg_platform.backups.glob(".*partial*")) == []
    # Nothing was left holding the snapshot or the lock: the next backup just works.
    again = pg_platform.run("db-backup")
    assert again.returncode == 0, again.stderr
    assert len(pg_platform.backup_files("admin_postgres_*.sql.gz")) == 1
