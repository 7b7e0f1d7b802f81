"""`pitr-restore --verify`: prove a laid-out data directory recovers to its target time.

The restored directory is started as its own server — on a free loopback port, its
socket in a private temporary folder, authentication through a temporary `hba_file`
that trusts only that socket, `archive_mode=off` so the check never writes into the WAL
archive, and `recovery_target_action=pause` so the server stops at the target and can be
asked. Then:
- recovery must stop at the target: the server pauses, and its log says "recovery
  stopping before ... time X" with X after T; the last replayed transaction is at or
  before T. A server that exits instead (PostgreSQL ends with "recovery ended before
  configured recovery target was reached" when WAL is missing) is a RestoreError naming
  the server's own reason;
- every database that accepts connections answers a catalog query, and the row counts
  of the application's database are read (the operator compares them with what T held);
- the server is stopped (fast shutdown), the temporary folder removed. The data
  directory keeps its `recovery_target_action = 'promote'`: started for real, it
  recovers to T again and opens.

`pg_verifybackup` checks the extracted files against the base's manifest first, with
the server's own tool (it ignores `postgresql.auto.conf` and `recovery.signal`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from tasks.core.errors import RestoreError, VerifyError
from tasks.pitr.pgserver import Owner, owner_name
from tasks.sources.postgres import row_counts

VERIFY_TIMEOUT_SECONDS = 6 * 3600.0  # replaying a week of WAL can take hours
STOP_TIMEOUT_SECONDS = 120.0
_STOPPING = re.compile(
    r"recovery stopping (?:before|after) (?:commit|abort) of transaction \d+, time (?P<time>[^\n]+)"
)


@dataclass(frozen=True)
class RecoveryCheck:
    target: datetime
    last_replayed: datetime | None  # the last transaction recovery applied (<= target)
    stopped_at: str  # PostgreSQL's "recovery stopping ..." line
    databases: list[str]
    tables: dict[str, int] = field(default_factory=dict)  # row counts of `dbname`
    seconds: float = 0.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_pg_verifybackup(bindir: Path, data_dir: Path) -> None:
    """The server's own check of the extracted files against `backup_manifest`."""
    program = bindir / "pg_verifybackup"
    if not program.is_file():
        return  # older servers do not have it; the extraction already checked every file
    done = subprocess.run(
        [str(program), "--no-parse-wal", "--exit-on-error", "--quiet", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise VerifyError(
            f"pg_verifybackup: the restored files do not match the base's manifest: "
            f"{reason[-1] if reason else 'exit ' + str(done.returncode)}"
        )


def verify_recovery(
    data_dir: Path,
    target: datetime,
    bindir: Path,
    owner: Owner | None,
    *,
    dbname: str | None = None,
    users: tuple[str, ...] = (),
    timeout: float = VERIFY_TIMEOUT_SECONDS,
) -> RecoveryCheck:
    """Start `data_dir`, wait until recovery paused at `target`, check it, stop it."""
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="chatbot-pitr-verify-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        if owner is not None:
            os.chown(scratch, *owner)
        os.chmod(scratch, 0o700)
        hba = scratch / "pg_hba.conf"
        hba.write_text("local all all trust\n")
        if owner is not None:
            os.chown(hba, *owner)
        port = free_port()
        options = {
            "port": str(port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(scratch),
            "hba_file": str(hba),
            "archive_mode": "off",
            "recovery_target_action": "pause",
            "hot_standby": "on",
            "logging_collector": "off",
            "log_destination": "stderr",
            "cluster_name": "chatbot-backup-pitr-verify",
        }
        if not (data_dir / "postgresql.conf").is_file():
            # Debian keeps postgresql.conf in /etc: the server needs one to start.
            conf = scratch / "postgresql.conf"
            conf.write_text("# chatbot-backup pitr-restore --verify\n")
            if owner is not None:
                os.chown(conf, *owner)
            options["config_file"] = str(conf)
        log_path = scratch / "server.log"
        argv = [str(bindir / "postgres"), "-D", str(data_dir)]
        for key, value in options.items():
            argv += ["-c", f"{key}={value}"]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(scratch),
                start_new_session=True,
                **_as_owner(owner),
            )
        candidates = _users(owner, users)
        stopped_at, user = _wait_until_paused(
            process, log_path, scratch, port, candidates, target, timeout
        )
        check = _inspect(scratch, port, user, target, stopped_at, dbname)
        return RecoveryCheck(
            target, check[0], stopped_at, check[1], check[2], time.monotonic() - started
        )
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(scratch, ignore_errors=True)


def _as_owner(owner: Owner | None) -> dict[str, Any]:
    if owner is None:
        return {}
    return {"user": owner[0], "group": owner[1], "extra_groups": []}


def _users(owner: Owner | None, users: tuple[str, ...]) -> list[str]:
    names = [owner_name(owner), *users, "postgres"]
    return list(dict.fromkeys(n for n in names if n))


def _log_tail(path: Path, limit: int = 20000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def _server_reason(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for marker in ("FATAL:", "PANIC:", "ERROR:"):
        found = [line for line in lines if marker in line]
        if found:
            return found[-1][found[-1].index(marker) :]
    return lines[-1] if lines else "no log"


def _connect(scratch: Path, port: int, user: str, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(
        host=str(scratch), port=port, user=user, dbname=dbname, connect_timeout=10, autocommit=True
    )


def _wait_until_paused(
    process: subprocess.Popen[bytes],
    log_path: Path,
    scratch: Path,
    port: int,
    users: list[str],
    target: datetime,
    timeout: float,
) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    working_user: str | None = None
    last_problem = "the server did not answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            reason = _server_reason(_log_tail(log_path))
            raise RestoreError(
                f"recovery did not reach {target:%Y-%m-%d %H:%M:%S} UTC: the restored server "
                f"stopped ({reason})"
            )
        for user in [working_user] if working_user else users:
            try:
                with _connect(scratch, port, user) as conn:
                    row = conn.execute(
                        "SELECT pg_is_in_recovery(), pg_get_wal_replay_pause_state()"
                    ).fetchone()
                working_user = user
            except psycopg.Error as exc:
                last_problem = str(exc).strip().splitlines()[0] if str(exc).strip() else "error"
                continue
            assert row is not None
            if not row[0]:
                raise RestoreError(
                    "the restored server left recovery instead of pausing at the target"
                )
            if row[1] == "paused":
                stop = _STOPPING.search(_log_tail(log_path))
                if stop is None:
                    raise RestoreError(
                        "recovery paused without reaching the target time (no 'recovery "
                        "stopping' in the server log)"
                    )
                return stop.group(0), user
            break
        time.sleep(0.3)
    raise RestoreError(
        f"recovery did not reach the target within {timeout:g} s ({last_problem}); "
        f"server log: {_server_reason(_log_tail(log_path))}"
    )


def _inspect(
    scratch: Path, port: int, user: str, target: datetime, stopped_at: str, dbname: str | None
) -> tuple[datetime | None, list[str], dict[str, int]]:
    with _connect(scratch, port, user) as conn:
        row = conn.execute("SELECT pg_last_xact_replay_timestamp()").fetchone()
        last = row[0] if row else None
        databases = [
            str(r[0])
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname"
            ).fetchall()
        ]
    if last is not None and last.astimezone(UTC) > target:
        raise RestoreError(
            f"recovery replayed a transaction of {last.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, "
            "after the target time"
        )
    tables: dict[str, int] = {}
    for name in databases:
        with _connect(scratch, port, user, name) as conn:
            conn.execute("SELECT count(*) FROM pg_class").fetchone()
            if name == dbname:
                tables = row_counts(conn)
    if dbname is not None and dbname not in databases:
        raise RestoreError(f"the recovered cluster has no database {dbname!r}")
    return (last.astimezone(UTC) if last is not None else None), databases, tables


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Fast shutdown of the server this check started (by its PID), then immediate."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, STOP_TIMEOUT_SECONDS), (signal.SIGQUIT, 30.0)):
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    process.wait()
