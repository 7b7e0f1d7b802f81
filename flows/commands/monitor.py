"""`monitor`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flows.commands.common import PROG


def add_commands(commands: Any) -> None:
    monitor = commands.add_parser(
        "monitor", help="check backup health; exit 0 all passed, 1 warnings, 2 critical"
    )
    monitor.set_defaults(run=_run_monitor)


def _run_monitor(args: argparse.Namespace) -> int:
    from flows import monitor_backups

    result = monitor_backups()
    print("\n".join(result.summary_lines()))
    if result.exit_code != 0:
        rank = {"critical": 0, "warning": 1}
        problems = sorted(
            (f for f in result.findings if f.severity in rank), key=lambda f: rank[f.severity]
        )
        first = f"; first: {problems[0].name}: {problems[0].reason}" if problems else ""
        print(
            f"{PROG}: monitor: {result.status.upper()}: {len(problems)} check(s) "
            f"found problems{first}",
            file=sys.stderr,
        )
    return result.exit_code
