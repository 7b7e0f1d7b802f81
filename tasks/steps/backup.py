"""Thin, retryable Prefect `@task` wrappers over the plain building blocks.

Every task with a side effect has `cache_policy=NO_CACHE`: with result persistence on,
Prefect would otherwise treat a second `verify` of the same path as already done.
Retries only where a retry can help, and only for errors marked transient. Tasks take
the settings object (its secrets are `SecretStr`, masked in any repr), never a bare
secret, and return paths and small records, never file contents.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.backup.db_artifact import dump_database_artifact
from tasks.core.errors import BackupError
from tasks.core.settings import Settings
from tasks.retention.plan import RetentionPolicy
from tasks.retention.rotate import RotationResult, rotate
from tasks.sources import DumpResult, database_source
from tasks.stream.pipeline import Artifact
from tasks.verify.backup_file import VerifiedFile, verify_compressed_file, verify_fresh_backup


def retry_transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry a BackupError marked transient, nothing else."""
    try:
        state.result()
    except BackupError as exc:
        return exc.transient
    except Exception:
        return False
    return False


def source_for(settings: Settings) -> Any:
    return database_source(
        settings.db_type,
        db_path=settings.db_path,
        database_url=settings.database_url() if settings.db_type == "postgres" else None,
        scratch_dir=settings.backups,
    )


@task(
    name="dump-database",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient_only,
)
def dump_database(settings: Settings, tier: str) -> Artifact[DumpResult]:
    """Dump → compress → checksum → final file, streamed in one pass."""
    return dump_database_artifact(
        source_for(settings),
        settings.backups,
        tier,
        settings.compression,
        settings.backup_compression_level,
    )


@task(name="verify-backup", cache_policy=NO_CACHE)
def verify_backup(
    path: Path, expected_sha256: str | None = None, just_written: bool = False
) -> VerifiedFile:
    """Full check (sha256 + whole stream); `just_written` with the writer's sha256 takes
    the cheap path for a file this run produced and self-checked (verify_fresh_backup)."""
    if just_written and expected_sha256 is not None:
        return verify_fresh_backup(path, expected_sha256)
    return verify_compressed_file(path, expected_sha256)


@task(name="rotate-backups", cache_policy=NO_CACHE)
def rotate_backups(
    folder: Path, policy: RetentionPolicy, now: datetime, db_path: Path | None = None
) -> RotationResult:
    """Retention for the run's kind and tier; `db_path` (SQLite) so that the pre-restore
    snapshots beside the database are rotated too."""
    return rotate(folder, policy, now, db_path=db_path)
