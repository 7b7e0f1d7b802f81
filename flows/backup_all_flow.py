"""`backup-all`: the full system backup (the guide's `backup_all.sh`)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from prefect import flow

from flows.hooks import FAILURE_HOOKS
from flows.locking import job_lock
from flows.offsite_flow import OffsiteResult, check_offsite, copy_offsite
from flows.reporting import human_size, publish_table, run_logger, with_progress
from tasks.backup.full_backup import estimated_bytes, plan_from_settings
from tasks.core import clock
from tasks.core.settings import load_settings
from tasks.core.tiers import DEFAULT_TIER, check_tier, resolve_retention, tiers_of
from tasks.retention.plan import RetentionPolicy
from tasks.steps.backup import rotate_backups
from tasks.steps.full_backup import verify_full_backup, write_full_backup_task
from tasks.steps.monitor import record_backup_metrics
from tasks.stream import progress

SHOWN_SKIPPED = 20  # lines in the summary; the manifest inside the archive has every one


@dataclass(frozen=True)
class BackupAllResult:
    path: str
    sidecar: str
    size: int
    sha256: str
    db_type: str
    tier: str
    seconds: float
    files: int
    bytes: int
    tables: dict[str, int] = field(default_factory=dict)
    sections: dict[str, int] = field(default_factory=dict)  # files per folder
    changed: list[str] = field(default_factory=list)  # files that changed while read (first 100)
    skipped: list[dict[str, str]] = field(default_factory=list)  # first 100; all in the manifest
    changed_count: int = 0
    skipped_count: int = 0
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    snapshots_removed: list[str] = field(default_factory=list)  # pre-restore snapshots rotated
    offsite: OffsiteResult | None = None

    def summary_lines(self) -> list[str]:
        lines = [
            "Full backup completed",
            f"  file:     {self.path}",
            f"  size:     {human_size(self.size)} ({self.size} bytes)",
            f"  sha256:   {self.sha256}",
            f"  database: {self.db_type} ({len(self.tables)} tables)",
            f"  files:    {self.files} ({human_size(self.bytes)}): "
            + ", ".join(f"{name} {count}" for name, count in self.sections.items()),
            f"  duration: {self.seconds:.1f} s",
            f"  tier:     {self.tier}",
            f"  backups kept: {len(self.kept)}, removed: {len(self.removed)}",
            *(
                [f"  pre-restore snapshots removed: {', '.join(self.snapshots_removed)}"]
                if self.snapshots_removed
                else []
            ),
        ]
        if self.changed_count:
            lines.append(
                f"  changed while read ({self.changed_count}): {', '.join(self.changed[:5])}"
            )
        for item in self.skipped[:SHOWN_SKIPPED]:
            lines.append(f"  skipped: {item.get('path')}: {item.get('reason')}")
        if self.skipped_count > SHOWN_SKIPPED:
            lines.append(
                f"  skipped: and {self.skipped_count - SHOWN_SKIPPED} more (MANIFEST.txt lists them)"
            )
        if self.offsite is not None:
            lines += self.offsite.summary_lines()
        return lines


@flow(name="backup-all", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
@with_progress("backup-all")
def backup_all(
    retention_days: int | None = None, offsite: bool = False, tier: str = DEFAULT_TIER["full"]
) -> BackupAllResult:
    """Back up the database, uploads, configuration and data folder into one archive."""
    started = time.monotonic()
    settings = load_settings()
    retention = resolve_retention(retention_days, settings.retention_days, tier)
    check_tier(tier, tiers_of("full"))
    if offsite:
        check_offsite(settings)  # a bad destination or key stops the run before any work
    logger = run_logger()
    progress.expect(estimated_bytes(plan_from_settings(settings)))
    with job_lock(settings, "backup-all", must_write=True):
        artifact = write_full_backup_task(settings, tier)
        verify_full_backup(artifact)
        rotation = rotate_backups(
            settings.backups, RetentionPolicy("full", tier, retention), clock.utc_now()
        )
    summary = artifact.detail
    result = BackupAllResult(
        path=str(artifact.path),
        sidecar=str(artifact.sidecar),
        size=artifact.size,
        sha256=artifact.sha256,
        db_type=settings.db_type,
        tier=tier,
        seconds=time.monotonic() - started,
        files=summary.files,
        bytes=summary.bytes,
        tables=dict(summary.tables),
        sections={name: counts[0] for name, counts in summary.sections.items()},
        changed=summary.changed,
        skipped=summary.skipped,
        changed_count=summary.changed_count,
        skipped_count=summary.skipped_count,
        kept=rotation.kept,
        removed=rotation.removed,
        snapshots_removed=rotation.snapshots_removed,
    )
    # After the lock is released: metrics describe the run, they are not part of it.
    record_backup_metrics(settings, "full", artifact.path, artifact.size, result.seconds)
    if offsite:  # outside the lock: a slow upload does not hold up the next backup job
        shipped = copy_offsite(
            settings, [artifact.path], "full", {artifact.path.name: artifact.sha256}
        )
        result = dataclasses.replace(result, offsite=shipped)
    for line in result.summary_lines():
        logger.info(line)
    publish_table(
        "backup-all-summary",
        [
            {"item": "file", "value": artifact.path.name},
            {"item": "size_bytes", "value": artifact.size},
            {"item": "sha256", "value": artifact.sha256},
            {"item": "database", "value": settings.db_type},
            {"item": "tables", "value": len(result.tables)},
            *[
                {"item": f"{name}_files", "value": f"{counts[0]} ({counts[1]} bytes)"}
                for name, counts in summary.sections.items()
            ],
            {"item": "changed_while_read", "value": result.changed_count},
            {"item": "skipped", "value": result.skipped_count},
            {"item": "duration_s", "value": f"{result.seconds:.2f}"},
            {"item": "tier", "value": tier},
            {"item": "kept", "value": len(rotation.kept)},
            {"item": "removed", "value": ", ".join(rotation.removed) or "none"},
        ],
        f"Full backup {artifact.path.name}",
    )
    return result
