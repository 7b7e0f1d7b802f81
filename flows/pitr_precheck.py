"""The refusals of pitr-restore and base-backup, before anything is written — and before
any Prefect run.

The CLI calls these before it imports Prefect, so a target time outside the archive, a
folder that is not empty or is the live cluster's, a WAL gap, or a server that does not
archive its WAL answers at once (exit 3 or 6); the flows call them again. No Prefect
import here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from tasks.core.errors import ConfigError
from tasks.core.settings import Settings
from tasks.core.tiers import check_tier, tier_of, tiers_of
from tasks.pitr.archiver_status import read_archive_mode
from tasks.pitr.base_catalog import list_bases
from tasks.pitr.recovery import RecoveryPlan, check_target_dir, parse_target_time, plan_recovery
from tasks.pitr.wal_catalog import list_archive, read_histories
from tasks.sources.postgres import connect, parse_database_url


def default_program() -> list[str]:
    """This installation's `chatbot-backup`, as PostgreSQL's commands should call it."""
    beside = Path(sys.executable).with_name("chatbot-backup")
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", "flows"]


def live_data_dir(settings: Settings) -> Path | None:
    """The running cluster's data directory, when the server says (best effort)."""
    try:
        params = parse_database_url(settings.pitr_url())
        with connect(params) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
    except (psycopg.Error, Exception):  # down, not permitted, not configured: rely on "empty"
        return None
    return Path(str(row[0])) if row and row[0] else None


@dataclass(frozen=True)
class Precheck:
    target: datetime
    data_dir: Path
    plan: RecoveryPlan


def precheck(settings: Settings, target_time: str, data_dir: str) -> Precheck:
    """Everything that can refuse the restore, before anything is written."""
    target = parse_target_time(target_time)
    folder = settings.resolve(Path(data_dir))
    check_target_dir(folder, live_data_dir(settings))
    archive = list_archive(settings.wal_archive)
    plan = plan_recovery(target, list_bases(settings.backups), archive, read_histories(archive))
    return Precheck(target, folder, plan)


def check_base_backup(settings: Settings, tier: str) -> dict[str, str]:
    """base-backup's refusals; returns the connection parameters (a secret inside)."""
    check_tier(tier, tiers_of("base"))
    params = parse_database_url(settings.pitr_url())
    if read_archive_mode(params) == "off":
        raise ConfigError(
            "archive_mode is off on the server: a base backup is only useful with its WAL "
            "archived — run `chatbot-backup pitr-setup --apply` and restart PostgreSQL"
        )
    return params


def base_retention(retention_days: int | None, tier: str) -> int:
    """The flag, else the base tier's own retention (SPEC: `base-backup/weekly`, 30 days)."""
    if retention_days is not None:
        from tasks.core.settings import check_retention_days

        try:
            return check_retention_days(retention_days)
        except ValueError as exc:
            raise ConfigError(f"--retention-days: {exc}") from None
    row = tier_of("base", tier)
    return row.retention_days if row is not None else 30
