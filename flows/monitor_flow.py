"""`monitor-backups`: the guide's `monitor_backups.sh` — checks, alerts, metrics.

A run that finds problems still completes: its findings, status and exit code (0 all
passed, 1 warnings, 2 critical) are the result. Only a monitor that cannot run at all
(bad settings, a crash) fails, and then the failure hooks alert.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prefect import flow

from flows.hooks import FAILURE_HOOKS
from flows.reporting import publish_table, run_logger
from tasks.core import clock
from tasks.core.settings import load_settings
from tasks.core.tiers import scheduled_deployments
from tasks.monitor.alerts import Alert, ChannelResult
from tasks.steps.monitor import (
    check_deployments,
    check_offsite_copies,
    check_pitr,
    check_restore_proof,
    inspect_backup_folder,
    record_monitor_metrics,
    send_alert_task,
)
from tasks.verify.finding import Finding, exit_code_for, worst


@dataclass(frozen=True)
class MonitorResult:
    status: str  # ok, warning, critical
    exit_code: int  # 0, 1, 2
    findings: list[Finding]
    backup_dir: str
    backups: int
    alerts: list[ChannelResult] = field(default_factory=list)
    metrics_written: bool = False
    metrics_file: str = ""
    seconds: float = 0.0

    def finding(self, name: str) -> Finding | None:
        return next((f for f in self.findings if f.name == name), None)

    def summary_lines(self) -> list[str]:
        width = max((len(f.name) for f in self.findings), default=5)
        lines = [
            f"Backup monitor: {self.status.upper()} (exit {self.exit_code}) — {self.backup_dir}",
            f"  {'CHECK':<{width}}  {'STATUS':<8}  REASON",
        ]
        lines += [f"  {f.name:<{width}}  {f.severity:<8}  {f.reason}" for f in self.findings]
        for sent in self.alerts:
            outcome = "sent" if sent.delivered else f"FAILED: {sent.detail}"
            lines.append(f"  alert via {sent.channel}: {outcome}")
        if not self.metrics_written:
            lines.append(f"  metrics: not written to {self.metrics_file} (see the log)")
        return lines


def alert_message(status: str, findings: list[Finding]) -> str:
    problems = [f for f in findings if f.severity != "ok"]
    head = f"Backup monitor found {len(problems)} problem(s), status {status.upper()}"
    return head + ": " + "; ".join(f"{f.name}: {f.reason}" for f in problems)


@flow(name="monitor-backups", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
def monitor_backups() -> MonitorResult:
    """Check the backup folder's health, alert on warnings and critical findings, write metrics."""
    started = time.monotonic()
    settings = load_settings()
    logger = run_logger()
    now = clock.utc_now()
    inspection = inspect_backup_folder(settings, now)
    pitr = check_pitr(settings, now) if settings.pitr_enabled else None
    offsite = bool(settings.offsite_destination)
    findings = [
        *inspection.findings,
        *(pitr.findings if pitr is not None else []),
        check_offsite_copies(settings, now),
        check_restore_proof(settings, inspection),
        check_deployments(
            settings.monitor_check_deployments,
            scheduled_deployments(settings.pitr_enabled, offsite),
        ),
    ]
    status = worst(findings)
    code = exit_code_for(status)
    alerts: list[ChannelResult] = []
    if status != "ok":
        alerts = send_alert_task(
            settings,
            Alert(
                status=status,
                job="monitor-backups",
                message=alert_message(status, findings),
                checks=[f.as_dict() for f in findings],
            ),
        )
    written = record_monitor_metrics(settings, inspection, code, pitr)
    result = MonitorResult(
        status=status,
        exit_code=code,
        findings=findings,
        backup_dir=str(settings.backups),
        backups=sum(inspection.counts.values()),
        alerts=alerts,
        metrics_written=written,
        metrics_file=str(settings.metrics_path),
        seconds=time.monotonic() - started,
    )
    for line in result.summary_lines():
        (logger.warning if status != "ok" else logger.info)(line)
    publish_table(
        "monitor-backups-summary",
        [
            *[{"check": f.name, "status": f.severity, "reason": f.reason} for f in findings],
            *[
                {
                    "check": f"alert:{a.channel}",
                    "status": "sent" if a.delivered else "failed",
                    "reason": a.detail,
                }
                for a in alerts
            ],
        ],
        f"Backup monitor: {status.upper()} (exit {code})",
    )
    return result
