"""PostgreSQL point-in-time recovery: `base-backup`, `pitr-restore`, `pitr-setup`, and the
`wal-push`/`wal-fetch` entries of the help (they run from flows/wal_cli.py).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from flows.commands.common import no_prefect
from tasks.core.tiers import DEFAULT_TIER, one_of, tiers_of


def add_commands(commands: Any) -> None:
    """PostgreSQL point-in-time recovery (SPEC: "PostgreSQL point-in-time recovery")."""
    from flows.wal_cli import add_wal_commands

    raw = argparse.RawDescriptionHelpFormatter
    base = commands.add_parser(
        "base-backup",
        help="take a pg_basebackup of the PostgreSQL cluster, the start of point-in-time recovery",
        formatter_class=raw,
        description=(
            "Take a pg_basebackup of the whole PostgreSQL cluster into\n"
            "BACKUP_DIR/base_postgres_YYYYMMDD_HHMMSS.tar.gz (+ .sha256, .meta.json with the\n"
            "start/end WAL positions and times). The file is read back and every member checked\n"
            "against the server's backup_manifest, and the WAL it needs must be in\n"
            "WAL_ARCHIVE_DIR (archive_command = chatbot-backup wal-push %p); a base that cannot\n"
            "be proven is deleted. Needs a role with REPLICATION.\n\n"
            "Reads: PITR_DATABASE_URL (default ADMIN_DATABASE_URL), BACKUP_DIR, WAL_ARCHIVE_DIR,\n"
            "BACKUP_COMPRESSION, BACKUP_COMPRESSION_LEVEL, BACKUP_LOCK_TIMEOUT; with --offsite\n"
            "OFFSITE_DESTINATION and its credentials, BACKUP_ENCRYPTION_RECIPIENTS."
        ),
    )
    base.add_argument(
        "--offsite", action="store_true", help="also copy it to OFFSITE_DESTINATION (verified)"
    )
    base.add_argument(
        "--tier",
        default=DEFAULT_TIER["base"],
        help=f"retention tier: {one_of(tiers_of('base'))} (default: {DEFAULT_TIER['base']})",
    )
    base.add_argument(
        "--retention-days",
        type=int,
        default=None,
        metavar="N",
        help="remove base backups older than N days, keeping the newest 3 (default: the "
        "tier's, 30), and every archived WAL file no kept base needs",
    )
    base.set_defaults(run=_run_base_backup, precheck=_precheck_base_backup)

    pitr = commands.add_parser(
        "pitr-restore",
        help="build a PostgreSQL data directory that recovers to a point in time",
        formatter_class=raw,
        description=(
            "Build, in an empty or new DIR, a PostgreSQL data directory that recovers to\n"
            "--target-time when started: the newest base backup that ended before it,\n"
            "recovery.signal, restore_command (chatbot-backup wal-fetch %f %p),\n"
            "recovery_target_time, recovery_target_action = 'promote'. The live cluster's\n"
            "directory is never touched. A time before the oldest base or after the newest\n"
            "archived WAL is exit 3, a missing WAL segment exit 6, before anything is written.\n\n"
            "Reads: BACKUP_DIR, WAL_ARCHIVE_DIR, PITR_COMMAND, BACKUP_LOCK_TIMEOUT,\n"
            "PITR_DATABASE_URL (default ADMIN_DATABASE_URL: to refuse the live data directory;\n"
            "with --verify, the database whose row counts are reported)."
        ),
    )
    pitr.add_argument(
        "--target-time",
        required=True,
        metavar="T",
        help="UTC, 'YYYY-MM-DD HH:MM[:SS[.ffffff]]' (or ISO 8601 with an offset)",
    )
    pitr.add_argument(
        "--data-dir",
        required=True,
        metavar="DIR",
        help="empty or new folder for the data directory",
    )
    pitr.add_argument(
        "--verify",
        action="store_true",
        help="start it on a free loopback port, wait until recovery reached T, check, stop",
    )
    pitr.set_defaults(run=_run_pitr_restore, precheck=_precheck_pitr_restore)

    setup = commands.add_parser(
        "pitr-setup",
        help="print (or --apply) the PostgreSQL settings point-in-time recovery needs",
        formatter_class=raw,
        description=(
            "Print the server settings PITR needs (wal_level, archive_mode, archive_command\n"
            "calling wal-push, archive_timeout, max_wal_senders) against the server's current\n"
            "values; --apply sets them with ALTER SYSTEM and reloads. archive_mode (and\n"
            "wal_level) take effect only after a server restart: the report says so.\n"
            "Exit 0 when every setting is in place (or was applied), 1 when some must still be\n"
            "made, 4 when --apply cannot reach or change the server.\n\n"
            "Reads: PITR_DATABASE_URL (default ADMIN_DATABASE_URL; --apply needs a superuser),\n"
            "WAL_ARCHIVE_DIR, BACKUP_DIR, PITR_COMMAND, BACKUP_COMPRESSION,\n"
            "BACKUP_COMPRESSION_LEVEL, WAL_PUSH_OFFSITE, APP_ROOT."
        ),
    )
    setup.add_argument(
        "--apply", action="store_true", help="set them with ALTER SYSTEM (a superuser) and reload"
    )
    setup.set_defaults(run=_run_pitr_setup, precheck=no_prefect)
    add_wal_commands(commands)  # listed here; run by flows/wal_cli.py before Prefect loads


def _precheck_base_backup(args: argparse.Namespace) -> None:
    from flows.pitr_precheck import base_retention, check_base_backup
    from tasks.core.settings import load_settings

    check_base_backup(load_settings(), args.tier)
    base_retention(args.retention_days, args.tier)


def _run_base_backup(args: argparse.Namespace) -> int:
    from flows import base_backup

    result = base_backup(offsite=args.offsite, tier=args.tier, retention_days=args.retention_days)
    print("\n".join(result.summary_lines()))
    return 0


def _precheck_pitr_restore(args: argparse.Namespace) -> None:
    """Refusals (exit 3, 6) before Prefect is even imported."""
    from flows.pitr_precheck import precheck
    from tasks.core.settings import load_settings

    args.data_dir = os.path.abspath(os.path.expanduser(args.data_dir))
    precheck(load_settings(), args.target_time, args.data_dir)


def _run_pitr_restore(args: argparse.Namespace) -> int:
    from flows import pitr_restore

    result = pitr_restore(target_time=args.target_time, data_dir=args.data_dir, verify=args.verify)
    print("\n".join(result.summary_lines()))
    return 0


def _run_pitr_setup(args: argparse.Namespace) -> int:
    from flows.pitr_setup import pitr_setup
    from tasks.core.settings import load_settings

    report = pitr_setup(load_settings(), apply=args.apply)
    print("\n".join(report.summary_lines()))
    return 0 if report.complete else 1
