"""The full-backup plan of a small platform laid out under one folder, for tests that
call `write_full_backup` directly (without settings or Prefect).

`root/data/admin.db` the database, `root/data/uploads` the uploads, `root/data` the
application data, `root/backups` the backup folder (made here).
"""

from __future__ import annotations

from pathlib import Path

from tasks.backup.full_backup import FullBackupPlan


def platform_plan(root: Path, config_files: tuple[Path, ...] = ()) -> FullBackupPlan:
    (root / "backups").mkdir(exist_ok=True)
    return FullBackupPlan(
        backup_dir=root / "backups",
        db_path=root / "data" / "admin.db",
        uploads=root / "data" / "uploads",
        data=root / "data",
        config_files=config_files,
        skip_unreadable=False,
    )
