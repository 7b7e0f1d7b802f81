"""`list`: every backup, local and off-site, newest first."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(commands: Any) -> None:
    listing = commands.add_parser(
        "list",
        help="list the backups, newest first (name, kind, tier, created, size, where)",
        description=(
            "List every backup in BACKUP_DIR (and at OFFSITE_DESTINATION with --offsite), "
            "newest first: name, kind, tier, created (UTC), size and where it is "
            "(local, offsite, both). Only good backups unless --all.\n\n"
            "reads: BACKUP_DIR, OFFSITE_DESTINATION and the cloud credentials of its SDK."
        ),
    )
    listing.add_argument(
        "--kind",
        default="all",
        metavar="KIND",
        help="db, full, base or all (default: all)",
    )
    listing.add_argument(
        "--offsite", action="store_true", help="also list the copies at OFFSITE_DESTINATION"
    )
    listing.add_argument(
        "--json",
        action="store_true",
        help="print a JSON array of {name, kind, tier, created, size, sha256, location}",
    )
    listing.add_argument(
        "--all",
        dest="include_all",
        action="store_true",
        help="also list files named like backups that fail the good-backup test, with why",
    )
    listing.set_defaults(run=_run_list, precheck=_precheck)


def _precheck(args: argparse.Namespace) -> None:
    from flows.list_backups_flow import check_kind
    from tasks.core.settings import load_settings

    check_kind(args.kind)
    settings = load_settings(check_folders=False)
    if args.offsite:
        from tasks.storage.destination import open_destination

        open_destination(settings)  # OFFSITE_DESTINATION unset or malformed: say so now


def _run_list(args: argparse.Namespace) -> int:
    from flows.list_backups_flow import list_backups

    result = list_backups(kind=args.kind, offsite=args.offsite, include_all=args.include_all)
    print(result.json_text() if args.json else "\n".join(result.lines()))
    return 0
