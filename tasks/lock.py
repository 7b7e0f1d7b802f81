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

from tasks.atomic import FILE_MODE, ensure_private_dir, remove_stale_partials
from tasks.errors import LockError

LOCK_NAME = ".chatbot-backup.lock"


@contextlib.contextmanager
def backup_dir_lock(backup_dir: Path, job: str, timeout: float = 60.0) -> Iterator[None]:
    ensure_private_dir(backup_dir)
    path = backup_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise LockError(f"cannot open lock file {path}: {exc.strerror}") from None
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
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"{info.get('job', '?')}, pid {info.get('pid', '?')}"
    except (OSError, ValueError):
        return "unknown holder"
