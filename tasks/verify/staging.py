"""The staging-server restore test: copy a backup over SSH and run test-restore there.

The real `ssh` and `scp` are used, so the operator's ssh config, keys and agent apply
(`BatchMode=yes`: a missing key fails at once instead of waiting for a password). The
archive and its sidecar go to a fresh `mktemp -d` folder on the staging host, which
runs `chatbot-backup test-restore --backup-file ...` from its own installation and
configuration; the folder is removed afterwards whatever happened. The staging host's
exit status decides: 0 passed, anything else failed, with its failed checks as reason.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tasks.core.errors import ConfigError
from tasks.core.naming import sidecar_name
from tasks.core.redact import redact
from tasks.verify.restore_test import STAGING, CheckOutcome

# user@host, host, or an alias from the ssh config; never something ssh would take for an option.
_DESTINATION = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9._-]*@)?[A-Za-z0-9_][A-Za-z0-9._-]*$")
CONNECT_TIMEOUT_SECONDS = 20
COPY_TIMEOUT_SECONDS = 6 * 3600
RUN_TIMEOUT_SECONDS = 6 * 3600


@dataclass(frozen=True)
class StagingTarget:
    destination: str  # user@host
    ssh_config: Path | None = None  # `ssh -F`; None: the user's own ~/.ssh/config
    remote_command: str = "chatbot-backup"  # how the staging host runs chatbot-backup


def check_destination(value: str) -> str:
    value = value.strip()
    if not _DESTINATION.match(value):
        raise ConfigError(
            f"--staging-server: expected user@host (or a host alias from your ssh config), got {value!r}"
        )
    return value


def _ssh_options(target: StagingTarget) -> list[str]:
    options = [
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={CONNECT_TIMEOUT_SECONDS}",
        "-o",
        "ServerAliveInterval=30",
    ]
    if target.ssh_config is not None:
        options = ["-F", str(target.ssh_config), *options]
    return options


def _ssh(target: StagingTarget, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", *_ssh_options(target), target.destination, command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return redact(lines[-1]) if lines else "no message"


def _failed_checks(stdout: str) -> list[str]:
    """The FAIL rows of the remote test-restore table."""
    rows = []
    for line in stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] == "FAIL" and not parts[2].startswith("not run:"):
            rows.append(" ".join(parts[1:]))
    return rows


def run_staging_test(archive: Path, target: StagingTarget) -> CheckOutcome:
    """Copy `archive` (and its sidecar) to the staging host and test-restore it there."""
    where = target.destination
    try:
        made = _ssh(
            target,
            'mktemp -d "${TMPDIR:-/tmp}/chatbot-test-restore.XXXXXXXX"',
            CONNECT_TIMEOUT_SECONDS * 3,
        )
    except subprocess.TimeoutExpired:
        return CheckOutcome.failed(STAGING, f"{where}: no answer over SSH")
    except FileNotFoundError:
        return CheckOutcome.failed(STAGING, "ssh is not installed on this machine")
    remote_dir = made.stdout.strip()
    if made.returncode != 0 or not remote_dir.startswith("/"):
        return CheckOutcome.failed(
            STAGING, f"{where}: cannot open an SSH session ({_last_line(made.stderr)})"
        )
    try:
        return _copy_and_run(archive, target, remote_dir)
    finally:
        try:
            _ssh(target, f"rm -rf -- {shlex.quote(remote_dir)}", CONNECT_TIMEOUT_SECONDS * 3)
        except (subprocess.TimeoutExpired, OSError):
            pass  # the staging host's tmp cleaner gets it; the result stands


def _copy_and_run(archive: Path, target: StagingTarget, remote_dir: str) -> CheckOutcome:
    where = target.destination
    files = [str(archive)]
    sidecar = archive.with_name(sidecar_name(archive.name))
    if sidecar.is_file():
        files.append(str(sidecar))
    try:
        copied = subprocess.run(
            ["scp", "-q", *_ssh_options(target), *files, f"{where}:{remote_dir}/"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=COPY_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        return CheckOutcome.failed(STAGING, f"{where}: copying {archive.name} timed out")
    if copied.returncode != 0:
        return CheckOutcome.failed(
            STAGING, f"{where}: copying {archive.name} failed ({_last_line(copied.stderr)})"
        )
    remote_file = f"{remote_dir}/{archive.name}"
    command = f"{target.remote_command} test-restore --backup-file {shlex.quote(remote_file)}"
    try:
        ran = _ssh(target, command, RUN_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return CheckOutcome.failed(STAGING, f"{where}: test-restore did not finish in time")
    if ran.returncode == 0:
        return CheckOutcome.ok(
            STAGING, f"copied to {where} and test-restore passed there (every check)"
        )
    failed = _failed_checks(ran.stdout)
    if ran.returncode == 1 and failed:
        return CheckOutcome.failed(
            STAGING, f"test-restore on {where} failed: {'; '.join(failed[:3])}"
        )
    if ran.returncode == 127:
        return CheckOutcome.failed(
            STAGING, f"{where}: chatbot-backup is not installed there ({_last_line(ran.stderr)})"
        )
    return CheckOutcome.failed(
        STAGING, f"test-restore on {where} failed (exit {ran.returncode}): {_last_line(ran.stderr)}"
    )
