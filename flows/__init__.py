"""chatbot-backup's jobs, one Prefect flow each: `from flows import db_backup`."""

from flows.db_backup import DbBackupResult, db_backup
from flows.monitor import MonitorResult, monitor_backups

__all__ = ["DbBackupResult", "MonitorResult", "db_backup", "monitor_backups"]
