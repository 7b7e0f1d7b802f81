"""Long jobs show progress (issue 17, point 6): bytes done and rate on a terminal, only
when stderr is a TTY, and a Prefect progress artifact, through the real CLI."""

from __future__ import annotations

import os
import pty
import subprocess
import threading
from pathlib import Path

from tests.conftest import BIN, Platform


def run_on_a_terminal(platform: Platform, *args: str) -> tuple[int, str, str]:
    """stderr is a pseudo-terminal (as for an operator at a shell); stdout a pipe."""
    master, slave = pty.openpty()
    seen: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            seen.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    done = subprocess.run(
        [str(BIN / "chatbot-backup"), *args],
        cwd=platform.root,
        env={**os.environ, **platform.env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        timeout=300,
    )
    os.close(slave)
    reader.join(10)
    os.close(master)
    return done.returncode, done.stdout.decode(), b"".join(seen).decode(errors="replace")


def progress_artifacts(key: str) -> list[float]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return [float(a.data) for a in found if a.type == "progress"]  # type: ignore[arg-type]


def test_backup_and_restore_show_progress_on_a_terminal_and_in_prefect(
    sqlite_platform: Platform,
) -> None:
    uploads = sqlite_platform.root / "data" / "uploads"
    for i in range(4):
        (uploads / f"big{i}.bin").write_bytes(os.urandom(2_000_000))

    code, stdout, terminal = run_on_a_terminal(sqlite_platform, "backup-all")
    assert "Traceback" not in terminal
    assert code == 0, terminal
    lines = [line.split("\r")[-1] for line in terminal.replace("\x1b[K", "").splitlines()]
    writing = [line for line in lines if line.startswith("backup-all: writing full_backup_")]
    assert writing, terminal
    assert " done, " in writing[-1] and writing[-1].endswith("/s")
    assert " of " in writing[-1]  # the estimate of the total is shown
    assert "MiB" in writing[-1]  # ~8 MB of uploads went through
    assert "backup-all: verifying" not in stdout  # progress never reaches stdout

    # Not a terminal (cron, systemd): no progress lines at all.
    plain = sqlite_platform.run("backup-all")
    assert plain.returncode == 0, plain.stderr
    assert " done, " not in plain.stderr and "\r" not in plain.stderr

    # The Prefect UI has the progress artifact of each run, finished at 100 %.
    assert progress_artifacts("backup-all-progress")
    assert max(progress_artifacts("backup-all-progress")) == 100.0

    [archive, *_] = sorted(sqlite_platform.backup_files("full_backup_*.tar.gz"))
    code, _, terminal = run_on_a_terminal(
        sqlite_platform, "test-restore", "--backup-file", str(archive)
    )
    assert code == 0, terminal
    assert (
        f"test-restore: verifying {Path(archive).name}" in terminal or "test-restore: " in terminal
    )
