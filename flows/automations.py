"""Prefect Automations over the jobs' events (SPEC.md "Prefect events", issue 23).

- **proactive**, one per kind of backup: no `chatbot-backup.<job>.completed` from this
  host within MONITOR_MAX_AGE_HOURS -> run `monitor-backups/hourly` now and notify
  (the notification blocks of `flows.alert_blocks`). It notices a backup that never
  started, which no failure hook can.
- **reactive**: a run of a scheduled tier completed a backup -> run
  `test-restore/on-demand` on that very file, so every scheduled backup is followed by a
  restore proof (its own `chatbot-backup.test-restore.completed|failed` event, artifact
  and metrics).

Every automation's name starts with `chatbot-backup: ` and only such names are ever read,
changed or removed. Applying is idempotent: one automation per name (duplicates from a
race are removed), updated in place; a paused (disabled) automation stays paused.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import flows.hooks  # noqa: F401  (settings from Prefect Secret blocks too)
from deployments.tiers import ON_DEMAND_NAME
from flows.events import BACKUP_JOBS, PREFIX, resource_id
from tasks.core.errors import ConfigError

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

NAME_PREFIX = "chatbot-backup: "
MONITOR_DEPLOYMENT = "monitor-backups/hourly"
TEST_RESTORE_ON_DEMAND = f"test-restore/{ON_DEMAND_NAME}"  # deployments.tiers.ON_DEMAND
PROACTIVE_JOBS = ("db-backup", "backup-all")  # the kinds the monitor's age check covers
REACTIVE_NAME = f"{NAME_PREFIX}restore proof after every scheduled backup"
MIN_PROACTIVE_SECONDS = 10.0  # Prefect's floor for a proactive trigger's window


def proactive_name(job: str) -> str:
    return f"{NAME_PREFIX}no {BACKUP_JOBS[job]} backup within the window"


@dataclass
class AutomationReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)  # left paused as the operator set them
    notify_blocks: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"created: {n}" for n in self.created]
        out += [f"updated: {n}" for n in self.updated]
        out += [f"removed: {n}" for n in self.removed]
        out += [f"still paused (resume in the UI): {n}" for n in self.paused]
        if self.notify_blocks:
            out.append("notifications go to the blocks: " + ", ".join(self.notify_blocks))
        return out


def deployment_id(client: SyncPrefectClient, name: str) -> UUID:
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_deployment_by_name(name).id
    except ObjectNotFound:
        raise ConfigError(
            f"automations: the deployment {name} is not on the Prefect server; start "
            "`chatbot-backup serve` once (it registers the deployments and the automations)"
        ) from None


def desired(
    max_age_hours: float,
    monitor_id: UUID,
    test_restore_id: UUID,
    block_ids: list[UUID],
    host: str | None = None,
) -> list[Any]:
    """The automations this host should have, as Prefect AutomationCore objects."""
    from prefect.events.actions import RunDeployment, SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    host = host or socket.gethostname()
    window = timedelta(seconds=max(MIN_PROACTIVE_SECONDS, max_age_hours * 3600))
    ours: dict[str, str | list[str]] = {"prefect.resource.id": resource_id(host)}
    automations = []
    for job in PROACTIVE_JOBS:
        kind = BACKUP_JOBS[job]
        notify = [
            SendNotification(
                block_document_id=block,
                subject=f"[chatbot-backup] CRITICAL: no {kind} backup on {host}",
                body=(
                    f"No {job} run completed on {host} within {max_age_hours:g} hours "
                    f"(MONITOR_MAX_AGE_HOURS); {MONITOR_DEPLOYMENT} was started to check."
                ),
            )
            for block in block_ids
        ]
        automations.append(
            AutomationCore(
                name=proactive_name(job),
                description=(
                    f"No {PREFIX}.{job}.completed from {host} within {max_age_hours:g} h: "
                    f"run {MONITOR_DEPLOYMENT} and notify. Made by `chatbot-backup automations`."
                ),
                trigger=EventTrigger(
                    posture=Posture.Proactive,
                    match=ours,
                    expect={f"{PREFIX}.{job}.completed"},
                    threshold=1,
                    within=window,
                ),
                actions=[
                    RunDeployment(
                        source="selected",
                        deployment_id=monitor_id,
                        parameters={},
                        job_variables=None,
                    ),
                    *notify,
                ],
            )
        )
    automations.append(
        AutomationCore(
            name=REACTIVE_NAME,
            description=(
                f"A scheduled backup on {host} completed: run {TEST_RESTORE_ON_DEMAND} on its "
                "file. Made by `chatbot-backup automations`."
            ),
            trigger=EventTrigger(
                posture=Posture.Reactive,
                match={**ours, f"{PREFIX}.scheduled": "true"},
                expect={f"{PREFIX}.{job}.completed" for job in PROACTIVE_JOBS},
                threshold=1,
                within=timedelta(0),
            ),
            actions=[
                RunDeployment(
                    source="selected",
                    deployment_id=test_restore_id,
                    job_variables=None,
                    parameters={
                        "backup_file": {
                            "__prefect_kind": "jinja",
                            "template": "{{ event.payload.file }}",
                        }
                    },
                )
            ],
        )
    )
    return automations


def ours(client: SyncPrefectClient) -> list[Any]:
    """Every automation on the server whose name has our prefix."""
    return [a for a in client.read_automations() if a.name.startswith(NAME_PREFIX)]


def apply_automations(wanted: list[Any]) -> AutomationReport:
    """Create or update each wanted automation, one per name; remove our stale ones."""
    from prefect.client.orchestration import get_client

    report = AutomationReport()
    wanted_names = {a.name for a in wanted}
    with get_client(sync_client=True) as client:
        existing: dict[str, list[Any]] = {}
        for automation in ours(client):
            existing.setdefault(automation.name, []).append(automation)
        for name, found in existing.items():
            keep = found[:1] if name in wanted_names else []
            for extra in found[len(keep) :]:
                client.delete_automation(extra.id)
                if name not in wanted_names:
                    report.removed.append(name)
        for automation in wanted:
            found = existing.get(automation.name, [])
            if not found:
                client.create_automation(automation)
                report.created.append(automation.name)
                continue
            current = found[0]
            automation = automation.model_copy(update={"enabled": current.enabled})
            client.update_automation(current.id, automation)
            report.updated.append(automation.name)
            if not current.enabled:
                report.paused.append(automation.name)
    return report


def remove_automations() -> list[str]:
    """Delete every automation with our prefix (nothing else); their names."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        found = ours(client)
        for automation in found:
            client.delete_automation(automation.id)
    return sorted({a.name for a in found})


def set_up_automations(settings: Any) -> AutomationReport:
    """The notification blocks from ALERT_*, then the automations over them."""
    from prefect.client.orchestration import get_client

    from flows.alert_blocks import apply_notification_blocks

    blocks = apply_notification_blocks(settings)
    with get_client(sync_client=True) as client:
        monitor_id = deployment_id(client, MONITOR_DEPLOYMENT)
        test_restore_id = deployment_id(client, TEST_RESTORE_ON_DEMAND)
    report = apply_automations(
        desired(settings.monitor_max_age_hours, monitor_id, test_restore_id, list(blocks.values()))
    )
    report.notify_blocks = sorted(blocks)
    return report
