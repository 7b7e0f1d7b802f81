"""chatbot-backup's jobs, one Prefect flow each: `from flows import db_backup`."""

from flows.backup_all import BackupAllResult, backup_all
from flows.db_backup import DbBackupResult, db_backup
from flows.db_restore import RestoreResult, db_restore
from flows.monitor import MonitorResult, monitor_backups
from flows.offsite import (
    OffsiteResult,
    OffsiteSetupResult,
    OffsiteSyncResult,
    offsite_setup,
    offsite_sync,
)
from flows.restore_all import restore_all
from flows.test_restore import TestRestoreResult, test_restore

__all__ = [
    "BackupAllResult",
    "DbBackupResult",
    "MonitorResult",
    "OffsiteResult",
    "OffsiteSetupResult",
    "OffsiteSyncResult",
    "RestoreResult",
    "TestRestoreResult",
    "backup_all",
    "db_backup",
    "db_restore",
    "monitor_backups",
    "offsite_setup",
    "offsite_sync",
    "restore_all",
    "test_restore",
]
