"""One backup job at a time per backup folder.

An advisory `flock` on `BACKUP_DIR/.chatbot-backup.lock`: the kernel drops it when the
holder exits, however it exits, so a lock left by a killed process never blocks the next
run. A second job — a backup or a restore alike — waits up to `timeout` seconds, then
fails naming the holder: its job, pid, host and since when it holds the folder.

Once the lock is held, `on_acquired(backup_dir)` runs before the job does anything:
the flows pass restore-all's crash recovery there (`flows.locking.job_lock`), so this
ground-floor module needs nothing from the restore wing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from tasks.core.atomic import FILE_MODE, ensure_private_dir, partial_path, remove_stale_partials
from tasks.core.errors import DestinationError, LockError

LOCK_NAME = ".chatbot-backup.lock"


@contextlib.contextmanager
def backup_dir_lock(
    backup_dir: Path,
    job: str,
    timeout: float = 60.0,
    must_write: bool = False,
    on_acquired: Callable[[Path], object] | None = None,
) -> Iterator[None]:
    """Hold the folder's lock; with `must_write`, first prove a file can be created there.

    `on_acquired` runs as soon as the lock is held (restore-all's recovery, from the flows).
    """
    try:
        ensure_private_dir(backup_dir)
    except OSError as exc:
        raise _not_writable(backup_dir, exc) from None
    path = backup_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise _not_writable(backup_dir, exc) from None
    try:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockError(
                        f"another backup job holds {backup_dir} ({describe_holder(path)}); "
                        f"{job} waited {timeout:g} s and changed nothing — try again when "
                        "it has finished"
                    ) from None
                time.sleep(0.2)
        holder = {
            "job": job,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.time(),
        }
        record = json.dumps(holder).encode()
        # Written over the old record, then cut to length: a reader never sees an empty file.
        os.pwrite(fd, record, 0)
        os.ftruncate(fd, len(record))
        # Holding the lock, nobody else is writing here: leftovers are from killed runs.
        remove_stale_partials(backup_dir)
        # ... and (the flows' callback) a restore-all killed mid-swap is rolled back or
        # finished before any job reads or writes the live data (tasks/restore/journal.py).
        if on_acquired is not None:
            on_acquired(backup_dir)
        if must_write:
            check_writable(backup_dir)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def check_writable(folder: Path) -> None:
    """Create and remove a hidden partial file, so an unwritable folder fails before any work.

    Root ignores permission bits, so `os.access` cannot tell; a read-only mount or an
    immutable folder only shows itself when a file is created. The probe carries the
    partial marker: one left by a killed run is cleaned like any other partial file.
    """
    probe = partial_path(folder / "write-probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        probe.unlink()
    except OSError as exc:
        raise _not_writable(folder, exc) from None


def _not_writable(folder: Path, exc: OSError) -> DestinationError:
    reason = exc.strerror or type(exc).__name__
    return DestinationError(
        f"backup folder {folder} cannot be written ({reason}); "
        "check BACKUP_DIR, its permissions and its mount"
    )


def describe_holder(path: Path, now: float | None = None) -> str:
    """'backup-all, pid 4242 on host web1, since 2026-03-15 02:00:03 UTC (12 s ago)'."""
    try:
        text = path.read_text(errors="replace").strip()
        # The first JSON object: the tail of an older, longer record may follow it briefly.
        info, _ = json.JSONDecoder().raw_decode(text) if text else ({}, 0)
    except (OSError, ValueError):
        return "holder unknown: its lock record cannot be read"
    if not isinstance(info, dict) or not info:
        return "holder unknown: it has not written its lock record yet"
    parts = [f"{info.get('job', '?')}, pid {info.get('pid', '?')} on host {info.get('host', '?')}"]
    since = info.get("since")
    if isinstance(since, (int, float)):
        moment = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        held = max((now if now is not None else time.time()) - since, 0.0)
        parts.append(f"since {moment} ({_duration(held)} ago)")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
