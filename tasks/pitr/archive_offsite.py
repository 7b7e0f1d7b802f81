"""wal-push to the off-site destinations (WAL_PUSH_OFFSITE=true), through the storage layer.

Each destination of OFFSITE_DESTINATION (comma-separated) gets the archived file under
its `wal/` folder — `s3://bucket/prefix/wal/000000010000000000000003.gz` — by the same
verified copy every backup gets (`tasks.offsite.copy.copy_backup`: an identical copy is not
sent again, the upload is read back and compared, its sidecar is written last, and it is
age-encrypted when BACKUP_ENCRYPTION_RECIPIENTS is set). The local archive copy is made
first and stays; a destination that fails makes the push fail, so PostgreSQL keeps the
segment and pushes it again (the local copy is then found identical, and only the
missing off-site copies are made).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.core.errors import BackupError, ConfigError, DestinationError
from tasks.core.redact import redact
from tasks.offsite.copy import OffsiteCopy, copy_backup
from tasks.offsite.encryption import encryption_from_settings
from tasks.offsite.remote import policy_from_settings, staging_dir
from tasks.storage.destination import Destination, open_destination

if TYPE_CHECKING:
    from tasks.core.settings import Settings

WAL_FOLDER = "wal"
# PostgreSQL retries a failed archive_command by itself; a push should not hold the
# archiver for the backups' whole five-minute retry window.
WAL_RETRY_WINDOW_SECONDS = 60.0


def destination_texts(settings: Settings) -> list[str]:
    texts = [t.strip() for t in (settings.offsite_destination or "").split(",") if t.strip()]
    if not texts:
        raise ConfigError("WAL_PUSH_OFFSITE=true needs OFFSITE_DESTINATION")
    return texts


def wal_destination(settings: Settings, text: str) -> Destination:
    """The `wal/` folder of one off-site destination."""
    return open_destination(settings, text.rstrip("/") + "/" + WAL_FOLDER)


def push_offsite(settings: Settings, archived: Path) -> list[OffsiteCopy]:
    """Copy one archived WAL file (and its sidecar) to every off-site destination."""
    destinations = [wal_destination(settings, text) for text in destination_texts(settings)]
    encryption = encryption_from_settings(settings)
    policy = policy_from_settings(settings)
    policy = replace(policy, window_seconds=min(policy.window_seconds, WAL_RETRY_WINDOW_SECONDS))
    staging = staging_dir(archived.parent)
    copies: list[OffsiteCopy] = []
    failures: list[str] = []
    for dest in destinations:
        try:
            copies.append(
                copy_backup(dest, archived, policy=policy, staging=staging, encryption=encryption)
            )
        except BackupError as exc:
            failures.append(f"{dest.display}: {redact(str(exc))}")
    if failures:
        raise DestinationError(
            f"off-site copy of {archived.name} failed ({'; '.join(failures)}); the local "
            "archive copy is kept and PostgreSQL will push the file again"
        )
    return copies
