"""`offsite-sync` and `offsite-setup`."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(commands: Any) -> None:
    sync = commands.add_parser(
        "offsite-sync", help="copy every local backup missing off-site, then off-site retention"
    )
    sync.add_argument(
        "--verify", action="store_true", help="also read every off-site copy back and check it"
    )
    sync.set_defaults(run=_run_offsite_sync)

    setup = commands.add_parser(
        "offsite-setup", help="apply the S3 lifecycle policy (Glacier, then expiry) to the bucket"
    )
    setup.add_argument(
        "--glacier-days",
        type=int,
        default=None,
        metavar="N",
        help="move objects to Glacier after N days (default: OFFSITE_GLACIER_DAYS)",
    )
    setup.add_argument(
        "--expire-days",
        type=int,
        default=None,
        metavar="N",
        help="delete objects after N days (default: OFFSITE_EXPIRE_DAYS)",
    )
    setup.set_defaults(run=_run_offsite_setup)


def _run_offsite_sync(args: argparse.Namespace) -> int:
    from flows.offsite_flow import offsite_sync

    result = offsite_sync(verify=args.verify)
    print("\n".join(result.summary_lines()))
    return 0


def _run_offsite_setup(args: argparse.Namespace) -> int:
    from flows.offsite_flow import offsite_setup

    result = offsite_setup(glacier_days=args.glacier_days, expire_days=args.expire_days)
    print("\n".join(result.summary_lines()))
    return 0
