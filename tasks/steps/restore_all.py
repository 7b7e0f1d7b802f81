"""Prefect `@task` wrappers for restore-all's swap phase (see tasks/restore/all_swap.py).

Not cached and not retried, like every restore step: each changes live data, and a
failed one has already been rolled back (or is left to the journal's recovery).
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.settings import Settings
from tasks.restore.all_postgres import live_row_counts
from tasks.restore.all_swap import swap_in_with_postgres, swap_in_with_sqlite
from tasks.restore.files import SwapJournal, SwapPlan
from tasks.restore.sqlite import StagedSqlite
from tasks.sources.ownership import AS_DUMPED, Ownership
from tasks.steps.restore import postgres_params


@task(name="swap-in-all-sqlite", cache_policy=NO_CACHE)
def swap_all_sqlite(
    settings: Settings,
    plan: SwapPlan,
    swapper: SwapJournal,
    staged: StagedSqlite,
    readable: bool,
    snapshot: Path | None,
    discard: list[Path],
) -> list[str]:
    """Files and database renamed in together, journalled; the labels swapped."""
    return swap_in_with_sqlite(
        settings.backups, plan, swapper, staged, settings.db_path, readable, snapshot, discard
    )


@task(name="restore-postgres-and-swap-in", cache_policy=NO_CACHE)
def swap_all_postgres(
    settings: Settings,
    plan: SwapPlan,
    swapper: SwapJournal,
    artifact: Path,
    compression: str,
    sha256: str,
    expected: dict[str, int] | None,
    discard: list[Path],
    ownership: Ownership = AS_DUMPED,
) -> tuple[list[str], dict[str, int]]:
    """One transaction; the files renamed in just before its COMMIT; the row counts it committed."""
    params = postgres_params(settings)
    swapped, tables = swap_in_with_postgres(
        settings.backups,
        plan,
        swapper,
        params,
        artifact,
        compression,
        sha256,
        expected,
        discard,
        ownership,
    )
    return swapped, tables if tables is not None else live_row_counts(params)
