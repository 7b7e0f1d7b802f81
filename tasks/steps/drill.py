"""Prefect `@task` wrappers for the DR drill (`dr-drill`); the checks are test-restore's.

Settings travel into the tasks, never a database URL: its password must not become a
task parameter. Nothing is cached: every drill reads its backup again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.settings import Settings
from tasks.drill.scratch_db import ScratchDatabase, discard, prove, restore_scratch
from tasks.drill.source import DrillSource, fetch, local_source, offsite_source
from tasks.sources.postgres import parse_database_url


def scratch_server(settings: Settings) -> dict[str, str] | None:
    """Where scratch databases go: RESTORE_TEST_DATABASE_URL, else ADMIN_DATABASE_URL."""
    for url in (settings.restore_test_database_url, settings.admin_database_url):
        if url is not None and url.get_secret_value():
            return parse_database_url(url.get_secret_value())
    return None


@task(name="drill-find-backup", cache_policy=NO_CACHE)
def find_backup_task(settings: Settings, scenario: str, from_offsite: bool) -> DrillSource:
    if from_offsite:
        return offsite_source(settings, scenario)
    return local_source(settings.backups, scenario)


@task(name="drill-fetch", cache_policy=NO_CACHE)
def fetch_task(
    source: DrillSource, settings: Settings, workdir: Path
) -> tuple[Path, dict[str, Any]]:
    return fetch(source, settings, workdir)


@task(name="drill-restore-database", cache_policy=NO_CACHE)
def restore_database_task(
    artifact: Path, db_type: str | None, workdir: Path, settings: Settings
) -> ScratchDatabase:
    return restore_scratch(artifact, db_type, workdir, scratch_server(settings))


@task(name="drill-prove-database", cache_policy=NO_CACHE)
def prove_database_task(
    scratch: ScratchDatabase, expected: dict[str, int] | None, settings: Settings
) -> str:
    return prove(scratch, expected, scratch_server(settings))


@task(name="drill-drop-scratch", cache_policy=NO_CACHE)
def discard_task(scratch: ScratchDatabase, settings: Settings) -> None:
    discard(scratch, scratch_server(settings))
