"""The names a restore gives its hidden entries, and how one is removed.

Shared by the swap (`tasks.restore.files`) and its journal's recovery
(`tasks.restore.journal`), below both, so that neither imports the other for them.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

REPLACED_MARKER = ".replaced-"
INCOMING_MARKER = ".incoming-"
STAGING_PREFIX = ".chatbot-restore-"


def is_restore_leftover(name: str) -> bool:
    """A hidden entry made by a restore: staging, incoming copy, or replaced copy."""
    return name.startswith(".") and (
        name.startswith(STAGING_PREFIX) or REPLACED_MARKER in name or INCOMING_MARKER in name
    )


def remove_entry(path: Path) -> None:
    """Delete a file, link or whole folder; one that is already gone is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
