"""The error hierarchy: one root, a few domains, each with a stable exit code.

Messages are written for the operator: what failed, and what to do about it. They never
carry a secret; code that builds them from external text passes it through
`tasks.core.redact.redact` first.
"""

from __future__ import annotations

from pathlib import Path


class BackupError(Exception):
    """Root of every error the product reports on purpose.

    `transient` marks a failure that a retry may cure (a busy database, a dropped
    connection); only those are retried.
    """

    exit_code = 1

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ConfigError(BackupError):
    """A setting is missing or wrong; nothing was done."""

    exit_code = 3


class SourceError(BackupError):
    """The database or a data folder could not be read or written."""

    exit_code = 4


class LockError(BackupError):
    """Another backup job holds the backup folder."""

    exit_code = 5


class VerifyError(BackupError):
    """A backup is unreadable, truncated, or does not match its checksum or manifest."""

    exit_code = 6


class RestoreError(BackupError):
    """A restore failed; the live data was left as it was."""

    exit_code = 7


class AbortedByOperator(BackupError):
    """The operator did not confirm a destructive action."""

    exit_code = 1


class DestinationError(BackupError):
    """The backup folder or an off-site destination could not be written or read."""

    exit_code = 8


class OutOfSpaceError(DestinationError):
    """A folder the tool writes to is full (ENOSPC, quota); `folder` names it."""

    def __init__(self, message: str, folder: Path) -> None:
        super().__init__(message)
        self.folder = folder


class ScratchSpaceError(BackupError):
    """Temporary space (TMPDIR) ran out or failed: a manifest's on-disk index, a spool."""

    exit_code = 1
