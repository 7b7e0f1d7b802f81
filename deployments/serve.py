"""`chatbot-backup serve`: every tier deployment, served from one long-running process.

Missed runs. Prefect 3 has no "catchup" switch: while nothing serves a deployment, the
server keeps its scheduled runs, marks them Late, and a runner that comes back submits
every one of them. A backup tier is not a queue of work items, though: after three days
down, an operator expects one catch-up backup per tier, not twelve db-backups in a row.
So, before serving, each deployment's runs that were due while nobody served them are
reduced to the newest one; the older ones are cancelled with a message saying why. Runs
that fall due while `serve` is up but the server is unreachable are caught by the
deployment concurrency limit (one run, collisions cancelled; see `deployments.tiers`).

Deployment schedules are left active when `serve` stops (Prefect pauses them by default):
a stopped `serve` then shows up as Late runs in the UI and as an old latest backup in the
monitor, and the one catch-up happens when it is started again.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import httpx

from deployments.build import build_deployments, check_timezone
from deployments.tiers import ON_DEMAND, tier_table
from tasks.core.errors import BackupError, ConfigError
from tasks.core.folder_rules import check_folder_rules
from tasks.core.settings import load_settings
from tasks.core.tiers import TIER_TABLE, Tier

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

# Runs that already asked for a deployment concurrency slot are Prefect's to manage.
_AWAITING_SLOT = "AwaitingConcurrencySlot"
_PAGE = 200


@dataclass
class MissedRuns:
    """What the sweep did, per deployment (`flow/deployment` name)."""

    kept: dict[str, datetime] = field(default_factory=dict)  # the one catch-up run, when due
    cancelled: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def lines(self) -> list[str]:
        out = []
        for name, due in sorted(self.kept.items()):
            skipped = self.cancelled.get(name, 0)
            out.append(
                f"{name}: {skipped + 1} run(s) missed while nothing served it; one catch-up "
                f"run (due {due.astimezone(UTC):%Y-%m-%d %H:%M} UTC) kept, {skipped} cancelled"
            )
        return out


def _overdue_runs(
    client: SyncPrefectClient, deployment_ids: list[UUID], now: datetime
) -> list[Any]:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterNextScheduledStartTime,
        FlowRunFilterState,
        FlowRunFilterStateName,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    run_filter = FlowRunFilter(
        deployment_id=FlowRunFilterDeploymentId(any_=deployment_ids),
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]),
            name=FlowRunFilterStateName(not_any_=[_AWAITING_SLOT]),
        ),
        next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(before_=cast(Any, now)),
    )
    runs: list[Any] = []
    while True:
        page = client.read_flow_runs(
            flow_run_filter=run_filter,
            sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC,
            limit=_PAGE,
            offset=len(runs),
        )
        runs.extend(page)
        if len(page) < _PAGE:
            return runs


def sweep_missed_runs(deployments: dict[UUID, str], now: datetime | None = None) -> MissedRuns:
    """Keep the newest overdue run of each deployment; cancel the older ones, saying why.

    `deployments` maps deployment id to its `flow/deployment` name.
    """
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    now = now or datetime.now(UTC)
    report = MissedRuns()
    with get_client(sync_client=True) as client:
        by_deployment: dict[UUID, list[Any]] = defaultdict(list)
        for run in _overdue_runs(client, list(deployments), now):
            by_deployment[run.deployment_id].append(run)
        for deployment_id, runs in by_deployment.items():
            name = deployments[deployment_id]
            runs.sort(key=lambda r: r.next_scheduled_start_time or now)
            newest = runs[-1]
            report.kept[name] = newest.next_scheduled_start_time or now
            for run in runs[:-1]:
                client.set_flow_run_state(
                    run.id,
                    Cancelled(
                        message=(
                            "Skipped: missed while no `chatbot-backup serve` was running; "
                            f"the newest missed run ({newest.name}) is the one catch-up"
                        )
                    ),
                    force=True,
                )
                report.cancelled[name] += 1
    return report


def require_api_url() -> str:
    """The Prefect server's API URL; ConfigError when there is none.

    Without one, Prefect would start a temporary server inside this process, and that one
    runs no scheduler: `serve` would wait forever for runs that are never scheduled.
    """
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise ConfigError(
            "serve: PREFECT_API_URL is not set; the schedules need a Prefect server "
            "(`prefect server start`, then PREFECT_API_URL=http://127.0.0.1:4200/api)"
        )
    return str(url)


def set_up_automations(settings: Any | None) -> None:
    """The automations and notification blocks (`chatbot-backup automations`); a failure
    is a warning: the schedules are served all the same."""
    import importlib

    try:
        # flows sits above deployments: reached at run time, as the flows themselves are.
        settings = settings or load_settings(check_folders=False)
        report = importlib.import_module("flows.automations").set_up_automations(settings)
    except Exception as exc:
        from tasks.core.redact import redact

        print(
            "chatbot-backup serve: warning: automations not set up: "
            + redact(f"{type(exc).__name__}: {exc}"),
            file=sys.stderr,
        )
        return
    for line in report.lines():
        print(f"chatbot-backup serve: automations: {line}", file=sys.stderr)


def offsite_tier_warnings(
    destination: str | None, tiers: tuple[Tier, ...] = TIER_TABLE
) -> list[str]:
    """One line per scheduled off-site tier that has nowhere to copy to (no
    OFFSITE_DESTINATION): said when `serve` starts, not found out by a failed run."""
    if destination and destination.strip():
        return []
    return [
        f"warning: tier {tier.name} ({tier.full_name}) copies its backups off-site, but "
        "OFFSITE_DESTINATION is not set: its runs will fail until it is"
        for tier in tiers
        if tier.offsite
    ]


def serve_tiers(timezone: str | None = None) -> None:
    """Register every tier deployment, reduce missed runs to one catch-up, serve forever.

    The schedules are in `timezone`, by default BACKUP_TIMEZONE. A tier whose flow cannot
    be imported is reported on stderr and left out; ConfigError when none can be served.
    """
    from prefect import serve

    settings = load_settings(check_folders=False)
    if timezone is None:
        timezone = settings.backup_timezone
    timezone = check_timezone(timezone)  # settings first, then the server, then the folders

    def say_offsite_warnings() -> None:
        for line in offsite_tier_warnings(settings.offsite_destination):
            print(f"chatbot-backup serve: {line}", file=sys.stderr, flush=True)

    # The warnings come with the start-up checks, but a refusal stays one line: they are
    # said before a missing server (the operator fixes both at once), after the folders.
    try:
        api_url = require_api_url()
    except ConfigError:
        say_offsite_warnings()
        raise
    check_folder_rules(settings)  # every tier's run would refuse these folders: say so now
    say_offsite_warnings()
    offsite = bool(settings.offsite_destination)  # offsite-verify/weekly only with one
    built = build_deployments(timezone, (*tier_table(settings.pitr_enabled, offsite), *ON_DEMAND))
    for reason in built.unavailable.values():
        print(f"chatbot-backup serve: warning: {reason}; this tier is not served", file=sys.stderr)
    if not built.deployments:
        raise ConfigError("serve: no tier deployment could be built; see the warnings above")
    ids: dict[UUID, str] = {}
    try:
        for deployment in built.deployments:
            ids[cast(UUID, deployment.apply())] = deployment.full_name
        missed = sweep_missed_runs(ids)
    except (OSError, httpx.HTTPError) as exc:
        raise BackupError(
            f"serve: the Prefect API at {api_url} did not answer ({type(exc).__name__}: {exc}); "
            "is the Prefect server running?",
            transient=True,
        ) from None
    for line in missed.lines():
        print(f"chatbot-backup serve: {line}", file=sys.stderr)
    set_up_automations(settings)
    # limit=None: runs of different tiers never wait behind each other in the runner;
    # the BACKUP_DIR lock and the per-deployment limit decide what may run together.
    serve(*built.deployments, pause_on_shutdown=False, limit=None)
