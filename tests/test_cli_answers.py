"""The CLI answers fast and plainly (issue 17, point 6), through the real `chatbot-backup`.

A configuration error within 2 s (settings are checked before Prefect starts), a restore
that cannot reach the live database refused before it asks "Are you sure", `--debug`
keeping the exit status, every subcommand's `--help` saying what it does, each flag and
the variables it reads, and `serve` naming an off-site tier without a destination.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from flows.cli import build_parser
from tests.conftest import BIN

CLI = str(BIN / "chatbot-backup")


def run(
    args: list[str], cwd: Path, env: dict[str, str], stdin: str = ""
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [CLI, *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=120
    )
    return done, time.monotonic() - started


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    """An installation with no Prefect server at all: a flow run would start Prefect's
    temporary server first (10-20 s), so a fast answer proves none was started."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(APP_ROOT=str(tmp_path), BACKUP_DIR=str(tmp_path / "backups"))
    return env


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "command",
    [
        ["db-backup"],
        ["backup-all"],
        ["test-restore"],
        ["monitor"],
        ["restore-all", "x.tar.gz", "--yes"],
    ],
)
def test_a_configuration_error_answers_within_2_seconds(
    command: list[str], tmp_path: Path, bare_env: dict[str, str]
) -> None:
    env = {**bare_env, "ADMIN_DB_TYPE": "mysql"}
    # The machine is shared by several test runs: the fastest of three answers is the
    # command's own time (a Prefect start alone takes far longer than 2 s).
    timings = []
    for _ in range(3):
        done, seconds = run(command, tmp_path, env)
        assert done.returncode == 3, done.stderr
        assert done.stderr.splitlines() == [
            "chatbot-backup: error: ADMIN_DB_TYPE: must be 'sqlite' or 'postgres', got 'mysql'"
        ]
        assert done.stdout == ""
        assert "temporary server" not in done.stderr.lower()
        timings.append(seconds)
    assert min(timings) < answer_budget(), timings


# Each of these was found only inside the flow run, 18-52 s later (after Prefect's
# temporary server, the task's retries and a failure alert), some with the wrong exit code.
EARLY_ERRORS = [
    (
        {},
        ["db-backup", "--tier", "nosuch"],
        "--tier: must be one of every-6h, daily, weekly, monthly",
    ),
    ({}, ["backup-all", "--tier", "every-6h"], "--tier: must be one of daily, weekly, monthly"),
    ({"ADMIN_DB_PATH": "/nonexistent/x.db"}, ["db-backup"], "ADMIN_DB_PATH: SQLite database"),
    ({"ADMIN_DB_PATH": "/nonexistent/x.db"}, ["backup-all"], "ADMIN_DB_PATH: SQLite database"),
    (
        {"ADMIN_DB_TYPE": "postgres", "ADMIN_DATABASE_URL": "notaurl"},
        ["db-backup"],
        "ADMIN_DATABASE_URL is not a valid postgresql:// URL",
    ),
    (  # libpq would end the password at the first '@' and print the rest as the host
        {
            "ADMIN_DB_TYPE": "postgres",
            "ADMIN_DATABASE_URL": "postgresql://u:Hunter@2secret@127.0.0.1/x",
        },
        ["db-backup"],
        "ADMIN_DATABASE_URL: write a '@' in the user name or password as %40",
    ),
    (
        {
            "ADMIN_DB_TYPE": "postgres",
            "ADMIN_DATABASE_URL": "postgresql://u@127.0.0.1/x?sslmode=bogus",
        },
        ["db-backup"],
        "ADMIN_DATABASE_URL: sslmode must be one of",
    ),
    ({"OFFSITE_DESTINATION": "ftp://x/y"}, ["db-backup", "--offsite"], "unsupported scheme 'ftp'"),
    (
        {"OFFSITE_DESTINATION": "/srv/offsite", "OFFSITE_BANDWIDTH_LIMIT": "abc"},
        ["backup-all", "--offsite"],
        "OFFSITE_BANDWIDTH_LIMIT: 'abc' is not a rate",
    ),
    (
        {"BACKUP_COMPRESSION_LEVEL": "99"},
        ["db-backup"],
        "BACKUP_COMPRESSION_LEVEL: gzip levels are 0-9, got 99",
    ),
    (
        {"BACKUP_COMPRESSION": "zstd", "BACKUP_COMPRESSION_LEVEL": "0"},
        ["db-backup"],
        "BACKUP_COMPRESSION_LEVEL: zstd levels are 1-22, got 0",
    ),
    ({"SMTP_PORT": "99999"}, ["db-backup"], "SMTP_PORT: must be a port number (1-65535)"),
    ({"BACKUP_TIMEZONE": "Mars/Olympus"}, ["db-backup"], "BACKUP_TIMEZONE: unknown timezone"),
]


@pytest.mark.parametrize(("variables", "command", "message"), EARLY_ERRORS)
def test_what_the_flow_would_refuse_is_refused_before_prefect_starts(
    variables: dict[str, str],
    command: list[str],
    message: str,
    tmp_path: Path,
    bare_env: dict[str, str],
) -> None:
    (tmp_path / "data").mkdir()
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "admin.db")) as db:
        db.execute("CREATE TABLE agents (id INTEGER PRIMARY KEY)")
    done, seconds = run(command, tmp_path, {**bare_env, **variables})
    assert done.returncode == 3, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("chatbot-backup: error: ") and message in line, line
    assert "2secret" not in line and "Hunter" not in line
    assert seconds < 3 * answer_budget(), seconds  # no Prefect server was started
    assert not (tmp_path / "backups").exists() or not any((tmp_path / "backups").iterdir())


def test_backup_dir_that_is_a_file_is_a_configuration_error(
    tmp_path: Path, bare_env: dict[str, str]
) -> None:
    (tmp_path / "data").mkdir()
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "admin.db")) as db:
        db.execute("CREATE TABLE agents (id INTEGER PRIMARY KEY)")
    plain = tmp_path / "afile"
    plain.write_text("not a folder")
    done, _ = run(["db-backup"], tmp_path, {**bare_env, "BACKUP_DIR": str(plain)})
    assert (done.returncode, done.stderr.strip()) == (
        3,
        f"chatbot-backup: error: BACKUP_DIR: {plain} is not a folder",
    )
    assert plain.read_text() == "not a folder"


def answer_budget() -> float:
    """2 s on a machine with a core free; when more processes are runnable than there are
    cores (CI and parallel sessions share 2 cores), each gets a share, and so does this."""
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    return 2.0 * max(1.0, load)


def test_debug_never_changes_the_exit_status(tmp_path: Path, bare_env: dict[str, str]) -> None:
    env = {**bare_env, "ADMIN_DB_TYPE": "mysql"}
    plain, _ = run(["db-backup"], tmp_path, env)
    debug, _ = run(["--debug", "db-backup"], tmp_path, env)
    assert plain.returncode == debug.returncode == 3
    assert "Traceback" in debug.stderr and "Traceback" not in plain.stderr
    assert debug.stderr.strip().endswith(plain.stderr.strip())

    # exit 4 (the live database cannot be reached) stays 4 with --debug too
    backup = make_pg_dump_file(tmp_path)
    env = unreachable_postgres(bare_env)
    plain, _ = run(["db-restore", str(backup), "--yes"], tmp_path, env)
    debug, _ = run(["--debug", "db-restore", str(backup), "--yes"], tmp_path, env)
    assert plain.returncode == debug.returncode == 4, plain.stderr
    assert "Traceback" in debug.stderr


def make_pg_dump_file(folder: Path) -> Path:
    path = folder / "admin_postgres_20260101_000000.sql.gz"
    path.write_bytes(gzip.compress(b"CREATE TABLE t (i int);\n"))
    return path


def unreachable_postgres(env: dict[str, str]) -> dict[str, str]:
    url = f"postgresql://postgres:S3cret-pw@127.0.0.1:{closed_port()}/app"
    return {**env, "ADMIN_DB_TYPE": "postgres", "ADMIN_DATABASE_URL": url}


@pytest.mark.parametrize("job", ["db-restore", "restore-all"])
def test_restore_checks_the_live_database_before_it_asks(
    job: str, tmp_path: Path, bare_env: dict[str, str]
) -> None:
    backup = make_pg_dump_file(tmp_path)
    if job == "restore-all":
        backup = backup.rename(tmp_path / "full_backup_20260101_000000.tar.gz")
    done, seconds = run([job, str(backup)], tmp_path, unreachable_postgres(bare_env), stdin="yes\n")
    assert done.returncode == 4, done.stderr
    assert "Are you sure" not in done.stdout and "WARNING" not in done.stdout
    [line] = done.stderr.splitlines()
    assert "cannot connect to PostgreSQL" in line and "ADMIN_DATABASE_URL" in line
    assert "nothing was restored or changed" in line
    assert "S3cret-pw" not in done.stderr + done.stdout
    assert seconds < 10
    assert backup.exists()


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_subcommand_help_says_what_it_does_each_flag_and_what_it_reads(
    tmp_path: Path, bare_env: dict[str, str]
) -> None:
    commands = subcommands()
    assert {"db-backup", "backup-all", "db-restore", "restore-all", "test-restore", "serve"} <= set(
        commands
    )
    for name, parser in commands.items():
        assert parser.description and len(parser.description) > 40, name
        for action in parser._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"
        done, _ = run([name, "--help"], tmp_path, bare_env)
        assert done.returncode == 0, (name, done.stderr)
        text = " ".join(done.stdout.split())
        assert "reads:" in text.lower(), f"{name} --help names no variables:\n{done.stdout}"
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in text, (name, flag)
    # the variables the restores and test-restore read are named
    done, _ = run(["test-restore", "--help"], tmp_path, bare_env)
    assert "RESTORE_TEST_DATABASE_URL" in done.stdout


def test_serve_says_at_start_when_an_offsite_tier_has_no_destination(
    tmp_path: Path, bare_env: dict[str, str]
) -> None:
    # No Prefect server: serve stops right after its start-up checks (exit 3), which is
    # where the warning must already have been said.
    done, _ = run(["serve"], tmp_path, {**bare_env, "BACKUP_TIMEZONE": "UTC"})
    assert done.returncode == 3 and "PREFECT_API_URL is not set" in done.stderr
    warnings = [
        line for line in done.stderr.splitlines() if "OFFSITE_DESTINATION is not set" in line
    ]
    assert len(warnings) == 2, done.stderr
    assert any("weekly" in w for w in warnings) and any("monthly" in w for w in warnings)

    env = {**bare_env, "BACKUP_TIMEZONE": "UTC", "OFFSITE_DESTINATION": str(tmp_path / "offsite")}
    done, _ = run(["serve"], tmp_path, env)
    assert done.returncode == 3 and "OFFSITE_DESTINATION" not in done.stderr
