"""One backup job at a time per backup folder.

An advisory `flock` on `BACKUP_DIR/.chatbot-backup.lock`: the kernel drops it when the
holder exits, however it exits, so a lock left by a killed process never blocks the next
run. A second job waits up to `timeout` seconds, then fails naming the holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from tasks.atomic import FILE_MODE, ensure_private_dir, partial_path, remove_stale_partials
from tasks.errors import DestinationError, LockError

LOCK_NAME = ".chatbot-backup.lock"


@contextlib.contextmanager
def backup_dir_lock(
    backup_dir: Path, job: str, timeout: float = 60.0, must_write: bool = False
) -> Iterator[None]:
    """Hold the folder's lock; with `must_write`, first prove a file can be created there."""
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
                        f"another backup job holds {backup_dir} ({_holder(path)}); "
                        f"waited {timeout:g} s — try again when it has finished"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        holder = {
            "job": job,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.time(),
        }
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        # Holding the lock, nobody else is writing here: leftovers are from killed runs.
        remove_stale_partials(backup_dir)
        # ... and a restore-all killed mid-swap is rolled back or finished before any
        # job reads or writes the live data (tasks/restore_journal.py).
        from tasks.restore_journal import recover_interrupted

        recover_interrupted(backup_dir)
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


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"{info.get('job', '?')}, pid {info.get('pid', '?')}"
    except (OSError, ValueError):
        return "unknown holder"
