"""`test-restore`, `db-restore` and `restore-all`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from flows.commands.common import PROG, refuse_impossible_date
from tasks.core.errors import ConfigError


def add_commands(commands: Any) -> None:
    test = commands.add_parser(
        "test-restore", help="prove a backup restores; exit 0 only when every check passes"
    )
    test_pick = test.add_mutually_exclusive_group()
    test_pick.add_argument(
        "--backup-file", default=None, metavar="F", help="default: the newest good full backup"
    )
    add_choice_flags(test_pick, "full")
    test.add_argument(
        "--staging-server",
        default=None,
        metavar="USER@HOST",
        help="also copy the backup there over SSH and run test-restore on it",
    )
    test.set_defaults(run=_run_test_restore)

    for job, what in (
        ("db-restore", "restore the admin database from a .db.gz/.sql.gz backup"),
        ("restore-all", "restore database, uploads, configuration and data from a full backup"),
    ):
        restore = commands.add_parser(job, help=what)
        restore.add_argument(
            "file",
            metavar="FILE",
            nargs="?",
            default=None,
            help="the backup file (or off-site URL) to restore; or --latest / --as-of",
        )
        add_choice_flags(restore, "full" if job == "restore-all" else "database")
        restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        restore.add_argument(
            "--no-owner",
            action="store_true",
            help="PostgreSQL: leave the backup's owners out; its objects belong to the "
            "restoring role (a server without the backup's roles)",
        )
        restore.add_argument(
            "--no-privileges",
            action="store_true",
            help="PostgreSQL: leave the backup's GRANTs and REVOKEs out",
        )
        restore.set_defaults(run=_run_restore, precheck=_precheck_restore, job=job)


def add_choice_flags(parser: Any, kind: str) -> None:
    parser.add_argument(
        "--latest", action="store_true", help=f"the newest good {kind} backup, local or off-site"
    )
    parser.add_argument(
        "--as-of",
        default=None,
        metavar='"YYYY-MM-DD HH:MM[:SS]"',
        help=f"the newest good {kind} backup made at or before this UTC time "
        "(local first, then OFFSITE_DESTINATION)",
    )


def choose(args: argparse.Namespace, job: str) -> str | None:
    """The FILE, or the backup --latest/--as-of picks (said on stdout); None: the job's
    own default. The choice is made before any question, so an impossible time fails fast."""
    from tasks.catalog.listing import parse_as_of
    from tasks.core.settings import load_settings

    given = getattr(args, "file", None) or getattr(args, "backup_file", None)
    if given and (args.latest or args.as_of):
        raise ConfigError("give FILE, --latest or --as-of, not more than one")
    if given:
        return str(given)
    if not args.latest and not args.as_of:
        if job == "test-restore":
            return None
        raise ConfigError(f'{job}: give the backup FILE, --latest or --as-of "YYYY-MM-DD HH:MM"')
    if args.as_of:
        parse_as_of(args.as_of)  # a malformed time fails before the settings are read
    settings = load_settings()  # a configuration error answers before Prefect loads
    from flows.restore_job import chosen_backup

    chosen = chosen_backup(settings, job, None, args.as_of)
    print(f"{job}: {'--as-of ' + args.as_of if args.as_of else '--latest'} chose {chosen}")
    return chosen


def _run_test_restore(args: argparse.Namespace) -> int:
    """Print every check; exit 0 only when all passed, else 1 with one line on stderr."""
    from flows import test_restore
    from tasks.storage.destination import is_remote_url

    backup_file = choose(args, "test-restore")
    if backup_file:
        refuse_impossible_date(backup_file)
    if backup_file and not is_remote_url(backup_file):  # s3://... goes to the flow as is
        backup_file = os.path.abspath(os.path.expanduser(backup_file))
    result = test_restore(backup_file=backup_file, staging_server=args.staging_server)
    print("\n".join(result.summary_lines()))
    if result.passed:
        return 0
    first = result.failed[0]
    print(
        f"{PROG}: test-restore failed: {len(result.failed)} of {len(result.checks)} checks "
        f"failed; first: {first.name}: {first.reason}",
        file=sys.stderr,
    )
    return 1


def _precheck_restore(args: argparse.Namespace) -> None:
    """Before Prefect loads and before the question: the file is sniffed and the live
    database reached, so a "yes" is never asked for nothing (and a "no" is fast)."""
    from tasks.core.errors import VerifyError
    from tasks.core.settings import load_settings
    from tasks.restore.reach import check_live_database
    from tasks.stream.compress import sniff_compression

    file = choose(args, args.job)
    assert file is not None
    refuse_impossible_date(file)
    given = os.path.expanduser(file)
    path = os.path.abspath(given)
    if os.path.exists(path):
        sniff_compression(Path(path))  # a file that is no backup fails before the question
    elif os.path.isabs(given):
        raise VerifyError(f"{path}: no such backup file")
    else:
        path = given  # the flow also looks for a bare name in BACKUP_DIR
    args.restore_path = path
    check_live_database(load_settings())


def _run_restore(args: argparse.Namespace) -> int:
    """Ask first (the guide's warning) unless --yes, then run the restore flow confirmed."""
    from flows import db_restore, restore_all
    from flows.restore_confirm import ask_operator, not_confirmed

    full = args.job == "restore-all"
    if not args.yes and not ask_operator(full):
        print(f"{PROG}: {not_confirmed(args.job)}", file=sys.stderr)
        return 1
    flow = restore_all if full else db_restore
    result = flow(
        backup_file=args.restore_path,
        confirm=True,
        no_owner=args.no_owner,
        no_privileges=args.no_privileges,
    )
    print("\n".join(result.summary_lines()))
    return 0
