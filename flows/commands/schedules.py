"""`serve` and `schedule`: the retention tiers' deployments."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from flows.commands.common import count_arg


def add_commands(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run every scheduled tier (the retention tiers) from one long-running process"
    )
    # serve checks its settings itself, in its own order (settings, server, folders).
    serve.set_defaults(run=_run_serve, no_settings=True)
    schedule = commands.add_parser(
        "schedule", help="print the tier schedules with their next run times (no server needed)"
    )
    schedule.add_argument(
        "--count", type=count_arg, default=3, metavar="N", help="run times per tier (default: 3)"
    )
    schedule.set_defaults(run=_run_schedule, no_settings=True)


def _run_serve(args: argparse.Namespace) -> int:
    from prefect.logging.handlers import PrefectConsoleHandler

    from deployments.serve import serve_tiers

    # A long-running server logs what it runs (to the journal), unlike one-shot commands.
    for logger in [
        logging.getLogger(),
        *[logging.getLogger(n) for n in logging.root.manager.loggerDict],
    ]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.NOTSET)
    serve_tiers()
    return 0


def _run_schedule(args: argparse.Namespace) -> int:
    from deployments.timetable import print_schedule

    print_schedule(args.count)
    return 0
