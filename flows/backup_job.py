"""The skeleton both backup jobs share (db-backup, backup-all): the one place that says
what a backup run is.

Settings, retention and tier are checked (and the off-site destination, when asked for)
before any work; under the backup folder's lock the job's artifact is written, read back
and the folder rotated; after the lock, the metrics, the off-site copy (a slow upload
does not hold up the next backup job), the summary in the log and the run's table
artifact. Each flow supplies only what differs: how to write and verify its artifact,
its result type and its summary rows.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from flows.locking import job_lock
from flows.offsite_flow import OffsiteResult, check_offsite, copy_offsite
from flows.reporting import publish_table, run_logger
from tasks.backup.full_backup import estimated_bytes, plan_from_settings
from tasks.backup.set_aside import set_aside_unproven
from tasks.core import clock
from tasks.core.naming import Kind
from tasks.core.settings import Settings, load_settings
from tasks.core.tiers import check_tier, resolve_retention
from tasks.retention.plan import RetentionPolicy
from tasks.retention.rotate import RotationResult
from tasks.steps.backup import rotate_backups
from tasks.steps.monitor import record_backup_metrics
from tasks.stream import progress
from tasks.stream.allocator import share_one_arena
from tasks.stream.pipeline import Artifact

D = TypeVar("D")


class BackupResult(Protocol):
    """What the skeleton reads of a job's (frozen dataclass) result."""

    @property
    def seconds(self) -> float: ...
    @property
    def tables(self) -> dict[str, int]: ...
    @property
    def offsite(self) -> OffsiteResult | None: ...
    def summary_lines(self) -> list[str]: ...


R = TypeVar("R", bound=BackupResult)


@dataclass(frozen=True)
class BackupRun(Generic[D]):
    """What a run produced, for the flow to build its result from."""

    settings: Settings
    tier: str
    artifact: Artifact[D]
    rotation: RotationResult
    seconds: float


@dataclass(frozen=True)
class BackupJob(Generic[D, R]):
    """What one kind of backup job does differently."""

    name: str  # the flow's and the lock's name: db-backup, backup-all
    kind: Kind
    title: str  # the table artifact's description, before the file name
    tiers: tuple[str, ...]
    write: Callable[[Settings, str], Artifact[D]]
    verify: Callable[[Artifact[D]], object]
    result: Callable[[BackupRun[D]], R]
    rows: Callable[[BackupRun[D], R], list[dict[str, Any]]]  # between tables and duration
    snapshots_beside: Callable[[Settings], Path | None] = lambda settings: None


def run_backup_job(job: BackupJob[D, R], retention_days: int | None, offsite: bool, tier: str) -> R:
    started = time.monotonic()
    share_one_arena()  # the streams' freed blocks kept once, not per thread (peak memory)
    settings = load_settings()
    retention = resolve_retention(retention_days, settings.retention_days, tier)
    check_tier(tier, job.tiers)
    if offsite:
        check_offsite(settings)  # a bad destination or key stops the run before any work
    logger = run_logger()
    if job.kind == "full":  # the percentage of the run's progress artifact
        progress.expect(estimated_bytes(plan_from_settings(settings)))
    with job_lock(settings, job.name, must_write=True):
        artifact = job.write(settings, tier)
        try:
            job.verify(artifact)
        except BaseException as exc:
            raise set_aside_unproven(artifact.path, exc) from None
        rotation = rotate_backups(
            settings.backups,
            RetentionPolicy(job.kind, tier, retention),
            clock.utc_now(),
            job.snapshots_beside(settings),
        )
    run = BackupRun(settings, tier, artifact, rotation, time.monotonic() - started)
    result = job.result(run)
    # After the lock is released: metrics describe the run, they are not part of it.
    record_backup_metrics(settings, job.kind, artifact.path, artifact.size, result.seconds)
    if offsite:  # outside the lock: a slow upload does not hold up the next backup job
        shipped = copy_offsite(
            settings, [artifact.path], job.kind, {artifact.path.name: artifact.sha256}
        )
        result = dataclasses.replace(result, offsite=shipped)  # type: ignore[type-var]
    for line in result.summary_lines():
        logger.info(line)
    publish_table(
        f"{job.name}-summary",
        [
            {"item": "file", "value": artifact.path.name},
            {"item": "size_bytes", "value": artifact.size},
            {"item": "sha256", "value": artifact.sha256},
            {"item": "database", "value": settings.db_type},
            {"item": "tables", "value": len(result.tables)},
            *job.rows(run, result),
            {"item": "duration_s", "value": f"{result.seconds:.2f}"},
            {"item": "tier", "value": tier},
            {"item": "kept", "value": len(rotation.kept)},
            {"item": "removed", "value": ", ".join(rotation.removed) or "none"},
        ],
        f"{job.title} {artifact.path.name}",
    )
    return result
