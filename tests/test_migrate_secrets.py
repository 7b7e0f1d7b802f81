"""The target's password never leaves: not in `ps`, logs, Prefect, artifacts or the report.

A PostgreSQL that demands a password full of special characters; migrate-to-postgres
runs through the real CLI with the password in `--target-url`: once successfully with
`--update-env` (so the first PostgreSQL backup runs pg_dump against the target), once
into a target whose event trigger changes a value (the flow fails: exit 6, its
exception pickled into PREFECT_HOME), once with a wrong password (refused: exit 3).
Where a password could show: every process's arguments, sampled from /proc while the
command works (from the moment its own arguments were rewritten — the interpreter's
first milliseconds cannot be helped, see tasks/migrate/cmdline.py) and recorded by
pg_dump/psql stand-ins on PATH; stdout and stderr; the Prefect API (flow-run
parameters and states, task runs, logs, artifacts); PREFECT_HOME on disk; the backup
folder (report, sidecars, meta files); the kept `.env`. Only the new `.env` may hold it.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import _PRODUCT_VARIABLES, BIN, Platform
from tests.support.chatbot_sqlite import make_chatbot_db
from tests.support.services import PasswordPostgres
from tests.test_migrate import _MANGLER
from tests.test_secrets_sweep import _files_text, _prefect_api_text, _shim, forms

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture
def targets(password_pg: PasswordPostgres) -> Iterator[tuple[str, str]]:
    names = ("migrate_secret_ok", "migrate_secret_mangled")
    with psycopg.connect(**password_pg.admin_params(), autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(**password_pg.admin_params(names[1]), autocommit=True) as conn:
        conn.execute(_MANGLER)
    yield names
    with psycopg.connect(**password_pg.admin_params(), autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class CmdlineSampler:
    """Every process's arguments, read from /proc every few milliseconds."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        self.seen.add(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                    except OSError:
                        pass
            time.sleep(0.005)

    def __enter__(self) -> CmdlineSampler:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()


def run_sampled(argv: list[str], env: dict[str, str], cwd: Path, sampler: CmdlineSampler) -> subprocess.CompletedProcess[str]:
    """Run the CLI; sample /proc once the process has rewritten its own arguments."""
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cmdline = Path(f"/proc/{process.pid}/cmdline")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if b"***" in cmdline.read_bytes():
                break
        except OSError:
            break
        time.sleep(0.002)
    with sampler:
        stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def test_the_target_password_is_nowhere(
    platform: Platform, tmp_path: Path, password_pg: PasswordPostgres, targets: tuple[str, str],
    prefect_api_url: str,
) -> None:
    ok, mangled = targets
    make_chatbot_db(platform.db_path, messages=5000)
    shims, record = tmp_path / "shims", tmp_path / "cmdlines"
    shims.mkdir()
    for tool in ("pg_dump", "psql"):
        _shim(shims, record, tool)
    prefect_home = tmp_path / "prefect-home"
    prefect_home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in _PRODUCT_VARIABLES}
    env.update(platform.env, PATH=f"{shims}:{os.environ['PATH']}", PREFECT_HOME=str(prefect_home))
    command = str(BIN / "chatbot-backup")
    sampler = CmdlineSampler()

    runs = {}
    runs["migrated"] = run_sampled(
        [command, "migrate-to-postgres", "--target-url", password_pg.url(ok), "--yes", "--update-env"],
        env, platform.root, sampler,
    )
    assert runs["migrated"].returncode == 0, runs["migrated"].stderr
    runs["mismatch"] = run_sampled(
        [command, "migrate-to-postgres", "--yes", f"--target-url={password_pg.url(mangled)}"],
        {**env, "ADMIN_DB_TYPE": "sqlite"}, platform.root, sampler,
    )
    assert runs["mismatch"].returncode == 6, runs["mismatch"].stderr
    wrong = password_pg.url(ok, password_pg.password + "-WRONG")
    runs["wrong password"] = run_sampled(
        [command, "migrate-to-postgres", "--target-url", wrong, "--yes"],
        {**env, "ADMIN_DB_TYPE": "sqlite"}, platform.root, sampler,
    )
    assert runs["wrong password"].returncode == 3, runs["wrong password"].stderr
    assert "password authentication failed" in runs["wrong password"].stderr

    # The work happened where it should: pg_dump ran against the target, the report exists.
    recorded = record.read_text(errors="replace")
    assert "== pg_dump" in recorded
    assert platform.backup_files("admin_postgres_*.sql.gz")
    assert password_pg.url(ok) in (platform.root / ".env").read_text()  # the one place it belongs
    reports = sorted((platform.backups / "reports").glob("migration_*.md"))
    assert len(reports) == 2

    haystacks: dict[str, bytes] = {
        "process arguments (pg_dump/psql stand-ins)": recorded.encode(),
        "process arguments (sampled)": "\n".join(sampler.seen).encode(),
    }
    for job, done in runs.items():
        haystacks[f"{job} stdout"] = done.stdout.encode()
        haystacks[f"{job} stderr"] = done.stderr.encode()
    api = _prefect_api_text()
    assert "migration-report" in api["artifacts"]
    haystacks.update({k: v.encode() for k, v in api.items()})
    stored = _files_text(prefect_home)
    assert any("storage" in name for name in stored), "no pickled failure in PREFECT_HOME/storage"
    haystacks.update(stored)
    haystacks.update(_files_text(platform.backups))
    for kept in platform.root.glob(".env.before_migration_*"):
        haystacks[str(kept)] = kept.read_bytes()
    assert any("sampled" in k for k in haystacks) and sampler.seen
    secrets = {
        "password": password_pg.password,
        "wrong password": password_pg.password + "-WRONG",
        "password prefix": "p@ss:w/rd",
    }
    leaks = [
        f"{what} in {where}"
        for where, text in haystacks.items()
        for what, secret in secrets.items()
        if any(form.encode() in text for form in forms(secret))
    ]
    assert not leaks, "\n".join(leaks)


def test_flow_run_parameters_hold_no_url(platform: Platform, prefect_api_url: str) -> None:
    """The flow's parameters are the two switches; the URL travels in the environment."""
    from flows.migrate_to_postgres_flow import migrate_to_postgres

    assert set(migrate_to_postgres.parameters.properties) == {"confirm", "update_env"}
