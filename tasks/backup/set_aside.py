"""A new backup whose verification failed, set aside where nothing counts it.

The write renames a finished file to its final name; the verification then reads it back.
A read-back that failed (a byte changed on the disk, a member that does not inflate, a
wrong sidecar) used to fail the run but leave the file in place — with a sidecar that
matches its bytes and a meta that matches the sidecar. The cheap "good backup" test
(tasks/catalog/good_backup.py) reads only those and the file's head, so the next rotation
could count it among the newest good ones it keeps and delete an older, sound backup, and
"latest" could choose it to restore. Its bytes are kept for the operator to look at, under
names no backup pattern matches: `NAME.unverified`, `NAME.unverified.sha256`,
`NAME.unverified.meta.json`. The archive moves first: from that rename on it is no backup.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from tasks.core.atomic import fsync_dir
from tasks.core.errors import VerifyError
from tasks.core.naming import meta_name, sidecar_name

log = logging.getLogger("chatbot_backup")

UNVERIFIED_SUFFIX = ".unverified"


def set_aside(path: Path) -> Path:
    """Rename `path` (and its sidecar and meta, when there) out of every backup pattern."""
    aside = path.with_name(path.name + UNVERIFIED_SUFFIX)
    os.replace(path, aside)
    for name_of in (sidecar_name, meta_name):
        with contextlib.suppress(FileNotFoundError):
            os.replace(path.with_name(name_of(path.name)), aside.with_name(name_of(aside.name)))
    fsync_dir(path.parent)
    return aside


def set_aside_unproven(
    path: Path, exc: BaseException, what: str = "the new backup"
) -> BaseException:
    """Set aside `path`, whose verification raised `exc`; the error to raise instead.

    Whatever stopped the proof — a failed check, the disk failing the read-back, a
    cancelled run — the file under its final name would count as a good one. A failed
    check or read becomes a VerifyError (exit 6) naming where the file went; anything
    else (a cancellation, a database that went away) is returned as it was, the
    set-aside logged."""
    reason = str(exc)
    if isinstance(exc, OSError):
        reason = f"{path.name}: could not be read back ({exc.strerror or exc})"
    checked = isinstance(exc, (VerifyError, OSError))
    try:
        aside = set_aside(path)
    except OSError as aside_error:
        if not checked:
            return exc
        return VerifyError(f"{reason}; and it could not be set aside: {aside_error}")
    if not checked:
        log.error("%s was not verified; set aside as %s", path.name, aside.name)
        return exc
    return VerifyError(f"{reason}; {what} was set aside as {aside.name}, not counted as a backup")
