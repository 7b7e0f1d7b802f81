"""chatbot-backup's jobs, one Prefect flow each: `from flows import db_backup`.

The flows are imported on first use, not here (a plain module `__getattr__`, PEP 562): a
CLI run imports only the flow it runs (every flow module with its tasks cost ~0.2 s of
start-up, issue 8's tiny-database row). A job's module is `flows/<job>_flow.py`, never
the flow's own name: importing `flows.db_backup` as a module would make the import system
set the package attribute `db_backup` to that module, hiding the flow
(tests/test_flows_package.py checks that no module takes an exported name).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BackupAllResult": "flows.backup_all_flow",
    "backup_all": "flows.backup_all_flow",
    "BaseBackupResult": "flows.base_backup_flow",
    "base_backup": "flows.base_backup_flow",
    "DbBackupResult": "flows.db_backup_flow",
    "DrDrillResult": "flows.dr_drill_flow",
    "dr_drill": "flows.dr_drill_flow",
    "db_backup": "flows.db_backup_flow",
    "RestoreResult": "flows.db_restore_flow",
    "db_restore": "flows.db_restore_flow",
    "ListResult": "flows.list_backups_flow",
    "list_backups": "flows.list_backups_flow",
    "MigrationResult": "flows.migrate_to_postgres_flow",
    "migrate_to_postgres": "flows.migrate_to_postgres_flow",
    "MonitorResult": "flows.monitor_flow",
    "monitor_backups": "flows.monitor_flow",
    "OffsiteResult": "flows.offsite_flow",
    "OffsiteSetupResult": "flows.offsite_setup_flow",
    "OffsiteSyncResult": "flows.offsite_flow",
    "OffsiteVerifyResult": "flows.offsite_verify_flow",
    "offsite_setup": "flows.offsite_setup_flow",
    "offsite_sync": "flows.offsite_flow",
    "offsite_verify": "flows.offsite_verify_flow",
    "PitrRestoreResult": "flows.pitr_restore_flow",
    "pitr_restore": "flows.pitr_restore_flow",
    "restore_all": "flows.restore_all_flow",
    "TestRestoreResult": "flows.test_restore_flow",
    "test_restore": "flows.test_restore_flow",
}

__all__ = [
    "BackupAllResult",
    "BaseBackupResult",
    "DbBackupResult",
    "DrDrillResult",
    "ListResult",
    "MigrationResult",
    "MonitorResult",
    "OffsiteResult",
    "OffsiteSetupResult",
    "OffsiteSyncResult",
    "OffsiteVerifyResult",
    "PitrRestoreResult",
    "RestoreResult",
    "TestRestoreResult",
    "backup_all",
    "base_backup",
    "db_backup",
    "db_restore",
    "dr_drill",
    "list_backups",
    "migrate_to_postgres",
    "monitor_backups",
    "offsite_setup",
    "offsite_sync",
    "offsite_verify",
    "pitr_restore",
    "restore_all",
    "test_restore",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from flows.backup_all_flow import BackupAllResult, backup_all
    from flows.base_backup_flow import BaseBackupResult, base_backup
    from flows.db_backup_flow import DbBackupResult, db_backup
    from flows.db_restore_flow import RestoreResult, db_restore
    from flows.dr_drill_flow import DrDrillResult, dr_drill
    from flows.list_backups_flow import ListResult, list_backups
    from flows.migrate_to_postgres_flow import MigrationResult, migrate_to_postgres
    from flows.monitor_flow import MonitorResult, monitor_backups
    from flows.offsite_flow import OffsiteResult, OffsiteSyncResult, offsite_sync
    from flows.offsite_setup_flow import OffsiteSetupResult, offsite_setup
    from flows.offsite_verify_flow import OffsiteVerifyResult, offsite_verify
    from flows.pitr_restore_flow import PitrRestoreResult, pitr_restore
    from flows.restore_all_flow import restore_all
    from flows.test_restore_flow import TestRestoreResult, test_restore
