"""`db-backup` and `backup-all`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from flows.commands.common import retention_days
from tasks.core.tiers import DEFAULT_TIER, TIERS, check_tier, one_of, tiers_of

if TYPE_CHECKING:
    from tasks.core.settings import Settings


def add_commands(commands: Any) -> None:
    db = commands.add_parser("db-backup", help="back up the admin database only")
    db.add_argument(
        "--retention-days",
        type=retention_days,
        default=None,
        metavar="N",
        help="delete backups of this kind and tier older than N days (newest 3 good ones "
        "always kept; default: RETENTION_DAYS, or the tier's)",
    )
    db.add_argument("--offsite", action="store_true", help="copy the backup to OFFSITE_DESTINATION")
    db.add_argument(
        "--tier",
        default=DEFAULT_TIER["db"],
        help=f"retention tier: {one_of(TIERS)} (default: {DEFAULT_TIER['db']})",
    )
    db.set_defaults(run=_run_db_backup, settings_check=_check_db_backup)

    full = commands.add_parser(
        "backup-all", help="back up database, uploads, configuration and data in one archive"
    )
    full.add_argument(
        "--retention-days",
        type=retention_days,
        default=None,
        metavar="N",
        help="delete full backups of this tier older than N days (newest 3 good ones always "
        "kept; default: RETENTION_DAYS, or the tier's)",
    )
    full.add_argument(
        "--offsite", action="store_true", help="copy the backup to OFFSITE_DESTINATION"
    )
    full.add_argument(
        "--tier",
        default=DEFAULT_TIER["full"],
        help=f"{one_of(tiers_of('full'))} (default: {DEFAULT_TIER['full']})",
    )
    full.set_defaults(run=_run_backup_all, settings_check=_check_backup_all)


def _check_db_backup(args: argparse.Namespace, settings: Settings) -> None:
    _check_backup(args, settings, TIERS)


def _check_backup_all(args: argparse.Namespace, settings: Settings) -> None:
    _check_backup(args, settings, tiers_of("full"))


def _check_backup(args: argparse.Namespace, settings: Settings, tiers: tuple[str, ...]) -> None:
    """What the flow would find wrong only after Prefect had started (20-50 s, with its
    retries and a failure alert): a tier that does not exist, a missing SQLite file, an
    off-site destination that cannot be (parsed, not connected)."""
    from tasks.sources.sqlite import SqliteSource

    check_tier(args.tier, tiers)
    if settings.db_type == "sqlite":
        SqliteSource(settings.db_path, settings.backups).check()
    if args.offsite:
        from tasks.storage.destination import open_destinations

        open_destinations(settings)


def _run_db_backup(args: argparse.Namespace) -> int:
    from flows import db_backup

    result = db_backup(retention_days=args.retention_days, offsite=args.offsite, tier=args.tier)
    print("\n".join(result.summary_lines()))
    return 0


def _run_backup_all(args: argparse.Namespace) -> int:
    from flows import backup_all

    result = backup_all(retention_days=args.retention_days, offsite=args.offsite, tier=args.tier)
    print("\n".join(result.summary_lines()))
    return 0
