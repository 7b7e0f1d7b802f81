"""Prefect `@task` wrappers for the full backup (`backup-all`).

Thin and side-effecting, so `cache_policy=NO_CACHE`; only a transient database error
(busy SQLite, dropped connection) is retried — the whole write starts again, and a
failed attempt leaves nothing under a final name.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.archive.full_content import ArchiveSummary
from tasks.archive.scan import ArchiveScan, scan_archive
from tasks.backup.full_backup import plan_from_settings, write_full_backup
from tasks.core.errors import VerifyError
from tasks.core.settings import Settings
from tasks.steps.backup import retry_transient_only, source_for
from tasks.stream.pipeline import Artifact


@task(
    name="write-full-backup",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient_only,
)
def write_full_backup_task(settings: Settings, tier: str) -> Artifact[ArchiveSummary]:
    """Database snapshot + uploads + config + data → one archive with its manifest."""
    return write_full_backup(source_for(settings), plan_from_settings(settings), tier)


@task(name="verify-full-backup", cache_policy=NO_CACHE)
def verify_full_backup(artifact: Artifact[ArchiveSummary]) -> ArchiveScan:
    """Read the new archive back once: checksum, stream, tar headers, manifest last."""
    scan = scan_archive(artifact.path, artifact.sha256)
    if not scan.manifest_is_last or scan.top != artifact.detail.name:
        raise VerifyError(f"{artifact.path.name}: the archive read back is not the one written")
    return scan
