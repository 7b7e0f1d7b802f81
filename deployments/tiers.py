"""SPEC.md's schedule table as Prefect deployment rows, derived from `tasks.core.tiers`.

The facts (tiers, crons, retentions, off-site) live in tasks/core/tiers.py; this module
adds what only deploying needs: each job's flow entrypoint, the work pool, the tags and
the concurrency rule. Everything that schedules a job reads this table: `chatbot-backup
serve` (through `deployments.build`), the generated `prefect.yaml`
(`deployments.render_prefect_yaml`), `chatbot-backup schedule`, and the tests. Nothing here imports a flow, so any layer may
read the table without pulling in Prefect's flow machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.catalog.listing import LATEST
from tasks.core import tiers as core_tiers

# Backup deployments take at most one run at a time; a run that would start while the
# previous one of the same deployment is still running is cancelled, not queued, so a
# backlog of missed runs can never turn into a burst. (The BACKUP_DIR lock keeps
# *different* jobs, and CLI runs, from writing at once.)
CONCURRENCY_LIMIT = 1
COLLISION_STRATEGY = "CANCEL_NEW"

# The work pool `prefect deploy --all` puts the deployments in (a process pool).
WORK_POOL = "chatbot-backup"
TAGS = ("chatbot-backup",)


@dataclass(frozen=True)
class Tier:
    """One row of the schedule table: a scheduled Prefect deployment of one flow."""

    deployment: str  # the deployment's own name, e.g. "daily"
    flow: str  # the Prefect flow name, e.g. "backup-all"
    entrypoint: str  # module path of the flow function, imported only when deploying
    cron: str | None  # None: on demand only (started from the UI or the API), no schedule
    description: str
    retention_days: int | None = None  # None: the job keeps no backups (the monitor)
    offsite: bool = False
    tier: str | None = None  # the retention tier its backups carry (tasks.core.tiers.TIERS)
    kind: str | None = None  # "db", "full" or "base": the kind of backup it makes
    needs_pitr: bool = False  # scheduled only with PITR_ENABLED=true
    needs_offsite: bool = False  # served only when OFFSITE_DESTINATION is set
    defaults: tuple[tuple[str, Any], ...] = ()  # an on-demand form's default parameters

    @property
    def full_name(self) -> str:
        """`flow/deployment`, as `prefect deployment run` and the UI name it."""
        return f"{self.flow}/{self.deployment}"

    @property
    def tags(self) -> list[str]:
        """`chatbot-backup` and `tier:NAME` for a schedule, `on-demand` for the others."""
        return [*TAGS, f"tier:{self.deployment}" if self.cron else "on-demand"]

    @property
    def module(self) -> str:
        return self.entrypoint.rsplit(".", 1)[0]

    @property
    def function(self) -> str:
        return self.entrypoint.rsplit(".", 1)[1]

    @property
    def parameters(self) -> dict[str, Any]:
        """The flow parameters every run of this deployment gets (no secrets, ever)."""
        if self.tier is None:
            return dict(self.defaults)
        return {"retention_days": self.retention_days, "offsite": self.offsite, "tier": self.tier}

    @property
    def retention_label(self) -> str:
        if self.retention_days is None:
            return "—"
        return f"{self.retention_days} day" + ("" if self.retention_days == 1 else "s")


# The module path of each scheduled job's flow, imported only when deploying.
ENTRYPOINTS: dict[str, str] = {
    "db-backup": "flows.db_backup_flow.db_backup",
    "backup-all": "flows.backup_all_flow.backup_all",
    "monitor-backups": "flows.monitor_flow.monitor_backups",
    "base-backup": "flows.base_backup_flow.base_backup",
    "dr-drill": "flows.dr_drill_flow.dr_drill",
    "offsite-verify": "flows.offsite_verify_flow.offsite_verify",
}

ON_DEMAND_NAME = "on-demand"


def on_demand(flow: str, entrypoint: str, description: str, **defaults: Any) -> Tier:
    """An unscheduled deployment `flow/on-demand`: the operator starts it from the UI."""
    return Tier(
        ON_DEMAND_NAME, flow, entrypoint, None, description, defaults=tuple(defaults.items())
    )


# The jobs an operator starts from the Prefect UI with a form (SPEC: "restores from the
# Prefect UI"). A restore started there pauses until the operator confirms it. One line each.
ON_DEMAND: tuple[Tier, ...] = (
    on_demand(
        "dr-drill",
        "flows.dr_drill_flow.dr_drill",
        "DR drill into scratch space (nothing live is touched), timed against RTO/RPO.",
        scenario="complete-failure",
        from_offsite=False,
    ),
    on_demand(
        "db-restore",
        "flows.db_restore_flow.db_restore",
        "Restore the admin database; pauses for your confirmation.",
        backup_file=LATEST,
    ),
    on_demand(
        "restore-all",
        "flows.restore_all_flow.restore_all",
        "Restore database, uploads, config and data; pauses for your confirmation.",
        backup_file=LATEST,
    ),
    on_demand(
        "test-restore",
        "flows.test_restore_flow.test_restore",
        "Prove a backup restores into scratch space (nothing live is touched).",
        backup_file=LATEST,
    ),
    on_demand(
        "offsite-sync",
        "flows.offsite_flow.offsite_sync",
        "Copy every local backup missing off-site, verified.",
        verify=False,
    ),
    on_demand(
        "migrate-sqlite-to-postgres",
        "flows.migrate_to_postgres_flow.migrate_to_postgres",
        "Move the admin database to PostgreSQL (MIGRATE_TARGET_DATABASE_URL); pauses for your confirmation.",
    ),
    on_demand(
        "pitr-restore",
        "flows.pitr_restore_flow.pitr_restore",
        "Build a data directory that recovers to a point in time (never the live cluster).",
    ),
)


def backup_tier_row(tier: core_tiers.Tier) -> Tier:
    return Tier(
        deployment=tier.deployment,
        flow=tier.job,
        entrypoint=ENTRYPOINTS[tier.job],
        cron=tier.cron,
        description=tier.description,
        retention_days=tier.retention_days,
        offsite=tier.offsite,
        tier=tier.name,
        kind=tier.kind,
        needs_pitr=tier.needs_pitr,
    )


def schedule_row(schedule: core_tiers.Schedule) -> Tier:
    return Tier(
        deployment=schedule.deployment,
        flow=schedule.job,
        entrypoint=ENTRYPOINTS[schedule.job],
        cron=schedule.cron,
        description=schedule.description,
        needs_offsite=schedule.needs_offsite,
    )


def tier_table(pitr_enabled: bool = False, offsite: bool = True) -> tuple[Tier, ...]:
    """The scheduled deployments; `base-backup/weekly` only with PITR_ENABLED=true,
    `offsite-verify/weekly` only with an off-site destination (`offsite`)."""
    return (
        *(backup_tier_row(t) for t in core_tiers.active_tiers(pitr_enabled)),
        *(
            schedule_row(s)
            for s in core_tiers.OTHER_SCHEDULES
            if offsite or not s.needs_offsite
        ),
    )


# Without point-in-time recovery (the default; what the committed prefect.yaml holds).
TIER_TABLE: tuple[Tier, ...] = tier_table(False)
# Every row, the PITR ones included.
ALL_TIERS: tuple[Tier, ...] = tier_table(True)

DEPLOYMENT_NAMES: tuple[str, ...] = tuple(t.full_name for t in ALL_TIERS)

# What `serve` registers and prefect.yaml describes: the schedules, then the on-demand ones.
ALL_DEPLOYMENTS: tuple[Tier, ...] = (*TIER_TABLE, *ON_DEMAND)  # PITR off, as prefect.yaml
ON_DEMAND_NAMES: tuple[str, ...] = tuple(t.full_name for t in ON_DEMAND)


def tier_by_name(full_name: str) -> Tier:
    """The row for `flow/deployment`; KeyError names the known ones."""
    for tier in (*ALL_TIERS, *ON_DEMAND):
        if tier.full_name == full_name:
            return tier
    raise KeyError(f"no tier deployment {full_name!r}; known: {', '.join(DEPLOYMENT_NAMES)}")
