"""`db-backup`: the database-only backup (the guide's `db_backup.sh`)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from prefect import flow

from flows.hooks import FAILURE_HOOKS
from flows.locking import job_lock
from flows.offsite_flow import OffsiteResult, check_offsite, copy_offsite
from flows.reporting import human_size, publish_table, run_logger, with_progress
from tasks.core import clock
from tasks.core.settings import load_settings
from tasks.core.tiers import DEFAULT_TIER, check_tier, resolve_retention
from tasks.retention.plan import RetentionPolicy
from tasks.steps.backup import dump_database, rotate_backups, verify_backup
from tasks.steps.monitor import record_backup_metrics


@dataclass(frozen=True)
class DbBackupResult:
    path: str
    sidecar: str
    size: int
    sha256: str
    db_type: str
    tier: str
    seconds: float
    tables: dict[str, int] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    snapshots_removed: list[str] = field(default_factory=list)  # pre-restore snapshots rotated
    offsite: OffsiteResult | None = None

    def summary_lines(self) -> list[str]:
        offsite = self.offsite.summary_lines() if self.offsite is not None else []
        return [
            "Backup completed",
            f"  file:     {self.path}",
            f"  size:     {human_size(self.size)} ({self.size} bytes)",
            f"  sha256:   {self.sha256}",
            f"  database: {self.db_type} ({len(self.tables)} tables)",
            f"  duration: {self.seconds:.1f} s",
            f"  tier:     {self.tier}",
            f"  backups kept: {len(self.kept)}, removed: {len(self.removed)}",
            *(
                [f"  pre-restore snapshots removed: {', '.join(self.snapshots_removed)}"]
                if self.snapshots_removed
                else []
            ),
            *offsite,
        ]


@flow(name="db-backup", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
@with_progress("db-backup")
def db_backup(
    retention_days: int | None = None, offsite: bool = False, tier: str = DEFAULT_TIER["db"]
) -> DbBackupResult:
    """Back up the admin database (SQLite or PostgreSQL) to a gzip file with a sha256 sidecar."""
    started = time.monotonic()
    settings = load_settings()
    retention = resolve_retention(retention_days, settings.retention_days, tier)
    check_tier(tier)
    if offsite:
        check_offsite(settings)  # a bad destination or key stops the run before any work
    logger = run_logger()
    with job_lock(settings, "db-backup", must_write=True):
        artifact = dump_database(settings, tier)
        verify_backup(artifact.path, artifact.sha256, just_written=True)
        rotation = rotate_backups(
            settings.backups,
            RetentionPolicy("db", tier, retention),
            clock.utc_now(),
            settings.db_path if settings.db_type == "sqlite" else None,
        )
    result = DbBackupResult(
        path=str(artifact.path),
        sidecar=str(artifact.sidecar),
        size=artifact.size,
        sha256=artifact.sha256,
        db_type=settings.db_type,
        tier=tier,
        seconds=time.monotonic() - started,
        tables=artifact.detail.tables,
        kept=rotation.kept,
        removed=rotation.removed,
        snapshots_removed=rotation.snapshots_removed,
    )
    # After the lock is released: metrics describe the run, they are not part of it.
    record_backup_metrics(settings, "db", artifact.path, artifact.size, result.seconds)
    if offsite:  # outside the lock: a slow upload does not hold up the next backup job
        shipped = copy_offsite(
            settings, [artifact.path], "db", {artifact.path.name: artifact.sha256}
        )
        result = dataclasses.replace(result, offsite=shipped)
    for line in result.summary_lines():
        logger.info(line)
    publish_table(
        "db-backup-summary",
        [
            {"item": "file", "value": artifact.path.name},
            {"item": "size_bytes", "value": artifact.size},
            {"item": "sha256", "value": artifact.sha256},
            {"item": "database", "value": settings.db_type},
            {"item": "tables", "value": len(result.tables)},
            {"item": "duration_s", "value": f"{result.seconds:.2f}"},
            {"item": "tier", "value": tier},
            {"item": "kept", "value": len(rotation.kept)},
            {"item": "removed", "value": ", ".join(rotation.removed) or "none"},
        ],
        f"Database backup {artifact.path.name}",
    )
    return result
