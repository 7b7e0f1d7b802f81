"""Throwaway PostgreSQL clusters that archive their WAL through the real `wal-push`.

`initdb` of the installed PostgreSQL 15 (Debian keeps it off PATH: the server's
`pg_config` view names BINDIR) runs as the `postgres` OS user, in a folder under /tmp
that user owns, on a free loopback port. PostgreSQL runs archive_command and
restore_command as `postgres`, with its own environment: so every folder they touch
(the backup folder with its `wal/` archive) belongs to `postgres`, and the command they
run must be reachable by that user. `postgres_cli()` is the venv's `chatbot-backup` when
`postgres` can run it; on this machine the venv's interpreter lives under /root (0700),
so it is the same code (this checkout and the venv's site-packages on PYTHONPATH) under
the system's Python 3.11 instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.support.services import HOST, REPO, ServiceError, free_port

VENV_BIN = Path(sys.executable).parent
SITE_PACKAGES = Path(
    next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
)


def bindir() -> Path:
    with psycopg.connect(host=HOST, port=5432, user="postgres", dbname="postgres") as conn:
        row = conn.execute("SELECT setting FROM pg_config WHERE name = 'BINDIR'").fetchone()
    assert row is not None
    return Path(str(row[0]))


def as_postgres(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        ["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, **kwargs
    )


def postgres_cli() -> list[str]:
    """Words that run this checkout's `chatbot-backup` as the `postgres` user."""
    venv_cli = VENV_BIN / "chatbot-backup"
    if as_postgres([str(venv_cli), "--help"], timeout=60).returncode == 0:
        return [str(venv_cli)]
    system = Path("/usr/bin/python3.11")
    if not system.is_file():
        raise ServiceError("the postgres user can run neither the venv nor /usr/bin/python3.11")
    return ["env", f"PYTHONPATH={REPO}:{SITE_PACKAGES}", str(system), "-m", "flows"]


def postgres_folder(prefix: str) -> Path:
    """A new folder under /tmp owned by `postgres` (pytest's tmp_path is root-only)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.chown(folder, "postgres", "postgres")
    folder.chmod(0o755)
    return folder


@dataclass
class Cluster:
    """A running throwaway cluster (superuser `postgres`, trust on its socket and TCP)."""

    data: Path
    port: int
    socket_dir: Path
    bindir: Path
    log: Path

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host=HOST, port=self.port, user="postgres", dbname=dbname, autocommit=True
        )

    def execute(self, statement: str, dbname: str = "postgres") -> list[tuple[object, ...]]:
        with self.connect(dbname) as conn:
            cursor = conn.execute(statement)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def switch_wal(self) -> str:
        """Close the current segment; returns its name once it is archived."""
        row = self.execute("SELECT pg_walfile_name(pg_switch_wal())")[0]
        name = str(row[0])
        self.wait_archived(name)
        return name

    def wait_archived(self, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.execute("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver")
            last = row[0][0]
            if last is not None and str(last)[:24] >= name:
                return
            time.sleep(0.2)
        raise ServiceError(f"{name} was not archived within {timeout} s:\n{self.log_tail()}")

    def pg_ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return as_postgres(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), *args], timeout=timeout
        )

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-m", mode, "-w", "stop")

    def log_tail(self, limit: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-limit:]
        return ""


def cluster_options(port: int, socket_dir: Path, archive_command: str | None) -> str:
    lines = [
        f"port = {port}",
        f"listen_addresses = '{HOST}'",
        f"unix_socket_directories = '{socket_dir}'",
        "wal_level = replica",
        "max_wal_senders = 4",
        "fsync = off",  # throwaway: speed, not crash safety, on a shared disk
        "synchronous_commit = off",
    ]
    if archive_command is not None:
        quoted = archive_command.replace("'", "''")
        lines += ["archive_mode = on", f"archive_command = '{quoted}'"]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def throwaway_cluster(
    folder: Path, archive_command: str | None, name: str = "primary"
) -> Iterator[Cluster]:
    """initdb + start a cluster in `folder/name` (a `postgres`-owned folder); stop on exit."""
    bins = bindir()
    data = folder / name
    socket_dir = folder / f"{name}-socket"
    socket_dir.mkdir()
    shutil.chown(socket_dir, "postgres", "postgres")
    done = as_postgres(
        [str(bins / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync",
         "-E", "UTF8"],
        timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        raise ServiceError(f"initdb failed: {done.stderr[-2000:]}")
    port = free_port()
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(cluster_options(port, socket_dir, archive_command))
    log = folder / f"{name}.log"
    cluster = Cluster(data, port, socket_dir, bins, log)
    started = cluster.pg_ctl("-l", str(log), "-w", "-t", "60", "start")
    if started.returncode != 0:
        raise ServiceError(f"pg_ctl start failed: {started.stderr}\n{cluster.log_tail()}")
    try:
        yield cluster
    finally:
        cluster.pg_ctl("-m", "immediate", "-w", "stop", timeout=60)


def start_restored(data: Path, folder: Path, name: str, *options: str) -> Cluster:
    """Start a restored data directory as the operator would (pg_ctl start), on a free port."""
    bins = bindir()
    socket_dir = folder / f"{name}-socket"
    socket_dir.mkdir(exist_ok=True)
    shutil.chown(socket_dir, "postgres", "postgres")
    port = free_port()
    log = folder / f"{name}.log"
    cluster = Cluster(data, port, socket_dir, bins, log)
    flags = f"-p {port} -k {socket_dir} " + " ".join(f"-c {o}" for o in options)
    started = cluster.pg_ctl("-l", str(log), "-o", flags, "-w", "-t", "120", "start")
    if started.returncode != 0:
        raise ServiceError(f"pg_ctl start failed: {started.stderr}\n{cluster.log_tail()}")
    return cluster


def wait_until_primary(cluster: Cluster, timeout: float = 120.0) -> None:
    """Until recovery ended (promoted) and the server accepts writes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(psycopg.Error):
            if cluster.execute("SELECT pg_is_in_recovery()")[0][0] is False:
                return
        time.sleep(0.3)
    raise ServiceError(f"{cluster.data} did not leave recovery:\n{cluster.log_tail()}")


def run_cli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """The real `chatbot-backup` of this venv, as the test's own user (root here)."""
    return subprocess.run(
        [str(VENV_BIN / "chatbot-backup"), *args],
        cwd=cwd,
        env={**os.environ, **env},
        input="",
        capture_output=True,
        text=True,
        timeout=timeout,
    )
