"""Generate `prefect.yaml` from the tier table, so `prefect deploy --all` cannot drift.

    python -m deployments.render_prefect_yaml              # rewrite ./prefect.yaml
    python -m deployments.render_prefect_yaml --check      # exit 1 if it differs
    python -m deployments.render_prefect_yaml --timezone Europe/Berlin
    python -m deployments.render_prefect_yaml --pitr       # with base-backup/weekly

The committed file is rendered for UTC; an operator whose BACKUP_TIMEZONE differs
renders it again with `--timezone` (the default is BACKUP_TIMEZONE, else UTC) before
running `prefect deploy --all`. The deployments it describes are the ones
`chatbot-backup serve` builds (deployments.build): same names, entrypoints, cron,
parameters, concurrency limit and tags.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from deployments.build import check_timezone
from deployments.tiers import (
    COLLISION_STRATEGY,
    CONCURRENCY_LIMIT,
    ON_DEMAND,
    WORK_POOL,
    Tier,
    tier_table,
)
from tasks.core.errors import ConfigError

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "prefect.yaml"

HEADER = """\
# Generated from deployments/tiers.py by `python -m deployments.render_prefect_yaml`.
# Do not edit by hand: change the tier table and render again (a test checks the two agree).
#
# For operators who run Prefect workers instead of `chatbot-backup serve`:
#   prefect work-pool create {pool} --type process
#   prefect deploy --all --prefect-file prefect.yaml
#   APP_ROOT=/var/www/chatbot prefect worker start --pool {pool}
# Flow runs read their settings from $APP_ROOT/.env and the worker's environment, as the
# CLI does, so the worker needs APP_ROOT (the pull step below also runs the flow there).
# Schedules are in {timezone}; render with --timezone for another BACKUP_TIMEZONE.
"""


PITR_NOTE = """\
# Without point-in-time recovery; with PITR_ENABLED=true render with --pitr to add
# base-backup/weekly (SPEC: Schedules).
"""


def deployment_entry(tier: Tier, timezone: str) -> dict[str, Any]:
    return {
        "name": tier.deployment,
        "entrypoint": tier.entrypoint,
        "description": tier.description,
        "tags": tier.tags,
        "parameters": tier.parameters,
        "schedules": [{"cron": tier.cron, "timezone": timezone}] if tier.cron else [],
        "concurrency_limit": {
            "limit": CONCURRENCY_LIMIT,
            "collision_strategy": COLLISION_STRATEGY,
        },
        "work_pool": {"name": WORK_POOL, "work_queue_name": None, "job_variables": {}},
    }


def render(timezone: str = "UTC", pitr: bool = False) -> str:
    timezone = check_timezone(timezone)
    document: dict[str, Any] = {
        "name": "chatbot-backup",
        "prefect-version": "3.9",
        "build": None,
        "push": None,
        "pull": [
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $APP_ROOT }}"}}
        ],
        "deployments": [
            deployment_entry(tier, timezone) for tier in (*tier_table(pitr), *ON_DEMAND)
        ],
    }
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    header = HEADER.format(pool=WORK_POOL, timezone=timezone)
    if not pitr:
        header += PITR_NOTE
    return header + "\n" + body


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.render_prefect_yaml", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--timezone",
        default=os.environ.get("BACKUP_TIMEZONE") or "UTC",
        help="timezone of the schedules (default: BACKUP_TIMEZONE, else UTC)",
    )
    parser.add_argument(
        "--pitr",
        action="store_true",
        default=os.environ.get("PITR_ENABLED", "").strip().lower() in ("1", "true", "yes", "on"),
        help="add base-backup/weekly (default: when PITR_ENABLED=true)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_PATH, metavar="PATH")
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 when PATH differs"
    )
    args = parser.parse_args(argv)
    try:
        text = render(args.timezone, args.pitr)
    except ConfigError as exc:
        print(f"render_prefect_yaml: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.check:
        try:
            current = args.output.read_text()
        except OSError as exc:
            print(
                f"render_prefect_yaml: cannot read {args.output}: {exc.strerror}", file=sys.stderr
            )
            return 1
        if current != text:
            print(
                f"render_prefect_yaml: {args.output} differs from deployments/tiers.py; "
                "run `python -m deployments.render_prefect_yaml` and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{args.output} matches the tier table")
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
