"""chatbot-backup's jobs, one Prefect flow each: `from flows import db_backup`."""

from flows.db_backup import DbBackupResult, db_backup

__all__ = ["DbBackupResult", "db_backup"]
