"""`automations`: the Prefect Automations and notification blocks over the jobs' events."""

from __future__ import annotations

import argparse
from typing import Any

from flows.commands.common import PROG


def add_commands(commands: Any) -> None:
    automations = commands.add_parser(
        "automations",
        help="create or update (idempotently) the Prefect Automations over the jobs' events",
        description=(
            "Creates, on the Prefect server at PREFECT_API_URL, the automations named "
            "'chatbot-backup: ...': one per kind of backup that runs monitor-backups/hourly "
            "and notifies when no backup of that kind completed within MONITOR_MAX_AGE_HOURS, "
            "and one that runs test-restore/on-demand on every backup a scheduled tier made. "
            "Notification blocks chatbot-backup-slack / chatbot-backup-webhook are made from "
            "ALERT_SLACK_WEBHOOK / ALERT_WEBHOOK. Run again after changing those settings; a "
            "paused automation stays paused. `serve` runs this at start. Reads: "
            "PREFECT_API_URL, MONITOR_MAX_AGE_HOURS, ALERT_SLACK_WEBHOOK, ALERT_WEBHOOK, "
            "ALERT_TIMEOUT."
        ),
    )
    automations.add_argument(
        "--remove",
        action="store_true",
        help="delete every 'chatbot-backup: ' automation instead (nothing else is touched)",
    )
    automations.set_defaults(run=_run_automations)


def _run_automations(args: argparse.Namespace) -> int:
    from deployments.serve import require_api_url
    from flows.automations import remove_automations, set_up_automations
    from tasks.core.errors import ConfigError
    from tasks.core.settings import load_settings

    settings = load_settings(check_folders=False)
    try:
        require_api_url()
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("serve:", "automations:", 1)) from None
    if args.remove:
        for name in remove_automations():
            print(f"{PROG}: automations: removed: {name}")
        return 0
    report = set_up_automations(settings)
    for line in report.lines():
        print(f"{PROG}: automations: {line}")
    return 0
