"""`db-backup`: the database-only backup (the guide's `db_backup.sh`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import flow

from flows.backup_job import BackupJob, BackupRun, run_backup_job
from flows.hooks import FAILURE_HOOKS
from flows.offsite_flow import OffsiteResult
from flows.reporting import human_size, with_progress
from tasks.core.tiers import DEFAULT_TIER, TIERS
from tasks.sources.base import DumpResult
from tasks.steps.backup import dump_database, verify_backup


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


def _db_result(run: BackupRun[DumpResult]) -> DbBackupResult:
    artifact = run.artifact
    return DbBackupResult(
        path=str(artifact.path),
        sidecar=str(artifact.sidecar),
        size=artifact.size,
        sha256=artifact.sha256,
        db_type=run.settings.db_type,
        tier=run.tier,
        seconds=run.seconds,
        tables=artifact.detail.tables,
        kept=run.rotation.kept,
        removed=run.rotation.removed,
        snapshots_removed=run.rotation.snapshots_removed,
    )


DB_BACKUP = BackupJob[DumpResult, DbBackupResult](
    name="db-backup",
    kind="db",
    title="Database backup",
    tiers=TIERS,
    write=lambda settings, tier: dump_database(settings, tier),
    verify=lambda artifact: verify_backup(artifact.path, artifact.sha256, just_written=True),
    result=_db_result,
    rows=lambda run, result: [],
    # SQLite: the pre-restore snapshots beside the database are rotated too.
    snapshots_beside=lambda settings: settings.db_path if settings.db_type == "sqlite" else None,
)


@flow(name="db-backup", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
@with_progress("db-backup")
def db_backup(
    retention_days: int | None = None, offsite: bool = False, tier: str = DEFAULT_TIER["db"]
) -> DbBackupResult:
    """Back up the admin database (SQLite or PostgreSQL) to a gzip file with a sha256 sidecar."""
    return run_backup_job(DB_BACKUP, retention_days, offsite, tier)
