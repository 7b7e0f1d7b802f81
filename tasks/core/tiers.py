"""The retention tiers and the rest of SPEC.md's schedule table: the one place they live.

A tier is a scheduled backup job, the marker its backups carry (`NAME.meta.json`), and
how long they are kept. Everything else derives from this table: the deployments that
`serve` builds and the generated `prefect.yaml` (deployments/tiers.py adds only the
flows' entrypoints), rotation's retention for a tier (`resolve_retention`), the tier
checks and `--tier` help of the CLI, the catalog's tier of an unmarked backup, the
monitor's rotation check and its list of scheduled deployments. Adding a tier is one
row of `TIER_TABLE`.

A tier may need a feature switched on: `base-backup/weekly` (the base backups of
point-in-time recovery) is scheduled, listed and expected by the monitor only with
PITR_ENABLED=true (`active_tiers`, `scheduled_deployments`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tasks.core.errors import ConfigError

# What a tier's scheduled job makes: a database dump, a full archive, or a PostgreSQL
# base backup (point-in-time recovery).
TierKind = Literal["db", "full", "base"]

# The job that makes each kind of backup (its Prefect flow name and CLI command).
BACKUP_JOBS: dict[str, str] = {"db": "db-backup", "full": "backup-all", "base": "base-backup"}


@dataclass(frozen=True)
class Tier:
    """One retention tier: a scheduled backup of one kind, and its backups' retention."""

    name: str  # the marker its backups carry, and the `--tier` value
    kind: TierKind  # what its job makes: "db" (db-backup), "full" (backup-all), "base"
    retention_days: int
    cron: str
    description: str
    deployment_name: str = ""  # the deployment's own name; default: the tier's name
    offsite: bool = False  # its scheduled runs copy the backup off-site
    default: bool = False  # the tier of a backup of its kind that carries no marker
    interval_hours: float = 24.0  # how often its schedule runs (the longest gap)
    needs_pitr: bool = False  # scheduled only with PITR_ENABLED=true

    @property
    def job(self) -> str:
        return BACKUP_JOBS[self.kind]

    @property
    def deployment(self) -> str:
        return self.deployment_name or self.name

    @property
    def full_name(self) -> str:
        return f"{self.job}/{self.deployment}"


@dataclass(frozen=True)
class Schedule:
    """A scheduled job that keeps no backups (the monitor)."""

    job: str
    deployment: str
    cron: str
    description: str
    needs_offsite: bool = False  # scheduled only when OFFSITE_DESTINATION is set

    @property
    def full_name(self) -> str:
        return f"{self.job}/{self.deployment}"


TIER_TABLE: tuple[Tier, ...] = (
    Tier(
        "every-6h",
        "db",
        retention_days=2,
        cron="0 */6 * * *",
        description="Database-only backup every 6 hours, kept 2 days.",
        default=True,
        interval_hours=6,
    ),
    Tier(
        "daily",
        "full",
        retention_days=7,
        cron="0 2 * * *",
        description="Full backup every day at 02:00, kept 7 days.",
        default=True,
    ),
    Tier(
        "weekly",
        "full",
        retention_days=30,
        cron="0 3 * * 0",
        description="Full backup on Sundays at 03:00, copied off-site, kept 30 days.",
        deployment_name="weekly-offsite",
        offsite=True,
        interval_hours=7 * 24,
    ),
    Tier(
        "monthly",
        "full",
        retention_days=365,
        cron="0 4 1 * *",
        description="Full backup on the 1st of the month at 04:00, copied off-site, kept 365 days.",
        deployment_name="monthly-offsite",
        offsite=True,
        interval_hours=31 * 24,
    ),
    Tier(
        "weekly",
        "base",
        retention_days=30,
        cron="0 1 * * 0",
        description=(
            "PostgreSQL base backup (point-in-time recovery) on Sundays at 01:00, kept 30 "
            "days with the WAL it needs."
        ),
        default=True,
        needs_pitr=True,
    ),
)

OTHER_SCHEDULES: tuple[Schedule, ...] = (
    Schedule(
        "monitor-backups",
        "hourly",
        "0 * * * *",
        "Backup health checks every hour: alerts and metrics.",
    ),
    Schedule(
        "dr-drill",
        "quarterly",
        "0 5 1 1,4,7,10 *",
        "Quarterly DR drill: the newest full backup restored into a scratch environment, "
        "timed against the RTO and RPO tables.",
    ),
    Schedule(
        "offsite-verify",
        "weekly",
        "0 6 * * 0",
        "Off-site copies read back and checked against their sidecars, Sundays at 06:00.",
        needs_offsite=True,
    ),
)
# Off-site copies may be this much later than their tier's schedule before the monitor
# reports the destination (a slow upload, a run retried the next day).
OFFSITE_GRACE_HOURS = 24.0

TIERS: tuple[str, ...] = tuple(dict.fromkeys(t.name for t in TIER_TABLE))
# The tier a backup without a marker belongs to (SPEC: Rotation): the default of its kind.
DEFAULT_TIER: dict[str, str] = {t.kind: t.name for t in TIER_TABLE if t.default}
# Each tier's retention (the monitor's rotation check allows the larger of this and
# RETENTION_DAYS, so a CLI run with the default retention is not taken for a stuck rotation).
TIER_RETENTION_DAYS: dict[str, int] = {t.name: t.retention_days for t in TIER_TABLE}
# The tiers whose backups must outlive the operator's RETENTION_DAYS (every tier but a
# kind's default one): an ad-hoc `--tier monthly` run must not rotate the monthly backups
# with the daily 7 days.
LONG_TIER_RETENTION_DAYS: dict[str, int] = {
    t.name: t.retention_days for t in TIER_TABLE if not t.default and t.kind != "base"
}


def active_tiers(pitr_enabled: bool = False) -> tuple[Tier, ...]:
    """The tiers that are scheduled: those that need PITR only when it is enabled."""
    return tuple(t for t in TIER_TABLE if pitr_enabled or not t.needs_pitr)


def scheduled_deployments(pitr_enabled: bool = False, offsite: bool = True) -> tuple[str, ...]:
    """Every scheduled deployment, `flow/deployment`, as `serve` registers them: those that
    need PITR only with it, those that need an off-site destination only with one."""
    return (
        *(t.full_name for t in active_tiers(pitr_enabled)),
        *(s.full_name for s in OTHER_SCHEDULES if offsite or not s.needs_offsite),
    )


# The scheduled deployments without point-in-time recovery.
SCHEDULED_DEPLOYMENTS: tuple[str, ...] = scheduled_deployments(False)


def tier_of(kind: str, name: str) -> Tier | None:
    """The row of tier `name` for backups of `kind` (names repeat across kinds)."""
    return next((t for t in TIER_TABLE if t.kind == kind and t.name == name), None)


def offsite_max_age_hours(tier: str) -> float | None:
    """How old the newest off-site copy of `tier` may be (None: not an off-site tier)."""
    for row in TIER_TABLE:
        if row.name == tier and row.offsite:
            return row.interval_hours + OFFSITE_GRACE_HOURS
    return None


def tiers_of(kind: str) -> tuple[str, ...]:
    """The tiers whose scheduled job makes backups of `kind`."""
    return tuple(t.name for t in TIER_TABLE if t.kind == kind)


def one_of(names: tuple[str, ...]) -> str:
    """`daily, weekly or monthly`, for help texts and errors."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_tier(tier: str, allowed: tuple[str, ...] = TIERS) -> str:
    """`tier` when it is one of `allowed`; ConfigError naming the flag otherwise."""
    if tier not in allowed:
        raise ConfigError(f"--tier: must be one of {', '.join(allowed)}, got {tier!r}")
    return tier


def resolve_retention(retention_days: int | None, default: int, tier: str | None = None) -> int:
    """The flag, else the tier's own retention for the long tiers, else RETENTION_DAYS."""
    if retention_days is None:
        return max(default, LONG_TIER_RETENTION_DAYS.get(tier or "", 0))
    from tasks.core.settings import check_retention_days

    try:
        return check_retention_days(retention_days)
    except ValueError as exc:
        raise ConfigError(f"--retention-days: {exc}") from None
