"""What both restores do before they touch anything: settings, fetch, confirm.

`db-restore` and `restore-all` share this preamble: load the settings, fetch a remote
backup (`s3://...`, `user@host:/...`: downloaded, verified, decrypted) or find the local
one, then ask for (or check) the operator's confirmation. The flow then takes the
backup folder's lock (`flows.locking.job_lock`) and restores.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from flows.catalog import choose_backup, restore_kind, wants_choice
from flows.offsite_flow import fetch_for_restore
from flows.reporting import run_logger
from flows.restore_confirm import require_confirmation
from tasks.catalog.listing import parse_as_of
from tasks.core.settings import Settings, load_settings
from tasks.restore.source import resolve_backup_file
from tasks.storage.destination import is_remote_url
from tasks.stream.allocator import share_one_arena


@dataclass(frozen=True)
class RestoreStart:
    settings: Settings
    path: Path  # the local file to restore (fetched into BACKUP_DIR when remote)
    shown_as: str  # what the result names as the backup: the URL, or the local path
    confirmed_by: str
    started: float
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger]


def chosen_backup(settings: Settings, job: str, backup_file: str | None, as_of: str | None) -> str:
    """The backup a restore restores: `backup_file` as given, or (empty, `latest`, or an
    `as_of` time) the newest good backup of the job's kind at or before that time, local
    first, then off-site (flows.catalog.choose_backup)."""
    if not as_of and not wants_choice(backup_file):
        assert backup_file is not None
        return backup_file
    entry = choose_backup(
        settings,
        restore_kind(job),
        parse_as_of(as_of) if as_of else None,
        db_type=settings.db_type if restore_kind(job) == "db" else None,
    )
    how = f"made at or before {as_of} UTC" if as_of else "the newest"
    run_logger().info("%s: chose %s (%s, %s)", job, entry.name, how, entry.location)
    return entry.source


def start_restore(
    backup_file: str, confirm: bool, job: str, full: bool, as_of: str | None = None
) -> RestoreStart:
    """Settings, the backup file, the confirmation; AbortedByOperator when not confirmed."""
    started = time.monotonic()
    share_one_arena()  # a deployment's run (the CLI did it first thing): peak memory
    settings = load_settings()
    backup_file = chosen_backup(settings, job, backup_file, as_of)
    remote = is_remote_url(backup_file)
    if remote:
        path = fetch_for_restore(backup_file, settings)
    else:
        path = resolve_backup_file(backup_file, settings.backups)
    confirmed_by = require_confirmation(confirm, job, path.name, full=full)
    return RestoreStart(
        settings=settings,
        path=path,
        shown_as=backup_file if remote else str(path),
        confirmed_by=confirmed_by,
        started=started,
        logger=run_logger(),
    )
