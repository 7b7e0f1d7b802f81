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
import os
from pathlib import Path

from tasks.core.atomic import fsync_dir
from tasks.core.naming import meta_name, sidecar_name

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
