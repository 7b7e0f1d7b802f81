"""Prefect `@task` wrappers for the restore-test checks (`test-restore`).

Each check is its own task, so the Prefect UI shows which one failed. None has side
effects beyond its scratch space, but none may be skipped as "cached" either: a second
test of the same file must read it again.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.archive.extracted import Extraction
from tasks.archive.manifest.model import Manifest
from tasks.archive.scan import ArchiveScan
from tasks.core.settings import Settings
from tasks.sources.postgres import parse_database_url
from tasks.verify.restore_test import (
    ArchiveChecks,
    CheckOutcome,
    check_archive_integrity,
    check_archive_read,
    check_backup_file,
    check_database,
    check_db_artifact_integrity,
    check_extraction,
    check_manifest,
    check_section,
)
from tasks.verify.staging import StagingTarget, run_staging_test


@task(name="check-backup-file", cache_policy=NO_CACHE)
def backup_file_task(path: Path) -> CheckOutcome:
    return check_backup_file(path)


@task(name="check-archive-integrity", cache_policy=NO_CACHE)
def archive_integrity_task(path: Path) -> tuple[CheckOutcome, ArchiveScan | None]:
    return check_archive_integrity(path)


@task(name="check-archive-and-extraction", cache_policy=NO_CACHE)
def archive_read_task(path: Path, workdir: Path) -> ArchiveChecks:
    # One read of the archive for both checks (issue 18); reported as two.
    return check_archive_read(path, workdir)


@task(name="check-db-artifact-integrity", cache_policy=NO_CACHE)
def db_artifact_integrity_task(path: Path) -> CheckOutcome:
    return check_db_artifact_integrity(path)


@task(name="check-extraction", cache_policy=NO_CACHE)
def extraction_task(
    path: Path, scan: ArchiveScan, workdir: Path
) -> tuple[CheckOutcome, Extraction | None]:
    return check_extraction(path, scan, workdir)


@task(name="check-manifest", cache_policy=NO_CACHE)
def manifest_task(
    scan: ArchiveScan, extraction: Extraction
) -> tuple[CheckOutcome, Manifest | None]:
    return check_manifest(scan, extraction)


def scratch_server(settings: Settings) -> tuple[dict[str, str], str] | None:
    """Where a PostgreSQL dump is test-restored, and the variable that names it:
    RESTORE_TEST_DATABASE_URL (a role with CREATEDB), else ADMIN_DATABASE_URL."""
    found = settings.scratch_database_url()
    if found is None:
        return None
    url, variable = found
    return parse_database_url(url), variable


@task(name="check-database", cache_policy=NO_CACHE)
def database_task(
    artifact: Path | None,
    expected_tables: dict[str, int] | None,
    db_type: str | None,
    settings: Settings,
    workdir: Path,
) -> CheckOutcome:
    # The settings travel, not the URL: its password must not become a task parameter.
    server = scratch_server(settings)
    params, variable = server if server is not None else (None, "ADMIN_DATABASE_URL")
    return check_database(artifact, expected_tables, db_type, params, workdir, variable)


@task(name="check-section", cache_policy=NO_CACHE)
def section_task(check: str, manifest: Manifest, extraction: Extraction, top: str) -> CheckOutcome:
    return check_section(check, manifest, extraction, top)


@task(name="check-staging-server", cache_policy=NO_CACHE)
def staging_task(archive: Path, target: StagingTarget) -> CheckOutcome:
    return run_staging_test(archive, target)
