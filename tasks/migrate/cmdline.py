"""Keeping a password given on the command line out of `ps`.

`ps` and /proc/PID/cmdline show every process's arguments to every user. When the
operator writes the password into `--target-url`, the CLI calls `hide_in_cmdline` before
anything slow is imported: it overwrites the password's bytes in this process's own
argument area (the memory /proc/self/cmdline reads) with `*`, as setproctitle does.
Until then — the interpreter's start, a few tens of milliseconds — it is visible; the
way to avoid even that is to leave the password out of the argument (PGPASSWORD,
~/.pgpass, or MIGRATE_TARGET_DATABASE_URL in `.env` or the environment).
"""

from __future__ import annotations

import contextlib
import ctypes
from urllib.parse import quote, unquote

from psycopg.conninfo import conninfo_to_dict


def url_password(url: str) -> str | None:
    with contextlib.suppress(Exception):
        password = conninfo_to_dict(url).get("password")
        return str(password) if password else None
    return None


def _forms(secret: str) -> list[bytes]:
    found = {secret, quote(secret, safe=""), quote(secret), unquote(secret)}
    return sorted((f.encode() for f in found if len(f) >= 1), key=len, reverse=True)


def _argument_area() -> tuple[int, int] | None:
    try:
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is field 3 of proc(5); arg_start and arg_end are fields 48 and 49
    if len(fields) < 47:
        return None
    return int(fields[45]), int(fields[46])


def hide_in_cmdline(url: str | None) -> bool:
    """Overwrite the password of `url` (raw and URL-encoded forms) wherever the URL
    appears in this process's arguments. True when /proc/self/cmdline no longer shows it."""
    secret = url_password(url) if url else None
    if not url or not secret:
        return True
    area = _argument_area()
    if area is None:
        return False
    start, end = area
    if end <= start:
        return False
    raw = ctypes.string_at(start, end - start)
    target = url.encode()
    hidden = bytearray(raw)
    at = raw.find(target)
    while at >= 0:
        span = bytes(hidden[at : at + len(target)])
        for form in _forms(secret):
            span = span.replace(form, b"*" * len(form))
        hidden[at : at + len(target)] = span
        at = raw.find(target, at + len(target))
    if bytes(hidden) != raw:
        ctypes.memmove(start, bytes(hidden), len(hidden))
    try:
        with open("/proc/self/cmdline", "rb") as handle:
            shown = handle.read()
    except OSError:
        return False
    return not any(form in shown for form in _forms(secret) if len(form) >= 3)
