"""The retention tiers as data: SPEC.md's schedule table, in one place.

Everything that schedules a job reads this table: `chatbot-backup serve` (through
`deployments.build`), the generated `prefect.yaml` (`deployments.render_prefect_yaml`),
`chatbot-backup schedule`, and the tests. Nothing here imports a flow, so any layer may
read the table without pulling in Prefect's flow machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    cron: str
    description: str
    retention_days: int | None = None  # None: the job keeps no backups (the monitor)
    offsite: bool = False
    tier: str | None = None  # the retention tier its backups carry (tasks.core.naming.TIERS)
    kind: str | None = None  # "db" or "full": the kind of backup it makes

    @property
    def full_name(self) -> str:
        """`flow/deployment`, as `prefect deployment run` and the UI name it."""
        return f"{self.flow}/{self.deployment}"

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
            return {}
        return {"retention_days": self.retention_days, "offsite": self.offsite, "tier": self.tier}

    @property
    def retention_label(self) -> str:
        if self.retention_days is None:
            return "—"
        return f"{self.retention_days} day" + ("" if self.retention_days == 1 else "s")


TIER_TABLE: tuple[Tier, ...] = (
    Tier(
        deployment="every-6h",
        flow="db-backup",
        entrypoint="flows.db_backup_flow.db_backup",
        cron="0 */6 * * *",
        description="Database-only backup every 6 hours, kept 2 days.",
        retention_days=2,
        tier="every-6h",
        kind="db",
    ),
    Tier(
        deployment="daily",
        flow="backup-all",
        entrypoint="flows.backup_all_flow.backup_all",
        cron="0 2 * * *",
        description="Full backup every day at 02:00, kept 7 days.",
        retention_days=7,
        tier="daily",
        kind="full",
    ),
    Tier(
        deployment="weekly-offsite",
        flow="backup-all",
        entrypoint="flows.backup_all_flow.backup_all",
        cron="0 3 * * 0",
        description="Full backup on Sundays at 03:00, copied off-site, kept 30 days.",
        retention_days=30,
        offsite=True,
        tier="weekly",
        kind="full",
    ),
    Tier(
        deployment="monthly-offsite",
        flow="backup-all",
        entrypoint="flows.backup_all_flow.backup_all",
        cron="0 4 1 * *",
        description="Full backup on the 1st of the month at 04:00, copied off-site, kept 365 days.",
        retention_days=365,
        offsite=True,
        tier="monthly",
        kind="full",
    ),
    Tier(
        deployment="hourly",
        flow="monitor-backups",
        entrypoint="flows.monitor_flow.monitor_backups",
        cron="0 * * * *",
        description="Backup health checks every hour: alerts and metrics.",
    ),
)

DEPLOYMENT_NAMES: tuple[str, ...] = tuple(t.full_name for t in TIER_TABLE)


def tier_by_name(full_name: str) -> Tier:
    """The row for `flow/deployment`; KeyError names the known ones."""
    for tier in TIER_TABLE:
        if tier.full_name == full_name:
            return tier
    raise KeyError(f"no tier deployment {full_name!r}; known: {', '.join(DEPLOYMENT_NAMES)}")
