"""`dr-drill`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flows.commands.common import PROG

SCENARIOS = ("complete-failure", "database-corruption")  # tasks.drill.objectives.SCENARIOS


def add_commands(commands: Any) -> None:
    drill = commands.add_parser(
        "dr-drill",
        help="DR drill: restore the newest backup into a scratch environment, check RTO/RPO",
        description=(
            "Restore the newest full backup (complete-failure) or the newest database backup "
            "(database-corruption) into temporary folders and a scratch database — never the "
            "live ones —, verify files against the manifest, the database's integrity and row "
            "counts, time every step and compare the total with the RTO table and each data "
            "class's newest backup with the RPO table. Writes $BACKUP_DIR/reports/"
            "dr_drill_*.md and .json. Exit 0 when it restored and met RTO and RPO, 1 otherwise "
            "(and it alerts).\n\nreads: BACKUP_DIR, ADMIN_DB_TYPE, ADMIN_DATABASE_URL, "
            "RESTORE_TEST_DATABASE_URL (scratch PostgreSQL databases), OFFSITE_DESTINATION and "
            "BACKUP_ENCRYPTION_IDENTITY (--from-offsite), RTO_COMPLETE_FAILURE_MINUTES (240), "
            "RTO_DATABASE_CORRUPTION_MINUTES (120), MONITOR_RPO_DATABASE_HOURS (6), "
            "MONITOR_RPO_FILES_HOURS (24), MONITOR_RPO_LOGS_HOURS (168), METRICS_FILE and the "
            "alert settings."
        ),
    )
    drill.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="complete-failure",
        help="the RTO scenario to rehearse (default: complete-failure)",
    )
    drill.add_argument(
        "--from-offsite",
        action="store_true",
        help="take the backup from OFFSITE_DESTINATION only (decrypted when encrypted)",
    )
    drill.set_defaults(run=_run_drill)


def _run_drill(args: argparse.Namespace) -> int:
    from flows import dr_drill

    result = dr_drill(scenario=args.scenario, from_offsite=args.from_offsite)
    print("\n".join(result.summary_lines()))
    if not result.passed:
        first = result.reasons[0] if result.reasons else "see the report"
        print(f"{PROG}: dr-drill: FAILED: {first} (report: {result.report_md})", file=sys.stderr)
    return result.exit_code
