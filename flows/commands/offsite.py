"""`offsite-sync`, `offsite-setup` and `offsite-verify`."""

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

    verify = commands.add_parser(
        "offsite-verify",
        help="re-read off-site copies and check each against its sha256 sidecar",
        description=(
            "Read remote copies back at every OFFSITE_DESTINATION and compare each with its "
            "sidecar, the copies verified longest ago first; the outcome is kept beside them "
            "(.offsite-verify.json) for the monitor. Exit 0 only when every copy read matches. "
            "\n\nreads: OFFSITE_DESTINATION, OFFSITE_RETRY_SECONDS and the SDKs' credentials."
        ),
    )
    verify.add_argument(
        "--sample",
        type=_positive,
        default=None,
        metavar="N",
        help="read only N copies per destination (the longest unverified first); default all",
    )
    verify.set_defaults(run=_run_offsite_verify)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _run_offsite_sync(args: argparse.Namespace) -> int:
    from flows.offsite_flow import offsite_sync

    result = offsite_sync(verify=args.verify)
    print("\n".join(result.summary_lines()))
    return 0


def _run_offsite_setup(args: argparse.Namespace) -> int:
    from flows.offsite_setup_flow import offsite_setup

    result = offsite_setup(glacier_days=args.glacier_days, expire_days=args.expire_days)
    print("\n".join(result.summary_lines()))
    return 0


def _run_offsite_verify(args: argparse.Namespace) -> int:
    from flows.offsite_verify_flow import offsite_verify

    result = offsite_verify(sample=args.sample)
    print("\n".join(result.summary_lines()))
    return 0
