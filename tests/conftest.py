"""Shared fixtures: one Prefect test server per session, platform folders, databases.

Every test gets its own application root (APP_ROOT) with a backup folder, and talks to
real components: SQLite files, the machine's PostgreSQL (a throwaway database per
test), the real `chatbot-backup` command in subprocesses.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.support.services import PasswordPostgres, password_postgres

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}

# Variables of the product that must not leak into a test from the machine.
_PRODUCT_VARIABLES = (
    "APP_ROOT ADMIN_DB_TYPE ADMIN_DB_PATH ADMIN_DATABASE_URL BACKUP_DIR RETENTION_DAYS UPLOADS_DIR "
    "APP_DATA_DIR CONFIG_FILES OFFSITE_DESTINATION ALERT_EMAIL SMTP_HOST SMTP_PORT SMTP_USER "
    "SMTP_PASSWORD ALERT_FROM ALERT_SLACK_WEBHOOK ALERT_WEBHOOK METRICS_FILE PROMETHEUS_PUSHGATEWAY "
    "BACKUP_TIMEZONE BACKUP_COMPRESSION BACKUP_COMPRESSION_LEVEL BACKUP_LOCK_TIMEOUT "
    "BACKUP_SKIP_UNREADABLE OFFSITE_S3_STORAGE_CLASS OFFSITE_SSH_CONFIG OFFSITE_RETENTION_DAYS "
    "OFFSITE_GLACIER_DAYS OFFSITE_EXPIRE_DAYS OFFSITE_RETRY_SECONDS BACKUP_ENCRYPTION_RECIPIENTS "
    "BACKUP_ENCRYPTION_IDENTITY MONITOR_MAX_AGE_HOURS MONITOR_MIN_COUNT MONITOR_SIZE_DROP_RATIO "
    "MONITOR_MIN_FREE_PERCENT MONITOR_FREE_SPACE_MULTIPLE MONITOR_RPO_DATABASE_HOURS "
    "MONITOR_RPO_FILES_HOURS MONITOR_CHECK_DEPLOYMENTS ALERT_TIMEOUT "
    "PITR_ENABLED PITR_DATABASE_URL WAL_ARCHIVE_DIR WAL_PUSH_OFFSITE MONITOR_WAL_MAX_AGE_MINUTES PITR_COMMAND"
).split()
_PRODUCT_VARIABLES.append("MIGRATE_TARGET_DATABASE_URL")  # migrate-to-postgres's target
_PRODUCT_VARIABLES.append("RESTORE_TEST_DATABASE_URL")  # test-restore's scratch server


@pytest.fixture(scope="session")
def prefect_api_url() -> Iterator[str]:
    """One Prefect test server for the whole session (entering it costs ~10 s)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        url = PREFECT_API_URL.value()
        assert url
        yield url


@pytest.fixture(autouse=True)
def _clean_product_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PRODUCT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@dataclass
class Platform:
    """A GPT Chatbot installation in a temp folder: the application root and its parts."""

    root: Path
    backups: Path
    env: dict[str, str]

    @property
    def db_path(self) -> Path:
        return self.root / "data" / "admin.db"

    def set(self, monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
        for key, value in values.items():
            self.env[key] = value
            monkeypatch.setenv(key, value)

    def run(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 300,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `chatbot-backup` command in the application root."""
        env = {**os.environ, **self.env, **(extra_env or {})}
        return subprocess.run(
            [str(BIN / "chatbot-backup"), *args],
            cwd=self.root,
            env=env,
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def backup_files(self, pattern: str = "*") -> list[Path]:
        return sorted(
            p for p in self.backups.glob(pattern) if p.is_file() and not p.name.startswith(".")
        )


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api_url: str) -> Platform:
    root = tmp_path / "app"
    (root / "data" / "uploads").mkdir(parents=True)
    backups = tmp_path / "backups"
    env = {
        "APP_ROOT": str(root),
        "BACKUP_DIR": str(backups),
        "PREFECT_API_URL": prefect_api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "BACKUP_LOCK_TIMEOUT": "5",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(root)
    return Platform(root=root, backups=backups, env=env)


def make_sqlite_db(path: Path, agents: int = 50, messages: int = 500) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE agents (id INTEGER PRIMARY KEY, name TEXT NOT NULL, config BLOB);
        CREATE TABLE messages (id INTEGER PRIMARY KEY, agent_id INTEGER REFERENCES agents(id),
                               body TEXT, created_at REAL);
        CREATE INDEX messages_agent ON messages(agent_id);
        CREATE VIEW agent_counts AS SELECT agent_id, count(*) AS n FROM messages GROUP BY agent_id;
        """
    )
    db.executemany(
        "INSERT INTO agents(name, config) VALUES (?, ?)",
        [(f"agent-{i} ünïcødé", os.urandom(64)) for i in range(agents)],
    )
    db.executemany(
        "INSERT INTO messages(agent_id, body, created_at) VALUES (?, ?, ?)",
        [(i % agents + 1, f"message {i} " * 5, i * 1.5) for i in range(messages)],
    )
    db.commit()
    db.close()
    return path


def sqlite_dump(path: Path) -> str:
    """Schema and data as text, for comparing two databases."""
    return subprocess.run(
        ["sqlite3", str(path), ".dump"], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def sqlite_platform(platform: Platform) -> Platform:
    make_sqlite_db(platform.db_path)
    return platform


# -- PostgreSQL --------------------------------------------------------------------


def pg_admin() -> psycopg.Connection:
    return psycopg.connect(**PG_ADMIN, autocommit=True)  # type: ignore[arg-type]


def create_database(name: str) -> None:
    with pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_url(dbname: str, user: str = "postgres", password: str | None = None) -> str:
    from urllib.parse import quote

    auth = user if password is None else f"{user}:{quote(password, safe='')}"
    return f"postgresql://{auth}@127.0.0.1:5432/{dbname}"


def fill_postgres(dbname: str, rows: int = 1000) -> None:
    with psycopg.connect(**{**PG_ADMIN, "dbname": dbname}, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(
            """
            CREATE TABLE agents (id serial PRIMARY KEY, name text NOT NULL, settings jsonb, created_at timestamptz DEFAULT now());
            CREATE TABLE messages (id bigserial PRIMARY KEY, agent_id int REFERENCES agents(id), body text, score numeric(10,3));
            CREATE SCHEMA audit;
            CREATE TABLE audit.events (id serial PRIMARY KEY, what text);
            CREATE INDEX messages_agent ON messages(agent_id);
            CREATE VIEW agent_message_counts AS SELECT agent_id, count(*) FROM messages GROUP BY agent_id;
            """
        )
        conn.execute(
            "INSERT INTO agents(name, settings) SELECT 'agent ' || g || ' ü', jsonb_build_object('n', g) FROM generate_series(1, 50) g"
        )
        conn.execute(
            "INSERT INTO messages(agent_id, body, score) SELECT (g %% 50) + 1, repeat('x', g %% 200) || E'\\n\\t''q', g / 7.0 FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute("INSERT INTO audit.events(what) SELECT 'e' || g FROM generate_series(1, 20) g")


def pg_dump_text(dbname: str) -> str:
    """A plain dump for comparing databases, without pg_dump's random \\restrict lines."""
    out = subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "--no-owner", "--no-privileges", dbname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "\n".join(
        line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
    )


@pytest.fixture
def pg_database() -> Iterator[str]:
    name = f"cbtest_{uuid.uuid4().hex[:10]}"
    create_database(name)
    try:
        yield name
    finally:
        drop_database(name)


@pytest.fixture
def scratch_database() -> Iterator[str]:
    name = f"cbscratch_{uuid.uuid4().hex[:10]}"
    create_database(name)
    try:
        yield name
    finally:
        drop_database(name)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


@pytest.fixture(scope="session")
def password_pg() -> Iterator[PasswordPostgres]:
    """A second PostgreSQL that demands a password (the machine's cluster trusts all)."""
    with password_postgres() as service:
        yield service
