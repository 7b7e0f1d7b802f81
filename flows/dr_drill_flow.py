"""`dr-drill`: the guide's quarterly disaster-recovery drill, run by the tool itself.

Restores, into a scratch environment (a private temporary folder and a scratch database;
never the live ones), the newest full backup (`complete-failure`) or the newest database
backup (`database-corruption`) — from the off-site destination only with `from_offsite`
— and proves it: files against the manifest, the database's integrity and a query per
table against the recorded row counts. Each step is timed; the total is compared with the
RTO table and the newest backup of each data class with the RPO table. The report goes to
`$BACKUP_DIR/reports/dr_drill_*.md|.json` and a Prefect markdown artifact; the metrics
`chatbot_dr_drill_*` feed the failed/overdue-drill alert rules; a failed drill alerts.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow

from flows.hooks import FAILURE_HOOKS
from flows.reporting import run_logger
from tasks.core.errors import BackupError
from tasks.core.redact import redact
from tasks.core.settings import Settings, load_settings
from tasks.drill.objectives import (
    COMPLETE_FAILURE,
    check_scenario,
    rpo_checks,
    rto_check,
)
from tasks.drill.report import STEPS, DrillReport, StepResult, write_report
from tasks.drill.scratch_db import ScratchDatabase
from tasks.drill.source import DrillSource
from tasks.monitor.alerts import Alert, send_alert
from tasks.monitor.metrics import record_dr_drill
from tasks.steps.drill import (
    discard_task,
    fetch_task,
    find_backup_task,
    prove_database_task,
    restore_database_task,
)
from tasks.steps.verify import (
    archive_integrity_task,
    backup_file_task,
    db_artifact_integrity_task,
    extraction_task,
    manifest_task,
    section_task,
)
from tasks.verify.restore_test import (
    APP_DATA,
    CONFIG_FILES,
    UPLOADS,
    CheckOutcome,
    is_full_archive,
    scratch_folder,
)

REPORT_ARTIFACT = "dr-drill-report"


class _StepFailed(Exception):
    """A step failed; its StepResult is already in the report."""


@dataclass(frozen=True)
class DrDrillResult:
    scenario: str
    from_offsite: bool
    passed: bool
    backup: str | None
    seconds: float
    report_md: str
    report_json: str
    reasons: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def summary_lines(self) -> list[str]:
        lines = [f"DR drill ({self.scenario}) of {self.backup or 'no backup'}"]
        lines += [
            f"  {s['result'].upper():<7} {s['step']:<16} {s['seconds']:>8.2f} s  {s['detail']}"
            for s in self.steps
        ]
        verdict = "PASSED: restored, RTO and RPO met" if self.passed else "FAILED"
        lines.append(f"{verdict} in {self.seconds:.1f} s; report {self.report_md}")
        lines += [f"  - {reason}" for reason in self.reasons]
        return lines


class _Runner:
    """Times each step and records it; after a failed step the rest are 'not run'."""

    def __init__(self, report: DrillReport) -> None:
        self.report = report

    def step(self, name: str, body: Callable[[], tuple[str, Any]]) -> Any:
        started = time.monotonic()
        try:
            detail, value = body()
            passed = True
        except (BackupError, OSError, EOFError) as exc:
            detail, value, passed = redact(str(exc)) or type(exc).__name__, None, False
        self.report.steps.append(StepResult(name, passed, time.monotonic() - started, detail))
        if not passed:
            raise _StepFailed(name)
        return value

    def not_run(self, because: str) -> None:
        done = {s.name for s in self.report.steps}
        for name in STEPS:
            if name not in done:
                self.report.steps.append(StepResult(name, False, 0.0, f"not run: {because}", False))


def _outcome(check: CheckOutcome) -> str:
    if not check.passed:
        raise BackupError(f"{check.name}: {check.reason}")
    return check.reason


def _database_steps(
    run: _Runner,
    settings: Settings,
    artifact: Path,
    db_type: str | None,
    expected: dict[str, int] | None,
    workdir: Path,
    files: Callable[[], tuple[str, Any]],
) -> None:
    scratch: ScratchDatabase = run.step(
        "database restore",
        lambda: _restored(restore_database_task(artifact, db_type, workdir, settings)),
    )
    try:
        run.step("files", files)
        run.step("checks", lambda: (prove_database_task(scratch, expected, settings), None))
    finally:
        discard_task(scratch, settings)


def _restored(scratch: ScratchDatabase) -> tuple[str, ScratchDatabase]:
    return f"restored into a {scratch.where}", scratch


def _full_archive(run: _Runner, settings: Settings, path: Path, workdir: Path) -> None:
    from tasks.archive.verdict import read_extracted_manifest

    def verify() -> tuple[str, Any]:
        check, scan = archive_integrity_task(path)
        return _outcome(check), scan

    scan = run.step("verify", verify)

    def extract() -> tuple[str, Any]:
        check, extraction = extraction_task(path, scan, workdir / "restore")
        detail = _outcome(check)
        assert extraction is not None  # a passed extraction has one
        if scan.manifest_member is None or scan.top is None:
            raise BackupError("MANIFEST.json missing: the backup did not finish")
        return detail, (extraction, read_extracted_manifest(extraction, scan.manifest_member))

    extraction, manifest = run.step("extract", extract)
    if manifest.database is None:
        run.step(
            "database restore",
            lambda: (
                _outcome(CheckOutcome.failed("database", "the backup holds no database")),
                None,
            ),
        )
        return
    artifact = extraction.dest / scan.top / manifest.database.artifact
    sections = (CONFIG_FILES, UPLOADS, APP_DATA) if run.report.scenario == COMPLETE_FAILURE else ()

    def files() -> tuple[str, Any]:
        details = [_outcome(manifest_task(scan, extraction)[0])]
        for name in sections:
            details.append(
                f"{name}: " + _outcome(section_task(name, manifest, extraction, scan.top))
            )
        return "; ".join(details), None

    _database_steps(
        run, settings, artifact, manifest.db_type, manifest.database.tables, workdir, files
    )


def _db_artifact(
    run: _Runner, settings: Settings, path: Path, meta: dict[str, Any], workdir: Path
) -> None:
    run.step("verify", lambda: (_outcome(db_artifact_integrity_task(path)), None))
    run.step("extract", lambda: ("a database-only backup: the restore decompresses it", None))
    tables = meta.get("tables")
    expected = tables if isinstance(tables, dict) else None
    _database_steps(
        run,
        settings,
        path,
        None,
        expected,
        workdir,
        lambda: ("a database corruption restores the database only", None),
    )


def _drill(
    run: _Runner, settings: Settings, from_offsite: bool, workdir: Path
) -> list[tuple[str, datetime]]:
    """Run the steps; returns the (kind, created_at) of every backup the source holds."""
    report = run.report
    found: list[DrillSource] = []

    def fetch() -> tuple[str, Any]:
        source = find_backup_task(settings, report.scenario, from_offsite)
        found.append(source)
        report.source, report.backup = source.where, source.chosen.name
        report.backup_created_at = source.chosen.created_at
        path, meta = fetch_task(source, settings, workdir)
        how = "downloaded, sha256 checked" + (
            ", decrypted" if path.name != source.chosen.ref else ""
        )
        detail = _outcome(backup_file_task(path))
        return (f"{how}: {detail}" if source.offsite else detail), (path, meta)

    try:
        path, meta = run.step("fetch", fetch)
        if is_full_archive(path):
            _full_archive(run, settings, path, workdir)
        else:
            _db_artifact(run, settings, path, meta, workdir)
    except _StepFailed as failed:
        run.not_run(f"{failed} failed")
    return found[0].available if found else []


def _publish(report: DrillReport) -> None:
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    create_markdown_artifact(
        key=REPORT_ARTIFACT,
        markdown=report.markdown(),
        description=redact(
            f"DR drill {report.scenario}: " + ("passed" if report.passed else "FAILED")
        ),
    )


def _alert(settings: Settings, report: DrillReport) -> None:
    reasons = report.reasons()
    alert = Alert(
        status="failed",
        job="dr-drill",
        message=f"DR drill ({report.scenario}) failed: {reasons[0] if reasons else 'unknown'}",
        checks=[{"name": "dr-drill", "severity": "critical", "reason": r} for r in reasons],
    )
    for outcome in send_alert(settings, alert):
        if not outcome.delivered:
            run_logger().error(
                "drill alert via %s not delivered: %s", outcome.channel, outcome.detail
            )


@flow(name="dr-drill", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
def dr_drill(scenario: str = COMPLETE_FAILURE, from_offsite: bool = False) -> DrDrillResult:
    """Restore the newest backup into a scratch environment, prove it, time it against RTO/RPO."""
    settings = load_settings()
    check_scenario(scenario)
    logger = run_logger()
    started = datetime.now(UTC)
    clock = time.monotonic()
    where = "the off-site destination" if from_offsite else f"BACKUP_DIR {settings.backups}"
    report = DrillReport(scenario, from_offsite, where, None, None, started, socket.gethostname())
    with scratch_folder() as workdir:
        available = _drill(_Runner(report), settings, from_offsite, workdir)
        report.live_untouched = (
            "not opened: the restore went to a scratch folder (removed) and a scratch database"
        )
    report.seconds = time.monotonic() - clock
    report.rto = rto_check(scenario, settings, report.seconds)
    report.rpo = rpo_checks(scenario, settings, available, started)
    md, js = write_report(report, settings.backups)
    record_dr_drill(settings, scenario, report.passed, report.seconds)
    _publish(report)
    result = DrDrillResult(
        scenario=scenario,
        from_offsite=from_offsite,
        passed=report.passed,
        backup=report.backup,
        seconds=report.seconds,
        report_md=str(md),
        report_json=str(js),
        reasons=report.reasons(),
        steps=[s.as_dict() for s in report.steps],
    )
    for line in result.summary_lines():
        (logger.info if result.passed else logger.warning)(line)
    if not report.passed:
        _alert(settings, report)
    return result
