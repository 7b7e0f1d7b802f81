"""The parts every off-site helper shares: remote names, sidecar lines, retries, staging.

Layout at the destination folder, for a backup NAME:
- `NAME` (or `NAME.age` when client-side encryption is on): the data;
- `REMOTE.meta.json`: the local `.meta.json` (tier, kind, ...) plus an `offsite` record
  (the local backup's sha256 and size, the remote bytes' sha256 and size, encryption);
  for an encrypted copy only the tier, kind and `offsite` record stay readable there and
  the whole local `.meta.json` (tables, row counts) travels as `REMOTE.meta.json.age`;
- `REMOTE.sha256`: `sha256sum` format for the remote bytes, written LAST, after the
  remote copy was read back and matched: it is the commit marker. A data object without
  it is an unfinished copy — never counted as a backup, uploaded again by the next sync.
- `.offsite-verify.json`: when each copy was last read back by `offsite-verify`, and
  with what outcome (tasks.offsite.verify).

Every network step runs through `tasks.core.backoff.retry_call` with the destination's
`is_transient`; the connection is dropped and remade between attempts.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tasks.core.atomic import ensure_private_dir
from tasks.core.backoff import RetriesExhausted, RetryPolicy, retry_call
from tasks.core.errors import BackupError, DestinationError
from tasks.core.naming import META_SUFFIX, SIDECAR_SUFFIX, BackupName, parse_backup_name
from tasks.core.redact import redact
from tasks.offsite.encryption import AGE_SUFFIX
from tasks.storage.destination import Destination

if TYPE_CHECKING:
    from tasks.core.settings import Settings

T = TypeVar("T")
Log = Callable[[str], None]

STAGING_DIR = ".offsite-staging"
# A hidden partial left by a killed upload (local and SSH destinations) is removed by
# a later prune once it is clearly abandoned.
STALE_PARTIAL_AGE = timedelta(hours=24)
# The encrypted whole `.meta.json` of an encrypted copy.
SEALED_META_SUFFIX = META_SUFFIX + AGE_SUFFIX
# Every file that belongs to a remote copy NAME besides NAME itself.
COMPANION_SUFFIXES = (SIDECAR_SUFFIX, SEALED_META_SUFFIX, META_SUFFIX)


# --------------------------------------------------------------------------- names


def remote_name_for(name: str, encrypted: bool) -> str:
    return name + AGE_SUFFIX if encrypted else name


def backup_name_of(remote_name: str) -> BackupName | None:
    """The backup a remote data object holds (`NAME` or `NAME.age`), or None."""
    plain = remote_name[: -len(AGE_SUFFIX)] if remote_name.endswith(AGE_SUFFIX) else remote_name
    return parse_backup_name(plain)


def sidecar_line(sha256: str, name: str) -> bytes:
    return f"{sha256}  {name}\n".encode()


def parse_sidecar_text(text: str, name: str) -> str | None:
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[1].lstrip("*") == name:
            digest = parts[0].lower()
            if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
                return digest
    return None


# --------------------------------------------------------------------------- retries


def policy_from_settings(settings: Settings) -> RetryPolicy:
    window = float(settings.offsite_retry_seconds)
    return RetryPolicy(window_seconds=window, first_delay=min(1.0, window / 4), max_delay=30.0)


def describe_error(exc: BaseException, dest: Destination) -> str:
    """One line for the operator, without secrets."""
    if isinstance(exc, RetriesExhausted):
        return (
            f"gave up after {exc.attempts} attempts over {exc.seconds:.0f} s "
            f"({describe_error(exc.last, dest)})"
        )
    if isinstance(exc, BackupError):
        return redact(str(exc))
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and dest.commit == "direct":
        noun = "container" if dest.scheme == "az" else "bucket"
        bucket = dest.options.get("bucket", "?")
        text = f"{noun} {bucket!r} or object not found — does the {noun} exist? ({text})"
    elif isinstance(exc, PermissionError):
        text = f"access denied — check the credentials and their permissions ({text})"
    return redact(f"{type(exc).__name__}: {text}"[:400])


def remote_call(
    dest: Destination,
    what: str,
    operation: Callable[[], T],
    policy: RetryPolicy,
    log: Log | None = None,
) -> tuple[T, int]:
    """Run one network step with retries; any failure becomes a DestinationError."""

    def before_retry(attempt: int, delay: float, exc: BaseException) -> None:
        dest.reset()  # a dropped SSH connection or a dead pool is not reused
        if log is not None:
            log(
                f"{what}: attempt {attempt} failed ({describe_error(exc, dest)}); "
                f"retrying in {delay:.0f} s"
            )

    try:
        return retry_call(operation, policy, dest.is_transient, before_retry)
    except BackupError:
        raise
    except RetriesExhausted as exc:
        raise DestinationError(f"{what}: {describe_error(exc, dest)}", transient=True) from exc
    except Exception as exc:
        raise DestinationError(f"{what}: {describe_error(exc, dest)}") from exc


# --------------------------------------------------------------------------- staging


def staging_dir(backups: Path) -> Path:
    """`BACKUP_DIR/.offsite-staging` (0700): encrypted copies wait here while they upload.

    Next to the backups because that disk has room for them (a tmpfs /tmp may not).
    Files of runs that are no longer alive are removed on the way.
    """
    ensure_private_dir(backups)
    folder = ensure_private_dir(backups / STAGING_DIR)
    for entry in folder.iterdir():
        pid_text = entry.name.split("-", 1)[0]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            with contextlib.suppress(OSError):
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staging_path(folder: Path, name: str) -> Path:
    return folder / f"{os.getpid()}-{secrets.token_hex(4)}-{name}"


# --------------------------------------------------------------------------- reading


def read_remote_text(dest: Destination, name: str) -> str | None:
    try:
        return dest.read_bytes(name).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None


def read_remote_meta(dest: Destination, remote_name: str) -> dict[str, Any]:
    text = read_remote_text(dest, remote_name + META_SUFFIX)
    if text is None:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
