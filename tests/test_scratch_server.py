"""RESTORE_TEST_DATABASE_URL: test-restore's scratch databases without CREATEDB on the app's role.

The app's role here really lacks CREATEDB (a role made for the test that owns the
database it backs up); the scratch server is the machine's superuser, named only by
RESTORE_TEST_DATABASE_URL. Both runs go through the real `chatbot-backup`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.conftest import PG_ADMIN, Platform, fill_postgres, pg_admin, pg_url
from tests.test_test_restore import outcome, reason, scratch_databases


@pytest.fixture
def app_role(pg_database: str) -> Iterator[str]:
    role = f"cb_app_{uuid.uuid4().hex[:8]}"
    with pg_admin() as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    fill_postgres(pg_database, rows=200)
    with pg_admin() as conn:
        conn.execute(f'ALTER DATABASE "{pg_database}" OWNER TO "{role}"')
    with psycopg.connect(**{**PG_ADMIN, "dbname": pg_database}, autocommit=True) as conn:  # type: ignore[arg-type]
        for schema in ("public", "audit"):
            conn.execute(f'GRANT USAGE ON SCHEMA {schema} TO "{role}"')
            conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO "{role}"')
            conn.execute(f'GRANT SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO "{role}"')
    try:
        yield role
    finally:
        with pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{pg_database}" WITH (FORCE)')
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_scratch_database_through_restore_test_database_url(
    platform: Platform, pg_database: str, app_role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform.set(
        monkeypatch,
        ADMIN_DB_TYPE="postgres",
        ADMIN_DATABASE_URL=pg_url(pg_database, user=app_role),
    )
    made = platform.run("db-backup")
    assert made.returncode == 0, made.stderr
    [dump] = platform.backup_files("admin_postgres_*.sql.gz")

    refused = platform.run("test-restore", "--backup-file", str(dump))
    assert refused.returncode == 1
    why = reason(refused.stdout, "database")
    assert "permission denied to create database" in why
    assert "RESTORE_TEST_DATABASE_URL" in why and "ADMIN_DATABASE_URL" in why
    assert "RESTORE_TEST_DATABASE_URL" in refused.stderr  # the one line names the variable

    done = platform.run(
        "test-restore",
        "--backup-file",
        str(dump),
        extra_env={"RESTORE_TEST_DATABASE_URL": pg_url("postgres")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert outcome(done.stdout)["database"] == "PASS"
    assert "270 rows; row counts match" in reason(done.stdout, "database")
    assert scratch_databases() == []
