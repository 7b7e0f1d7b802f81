"""The `chatbot-backup` command: parse arguments, call a flow, print, exit.

Nothing here does backup work. Errors become one line on stderr and the error's exit
code; `--debug` shows the traceback and Prefect's own console logs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from tasks.core.tiers import DEFAULT_TIER, TIERS, one_of, tiers_of

PROG = "chatbot-backup"


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line on stderr like every other failure (argparse's exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


def _retention(value: str) -> int:
    from tasks.core.settings import MAX_RETENTION_DAYS

    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of days, got {value!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 day, got {days}")
    if days > MAX_RETENTION_DAYS:  # refused before anything is written
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_RETENTION_DAYS} days (100 years), got {days}"
        )
    return days


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, description="Backup and restore for the GPT Chatbot platform."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and Prefect's logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db-backup", help="back up the admin database only")
    db.add_argument("--retention-days", type=_retention, default=None, metavar="N")
    db.add_argument("--offsite", action="store_true", help="copy the backup to OFFSITE_DESTINATION")
    db.add_argument(
        "--tier",
        default=DEFAULT_TIER["db"],
        help=f"retention tier: {one_of(TIERS)} (default: {DEFAULT_TIER['db']})",
    )
    db.set_defaults(run=_run_db_backup)

    full = commands.add_parser(
        "backup-all", help="back up database, uploads, configuration and data in one archive"
    )
    full.add_argument("--retention-days", type=_retention, default=None, metavar="N")
    full.add_argument(
        "--offsite", action="store_true", help="copy the backup to OFFSITE_DESTINATION"
    )
    full.add_argument(
        "--tier",
        default=DEFAULT_TIER["full"],
        help=f"{one_of(tiers_of('full'))} (default: {DEFAULT_TIER['full']})",
    )
    full.set_defaults(run=_run_backup_all)

    test = commands.add_parser(
        "test-restore", help="prove a backup restores; exit 0 only when every check passes"
    )
    test.add_argument(
        "--backup-file", default=None, metavar="F", help="default: the newest full backup"
    )
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
        restore.add_argument("file", metavar="FILE", help="the backup file to restore")
        restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        restore.set_defaults(run=_run_restore, job=job)

    monitor = commands.add_parser(
        "monitor", help="check backup health; exit 0 all passed, 1 warnings, 2 critical"
    )
    monitor.set_defaults(run=_run_monitor)

    sync = commands.add_parser(
        "offsite-sync", help="copy every local backup missing off-site, then off-site retention"
    )
    sync.add_argument(
        "--verify", action="store_true", help="also read every off-site copy back and check it"
    )
    sync.set_defaults(run=_run_offsite_sync)

    setup = commands.add_parser(
        "offsite-setup", help="apply the S3 lifecycle policy (Glacier, then expiry) to the bucket"
    )
    setup.add_argument("--glacier-days", type=int, default=None, metavar="N")
    setup.add_argument("--expire-days", type=int, default=None, metavar="N")
    setup.set_defaults(run=_run_offsite_setup)

    serve = commands.add_parser(
        "serve", help="run every scheduled tier (the retention tiers) from one long-running process"
    )
    serve.set_defaults(run=_run_serve)
    schedule = commands.add_parser(
        "schedule", help="print the tier schedules with their next run times (no server needed)"
    )
    schedule.add_argument(
        "--count", type=_count_arg, default=3, metavar="N", help="run times per tier (default: 3)"
    )
    schedule.set_defaults(run=_run_schedule)
    _add_migrate_parser(commands)
    _add_pitr_commands(commands)
    return parser


_MIGRATE_HELP = """\
Copy the SQLite admin database (ADMIN_DB_PATH) into an empty PostgreSQL database,
the guide's migration steps 1-9: a final db-backup of SQLite (tier monthly), tables
with types that keep every value, all rows in one transaction, keys, indexes and
foreign keys after the data, and row counts plus a per-table checksum compared on
both sides before COMMIT. Prints a report (also written to
$BACKUP_DIR/reports/migration_YYYYMMDD_HHMMSS.md) and the .env change.

exit status: 0 migrated; 1 not confirmed; 3 target refused (unreachable, not empty,
not UTF-8, no CREATE right) or configuration; 4 SQLite or PostgreSQL failed; 5 backup
folder busy; 6 verification mismatch (rolled back, target left empty).

reads: ADMIN_DB_TYPE (must be sqlite), ADMIN_DB_PATH, BACKUP_DIR, BACKUP_LOCK_TIMEOUT,
BACKUP_COMPRESSION(_LEVEL), RETENTION_DAYS, MIGRATE_TARGET_DATABASE_URL (instead of
--target-url), APP_ROOT (where .env is), and PGPASSWORD/~/.pgpass when URL has no
password. The password in URL is hidden from ps as soon as the command starts; to keep
it out of ps entirely, leave it out of URL (PGPASSWORD, ~/.pgpass) or set
MIGRATE_TARGET_DATABASE_URL in .env.
"""


def _add_migrate_parser(commands: Any) -> None:
    migrate = commands.add_parser(
        "migrate-to-postgres",
        help="copy the SQLite database into an empty PostgreSQL database, verified before COMMIT",
        description=_MIGRATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    migrate.add_argument(
        "--target-url",
        default=None,
        metavar="URL",
        help="postgresql://user:password@host:port/db of the empty target "
        "(default: MIGRATE_TARGET_DATABASE_URL)",
    )
    migrate.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    migrate.add_argument(
        "--update-env",
        action="store_true",
        help="then set ADMIN_DB_TYPE=postgres and ADMIN_DATABASE_URL in .env (the old one "
        "is kept as .env.before_migration_YYYYMMDD_HHMMSS) and take the first PostgreSQL backup",
    )
    migrate.set_defaults(run=_run_migrate, prepare=_hide_target_url)


def _hide_target_url(args: argparse.Namespace) -> None:
    """Before anything slow: the URL's password out of `ps`, the URL into the environment
    the flow's settings read (never a flow parameter)."""
    if args.target_url:
        from tasks.migrate.cmdline import hide_in_cmdline

        hide_in_cmdline(args.target_url)
        os.environ["MIGRATE_TARGET_DATABASE_URL"] = args.target_url


def _run_migrate(args: argparse.Namespace) -> int:
    from flows import migrate_to_postgres
    from flows.migrate_to_postgres_flow import ask_operator, check_before_asking, not_confirmed

    settings, target = check_before_asking()  # exit 3 before the question when refused
    if not args.yes and not ask_operator(target, settings, args.update_env):
        print(f"{PROG}: {not_confirmed()}", file=sys.stderr)
        return 1
    result = migrate_to_postgres(confirm=True, update_env=args.update_env)
    print("\n".join(result.summary_lines()))
    return 0


def _add_pitr_commands(commands: Any) -> None:
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
        "--tier", default="weekly", help="retention tier recorded in its meta (default: weekly)"
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
        "--data-dir", required=True, metavar="DIR", help="empty or new folder for the data directory"
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
    setup.set_defaults(run=_run_pitr_setup, precheck=_no_prefect)
    add_wal_commands(commands)  # listed here; run by flows/wal_cli.py before Prefect loads


def _precheck_base_backup(args: argparse.Namespace) -> None:
    from flows.pitr_precheck import check_base_backup
    from tasks.core.settings import load_settings

    check_base_backup(load_settings(), args.tier)


def _run_base_backup(args: argparse.Namespace) -> int:
    from flows import base_backup

    result = base_backup(offsite=args.offsite, tier=args.tier)
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

    result = pitr_restore(
        target_time=args.target_time, data_dir=args.data_dir, verify=args.verify
    )
    print("\n".join(result.summary_lines()))
    return 0


def _no_prefect(args: argparse.Namespace) -> None:
    """A command that runs no flow: main() need not load Prefect for it."""
    args.without_prefect = True


def _run_pitr_setup(args: argparse.Namespace) -> int:
    from flows.pitr_setup import pitr_setup
    from tasks.core.settings import load_settings

    report = pitr_setup(load_settings(), apply=args.apply)
    print("\n".join(report.summary_lines()))
    return 0 if report.complete else 1


def _run_db_backup(args: argparse.Namespace) -> int:
    from flows import db_backup

    result = db_backup(retention_days=args.retention_days, offsite=args.offsite, tier=args.tier)
    print("\n".join(result.summary_lines()))
    return 0


def _run_backup_all(args: argparse.Namespace) -> int:
    from flows import backup_all

    result = backup_all(retention_days=args.retention_days, offsite=args.offsite, tier=args.tier)
    print("\n".join(result.summary_lines()))
    return 0


def _run_test_restore(args: argparse.Namespace) -> int:
    """Print every check; exit 0 only when all passed, else 1 with one line on stderr."""
    from flows import test_restore
    from tasks.storage.destination import is_remote_url

    backup_file = args.backup_file
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


def _run_restore(args: argparse.Namespace) -> int:
    """Ask first (the guide's warning) unless --yes, then run the restore flow confirmed."""
    from flows import db_restore, restore_all
    from flows.restore_confirm import ask_operator, not_confirmed
    from tasks.core.errors import VerifyError
    from tasks.stream.compress import sniff_compression

    full = args.job == "restore-all"
    refuse_impossible_date(args.file)
    given = os.path.expanduser(args.file)
    path = os.path.abspath(given)
    if os.path.exists(path):
        sniff_compression(Path(path))  # a file that is no backup fails before the question
    elif os.path.isabs(given):
        raise VerifyError(f"{path}: no such backup file")
    else:
        path = given  # the flow also looks for a bare name in BACKUP_DIR
    if not args.yes and not ask_operator(full):
        print(f"{PROG}: {not_confirmed(args.job)}", file=sys.stderr)
        return 1
    flow = restore_all if full else db_restore
    result = flow(backup_file=path, confirm=True)
    print("\n".join(result.summary_lines()))
    return 0


def _run_monitor(args: argparse.Namespace) -> int:
    from flows import monitor_backups

    result = monitor_backups()
    print("\n".join(result.summary_lines()))
    if result.exit_code != 0:
        rank = {"critical": 0, "warning": 1}
        problems = sorted(
            (f for f in result.findings if f.severity in rank), key=lambda f: rank[f.severity]
        )
        first = f"; first: {problems[0].name}: {problems[0].reason}" if problems else ""
        print(
            f"{PROG}: monitor: {result.status.upper()}: {len(problems)} check(s) "
            f"found problems{first}",
            file=sys.stderr,
        )
    return result.exit_code


def refuse_impossible_date(given: str) -> None:
    """A backup named with a date that never existed was not made by us: say so first."""
    from tasks.core.errors import VerifyError
    from tasks.core.naming import impossible_timestamp

    name = given.rstrip("/").rsplit("/", 1)[-1]
    stamp = impossible_timestamp(name)
    if stamp is not None:
        raise VerifyError(
            f"{name}: {stamp} is not a real date and time, so no backup run made this file; "
            "if it really is a backup, rename it with its true UTC time"
        )


def _count_arg(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 50:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 50, got {value!r}")
    return int(value)


def _run_serve(args: argparse.Namespace) -> int:
    from prefect.logging.handlers import PrefectConsoleHandler

    from deployments.serve import serve_tiers

    # A long-running server logs what it runs (to the journal), unlike one-shot commands.
    for logger in [
        logging.getLogger(),
        *[logging.getLogger(n) for n in logging.root.manager.loggerDict],
    ]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.NOTSET)
    serve_tiers()
    return 0


def _run_schedule(args: argparse.Namespace) -> int:
    from deployments.timetable import print_schedule

    print_schedule(args.count)
    return 0


def _run_offsite_sync(args: argparse.Namespace) -> int:
    from flows.offsite_flow import offsite_sync

    result = offsite_sync(verify=args.verify)
    print("\n".join(result.summary_lines()))
    return 0


def _run_offsite_setup(args: argparse.Namespace) -> int:
    from flows.offsite_flow import offsite_setup

    result = offsite_setup(glacier_days=args.glacier_days, expire_days=args.expire_days)
    print("\n".join(result.summary_lines()))
    return 0


def quiet_prefect_console() -> None:
    """Keep Prefect's console handler from printing tracebacks over our one-line errors.

    Only the console handler is raised; logs still reach the Prefect API and its UI.
    """
    from prefect.logging.handlers import PrefectConsoleHandler

    for logger in [
        logging.getLogger(),
        *[logging.getLogger(n) for n in logging.root.manager.loggerDict],
    ]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.CRITICAL + 10)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    # PostgreSQL runs wal-push/wal-fetch once per WAL segment and waits for them: they
    # take a fast path that never imports Prefect (flows/wal_cli.py).
    from flows.wal_cli import is_wal_command

    if is_wal_command(words):
        from flows.wal_cli import main as wal_main

        return wal_main(words)
    parser = build_parser()
    args = parser.parse_args(words)
    prepare: Callable[[argparse.Namespace], None] | None = getattr(args, "prepare", None)
    if prepare is not None:
        prepare(args)
    debug: bool = args.debug or os.environ.get("CHATBOT_BACKUP_DEBUG") == "1"
    run: Callable[[argparse.Namespace], int] = args.run
    # A local run must not try to phone home from a machine that may have no network.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect gives its local (ephemeral) server 20 s to start; a busy host at 2 a.m. can
    # need more, and a backup must not fail for that.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    try:
        # Checks a command can make without Prefect come first: they answer at once.
        precheck: Callable[[argparse.Namespace], None] | None = getattr(args, "precheck", None)
        if precheck is not None:
            precheck(args)
        if getattr(args, "without_prefect", False):
            return run(args)
        # Prefect configures its logging in prefect.main (not on `import prefect`, which
        # is lazy); it must have run before its console handler can be quieted.
        import prefect.main  # noqa: F401

        if not debug:
            quiet_prefect_console()
        return run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure ends as one line, unless --debug
        if debug:
            raise
        print(f"{PROG}: error: {describe(exc)}", file=sys.stderr)
        return exit_code(exc)


def describe(exc: BaseException) -> str:
    from tasks.core.errors import BackupError
    from tasks.core.redact import redact

    text = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
    return redact(" ".join(text.split()))


def exit_code(exc: BaseException) -> int:
    from tasks.core.errors import BackupError

    code: Any = getattr(exc, "exit_code", 1) if isinstance(exc, BackupError) else 1
    return int(code) or 1
