"""`base-backup`: a pg_basebackup of the PostgreSQL cluster, the start of point-in-time recovery.

Order: settings and tier checked → backup folder lock → pg_basebackup streamed into
`base_postgres_*.tar.gz` + sidecar → the file read back and checked against the server's
manifest → the WAL it needs found in the archive, each segment checked → `.meta.json`
(the commit marker) → optionally off-site. A base that cannot be proven is deleted:
nothing half-checked is ever picked by pitr-restore.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass

from prefect import flow

from flows.hooks import FAILURE_HOOKS
from flows.offsite_flow import OffsiteResult, check_offsite, copy_offsite
from flows.pitr_precheck import base_retention, check_base_backup
from flows.reporting import human_size, publish_table, run_logger
from tasks.core import clock
from tasks.core.lock import backup_dir_lock
from tasks.core.settings import load_settings
from tasks.pitr.base_catalog import DEFAULT_BASE_TIER
from tasks.pitr.basebackup import write_base_meta
from tasks.pitr.rotation import PitrRotation
from tasks.pitr.segments import format_lsn
from tasks.steps.monitor import record_backup_metrics
from tasks.steps.pitr import (
    check_base_wal_step,
    rotate_pitr_step,
    take_base_backup_step,
    verify_base_backup_step,
)


@dataclass(frozen=True)
class BaseBackupResult:
    path: str
    sidecar: str
    meta: str
    size: int
    sha256: str
    tier: str
    timeline: int
    start_lsn: str
    end_lsn: str
    start_wal: str
    end_wal: str
    files: int
    content_bytes: int
    wal_archive: str
    seconds: float
    rotation: PitrRotation | None = None
    offsite: OffsiteResult | None = None

    def summary_lines(self) -> list[str]:
        offsite = self.offsite.summary_lines() if self.offsite is not None else []
        rotation = self.rotation.summary_lines() if self.rotation is not None else []
        return [
            "Base backup completed",
            f"  file:     {self.path}",
            f"  size:     {human_size(self.size)} ({self.size} bytes; "
            f"{self.files} files, {human_size(self.content_bytes)} uncompressed)",
            f"  sha256:   {self.sha256}",
            f"  WAL:      timeline {self.timeline}, {self.start_lsn} .. {self.end_lsn} "
            f"({self.start_wal} .. {self.end_wal}, in {self.wal_archive})",
            "  checked:  every file against the server's backup_manifest; its WAL archived",
            f"  duration: {self.seconds:.1f} s",
            f"  tier:     {self.tier}",
            *rotation,
            *offsite,
        ]


@flow(name="base-backup", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
def base_backup(
    offsite: bool = False, tier: str = DEFAULT_BASE_TIER, retention_days: int | None = None
) -> BaseBackupResult:
    """Take a pg_basebackup (tar, SHA256 manifest), prove it and its WAL, keep it; then
    rotate the base backups of its tier and the WAL no kept base needs."""
    started = time.monotonic()
    settings = load_settings()
    check_base_backup(settings, tier)
    retention = base_retention(retention_days, tier)
    if offsite:
        check_offsite(settings)
    logger = run_logger()
    with backup_dir_lock(
        settings.backups, "base-backup", settings.backup_lock_timeout, must_write=True
    ):
        started_at = clock.utc_now()
        artifact = take_base_backup_step(settings)
        ended_at = clock.utc_now()
        try:
            contents = verify_base_backup_step(artifact.path, artifact.sha256)
            wal = check_base_wal_step(settings.wal_archive, contents)
            meta = write_base_meta(
                artifact, contents, wal, tier=tier, started_at=started_at, ended_at=ended_at
            )
        except BaseException:
            # Not proven, not kept: pitr-restore must never start from it.
            for path in (artifact.path, artifact.sidecar):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            raise
        rotation = rotate_pitr_step(settings, retention, clock.utc_now())
    result = BaseBackupResult(
        path=str(artifact.path),
        sidecar=str(artifact.sidecar),
        meta=str(meta),
        size=artifact.size,
        sha256=artifact.sha256,
        tier=tier,
        timeline=contents.timeline,
        start_lsn=format_lsn(contents.start_lsn),
        end_lsn=format_lsn(contents.end_lsn),
        start_wal=contents.start_wal,
        end_wal=wal.segments[-1],
        files=contents.files,
        content_bytes=contents.content_bytes,
        wal_archive=str(settings.wal_archive),
        seconds=time.monotonic() - started,
        rotation=rotation,
    )
    if offsite:  # outside the lock, like the other backups
        shipped = copy_offsite(
            settings, [artifact.path], "base", {artifact.path.name: artifact.sha256}
        )
        result = dataclasses.replace(result, offsite=shipped)
    record_backup_metrics(settings, "base", artifact.path, artifact.size, result.seconds)
    for line in result.summary_lines():
        logger.info(line)
    publish_table(
        "base-backup-summary",
        [
            {"item": "file", "value": artifact.path.name},
            {"item": "size_bytes", "value": artifact.size},
            {"item": "sha256", "value": artifact.sha256},
            {"item": "timeline", "value": contents.timeline},
            {"item": "start_lsn", "value": result.start_lsn},
            {"item": "end_lsn", "value": result.end_lsn},
            {"item": "wal", "value": f"{result.start_wal} .. {result.end_wal}"},
            {"item": "files", "value": contents.files},
            {"item": "duration_s", "value": f"{result.seconds:.2f}"},
            {"item": "tier", "value": tier},
            {"item": "bases_removed", "value": len(rotation.removed_bases)},
            {"item": "wal_removed", "value": len(rotation.removed_wal)},
            {"item": "wal_kept_from", "value": rotation.oldest_needed or "-"},
        ],
        f"Base backup {artifact.path.name}",
    )
    return result
