"""What each command's `--help` says beyond its flags: what it does, its exit status, and
which variables it reads (SPEC "Jobs": every command names the variables it reads).

A group module may give its parser a `description` of its own (migrate, pitr do); the
others get theirs from `DESCRIBED` here, applied by `describe_commands` once the parser is
built. `tests/test_cli_answers.py` walks every subcommand and fails on one without.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

# Read by every job that runs a flow: where the installation is, which database, the lock.
_COMMON = (
    "APP_ROOT (where .env is), ADMIN_DB_TYPE, ADMIN_DB_PATH (sqlite) or ADMIN_DATABASE_URL "
    "(postgres), BACKUP_DIR, BACKUP_LOCK_TIMEOUT"
)
_ALERTS = (
    "ALERT_EMAIL, SMTP_HOST, SMTP_PORT, SMTP_USER, SMTP_PASSWORD, ALERT_FROM, "
    "ALERT_SLACK_WEBHOOK, ALERT_WEBHOOK (a failure alert)"
)
_METRICS = "METRICS_FILE, PROMETHEUS_PUSHGATEWAY"
_OFFSITE = (
    "OFFSITE_DESTINATION and its SDK's credentials (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, "
    "AZURE_STORAGE_CONNECTION_STRING, ssh config), BACKUP_ENCRYPTION_RECIPIENTS, "
    "OFFSITE_BANDWIDTH_LIMIT, OFFSITE_OBJECT_LOCK_DAYS, OFFSITE_OBJECT_LOCK_MODE"
)
_BACKUP = "BACKUP_COMPRESSION, BACKUP_COMPRESSION_LEVEL, RETENTION_DAYS"

DESCRIBED: dict[str, tuple[str, str]] = {
    "db-backup": (
        "Back up the admin database only: a consistent SQLite snapshot "
        "(admin_sqlite_YYYYMMDD_HHMMSS.db.gz) or a pg_dump (admin_postgres_*.sql.gz), with a "
        ".sha256 sidecar, read back and checked, then rotation of that kind and tier. "
        "Exit 0 only when the new file verified.",
        f"{_COMMON}, {_BACKUP}, {_METRICS}, {_ALERTS}; with --offsite {_OFFSITE}",
    ),
    "backup-all": (
        "Back up database, uploads, configuration files and application data in one "
        "full_backup_YYYYMMDD_HHMMSS.tar.gz with MANIFEST.txt/MANIFEST.json (every file's size "
        "and sha256, the database's row counts), read back and checked, then rotation. "
        "Pre-restore snapshots are never archived.",
        f"{_COMMON}, UPLOADS_DIR, APP_DATA_DIR, CONFIG_FILES, BACKUP_SKIP_UNREADABLE, {_BACKUP}, "
        f"{_METRICS}, {_ALERTS}; with --offsite {_OFFSITE}",
    ),
    "test-restore": (
        "Prove a backup restores, without touching live data: archive integrity, safe "
        "extraction, every file against MANIFEST.json, the database restored into a scratch "
        "database with the recorded row counts, config/uploads/data present. Exit 0 only when "
        "every check passed, else 1.",
        f"{_COMMON}, RESTORE_TEST_DATABASE_URL (a role with CREATEDB for the PostgreSQL scratch "
        f"database; default ADMIN_DATABASE_URL), {_ALERTS}; for a remote FILE {_OFFSITE}",
    ),
    "db-restore": (
        "Restore the admin database from a .db.gz/.sql.gz backup. Asks first (unless --yes), "
        "after checking the live database can be reached; keeps a pre-restore snapshot; "
        "verifies the backup before anything live is touched; all or nothing. Exit 0 restored "
        "and checked, 1 not confirmed, 3 configuration, 4 database unreachable, 6 bad backup, "
        "7 restore failed (live data unchanged).",
        f"{_COMMON}, {_ALERTS}; for a remote FILE {_OFFSITE}",
    ),
    "restore-all": (
        "Restore database, uploads, configuration files and application data from a full "
        "backup. Asks first (unless --yes), after checking the live database can be reached. "
        "Before the swap the current state is kept as "
        "BACKUP_DIR/full_before_restore_YYYYMMDD_HHMMSS.tar.gz (restorable by restore-all); "
        "live-only files are removed only after that copy is complete. Exit codes as db-restore.",
        f"{_COMMON}, UPLOADS_DIR, APP_DATA_DIR, CONFIG_FILES, BACKUP_COMPRESSION, "
        f"{_ALERTS}; for a remote FILE {_OFFSITE}",
    ),
    "monitor": (
        "Check backup health (age, size, integrity of the latest of each kind, count, rotation, "
        "free space, deployments), write Prometheus metrics, send alerts. Exit 0 all passed, "
        "1 warnings, 2 critical.",
        f"{_COMMON}, MONITOR_* thresholds, {_METRICS}, {_ALERTS}, PREFECT_API_URL "
        "(deployment check); OFFSITE_DESTINATION",
    ),
    "offsite-sync": (
        "Copy every local backup missing off-site (each copy verified by size and sha256), "
        "then apply off-site retention. Exit 0 when every copy verified.",
        f"{_COMMON}, {_OFFSITE}, OFFSITE_RETENTION_DAYS, {_ALERTS}",
    ),
    "offsite-setup": (
        "Apply the S3 lifecycle policy (Glacier after N days, expiry after M days) to the "
        "off-site bucket and check Object Lock when OFFSITE_OBJECT_LOCK_DAYS is set.",
        f"{_OFFSITE}, OFFSITE_GLACIER_DAYS, OFFSITE_EXPIRE_DAYS, OFFSITE_S3_STORAGE_CLASS",
    ),
    "serve": (
        "Run every retention tier on its schedule from one long-running process, and register "
        "the on-demand deployments. Says at start when an off-site tier has no "
        "OFFSITE_DESTINATION.",
        f"{_COMMON}, BACKUP_TIMEZONE, OFFSITE_DESTINATION, PREFECT_API_URL, and what each job "
        "reads",
    ),
    "schedule": (
        "Print the tier schedules with their next run times (no server needed).",
        "BACKUP_TIMEZONE, APP_ROOT",
    ),
}


def describe_commands(choices: Mapping[str, argparse.ArgumentParser]) -> None:
    """Give each subcommand without a description its text and its `reads:` line."""
    for name, parser in choices.items():
        if name not in DESCRIBED or parser.description:
            continue
        what, reads = DESCRIBED[name]
        parser.description = what
        parser.epilog = f"reads: {reads}."
