"""`pitr-restore`: a data directory that recovers to a point in time, optionally proven.

Plan, then execute (tasks/pitr/recovery.py): the target time is parsed, the folder must
be empty or new and not the live cluster's, the newest base that ended before T is
chosen and the WAL from it to T checked — every refusal before anything is written (a T
outside the archive is exit 3, a WAL gap exit 6). Then the base is extracted and checked
file by file, `pg_verifybackup` re-reads it, and the recovery settings are added. With
`verify`, the directory is started on a free loopback port until it paused at T, checked
and stopped. The live cluster is never touched; the operator starts the new directory
(or moves it into place) when ready — see docs/ops/pitr.md.

The refusals live in flows/pitr_precheck.py, without Prefect, so the CLI answers a bad
time or folder before any Prefect run starts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prefect import flow

from flows.hooks import FAILURE_HOOKS
from flows.pitr_precheck import default_program, precheck
from flows.reporting import publish_table, run_logger
from tasks.core import clock
from tasks.core.errors import ConfigError, RestoreError
from tasks.core.lock import backup_dir_lock
from tasks.core.settings import load_settings
from tasks.pitr.commands import program_words, restore_command, wal_env
from tasks.pitr.pgserver import data_dir_major, find_bindir, server_owner
from tasks.pitr.recovery import (
    empty_folder,
    show_time,
)
from tasks.pitr.recovery_verify import RecoveryCheck
from tasks.pitr.segments import format_lsn
from tasks.sources.postgres import parse_database_url
from tasks.steps.pitr import (
    lay_out_step,
    pg_verifybackup_step,
    plan_recovery_step,
    verify_recovery_step,
)


@dataclass(frozen=True)
class PitrRestoreResult:
    data_dir: str
    target_time: str
    base: str
    timeline: int
    segments: int
    files: int
    restore_command: str
    verified: bool
    check: RecoveryCheck | None = None
    tables: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary_lines(self) -> list[str]:
        lines = [
            "Point-in-time recovery prepared" + (" and verified" if self.verified else ""),
            f"  data dir: {self.data_dir}",
            f"  target:   {self.target_time} (recovery_target_action = 'promote')",
            f"  base:     {self.base} ({self.files} files, checked against its manifest)",
            f"  WAL:      {self.segments} segment(s) needed, timeline {self.timeline}",
        ]
        if self.check is not None:
            last = show_time(self.check.last_replayed) if self.check.last_replayed else "none"
            lines += [
                f"  verified: recovery paused at the target ({self.check.stopped_at})",
                f"            last transaction replayed: {last}; databases: "
                f"{', '.join(self.check.databases)}",
            ]
            if self.tables:
                counts = ", ".join(f"{k}={v}" for k, v in sorted(self.tables.items()))
                lines.append(f"            rows: {counts}")
        else:
            lines.append("  not started: run with --verify to prove it recovers to the target")
        lines += [
            f"  duration: {self.seconds:.1f} s",
            "  next:     stop the live server, start this directory (pg_ctl -D DIR start, or "
            "move it into place); it recovers to the target and opens — docs/ops/pitr.md",
        ]
        return lines


@flow(name="pitr-restore", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
def pitr_restore(target_time: str, data_dir: str, verify: bool = False) -> PitrRestoreResult:
    """Build a data directory in `data_dir` that recovers to `target_time` (UTC); `verify`
    starts it on a free loopback port until it reached the target, checks it and stops it."""
    started = time.monotonic()
    settings = load_settings()
    checked = precheck(settings, target_time, data_dir)
    folder, target = checked.data_dir, checked.target
    logger = run_logger()
    program = program_words(settings.pitr_command, default_program())
    command = restore_command(program, wal_env(settings.wal_archive))
    owner = server_owner(folder)
    created = not folder.exists()
    with backup_dir_lock(settings.backups, "pitr-restore", settings.backup_lock_timeout):
        plan = plan_recovery_step(settings, target)  # again, under the lock: rotation waits
        laid = lay_out_step(plan, folder, command, owner, clock.utc_now())
    try:
        bindir = find_bindir(data_dir_major(folder))
        pg_verifybackup_step(bindir, folder)
    except BaseException:
        empty_folder(folder, remove=created)  # files that do not match are no restore
        raise
    check: RecoveryCheck | None = None
    if verify:
        try:  # the application's database, whose row counts the check reports
            params = parse_database_url(settings.pitr_url())
        except ConfigError:
            params = {}
        dbname, user = params.get("dbname"), params.get("user")
        try:
            check = verify_recovery_step(
                folder, target, bindir, owner, dbname, tuple(u for u in (user,) if u)
            )
        except RestoreError as exc:
            raise RestoreError(
                f"{exc} — {folder} is left as laid out, for inspection; do not put it in service"
            ) from exc
    result = PitrRestoreResult(
        data_dir=str(folder),
        target_time=show_time(target),
        base=plan.base.name,
        timeline=plan.target_timeline,
        segments=len(plan.segments),
        files=laid.files,
        restore_command=command,
        verified=check is not None,
        check=check,
        tables=check.tables if check is not None else {},
        seconds=time.monotonic() - started,
    )
    for line in result.summary_lines():
        logger.info(line)
    rows: list[dict[str, object]] = [
        {"item": "data_dir", "value": result.data_dir},
        {"item": "target", "value": result.target_time},
        {"item": "base", "value": result.base},
        {"item": "base_start", "value": format_lsn(plan.base.start_lsn)},
        {"item": "timeline", "value": result.timeline},
        {"item": "wal_segments", "value": result.segments},
        {"item": "verified", "value": "yes" if check is not None else "no"},
    ]
    if check is not None:
        rows.append({"item": "stopped", "value": check.stopped_at})
    publish_table("pitr-restore-summary", rows, f"PITR to {result.target_time}")
    return result
