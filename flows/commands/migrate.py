"""`migrate-to-postgres` (SPEC: "SQLite to PostgreSQL migration")."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from flows.commands.common import PROG

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


def add_commands(commands: Any) -> None:
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
