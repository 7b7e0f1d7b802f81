"""`offsite-verify [--sample N]`: re-read remote copies and check them against their sidecars.

At every destination of OFFSITE_DESTINATION in turn (one unreachable does not stop the
others): the finished copies verified longest ago (or never) first, all of them or N;
each is read back whole and its sha256 compared with its `.sha256` sidecar. The outcome
is kept at the destination (`.offsite-verify.json`, tasks.offsite.verify), where the
monitor reads it. Exit 0 only when every copy read matched at every destination.
Scheduled weekly as `offsite-verify/weekly` (tasks.core.tiers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prefect import flow

from flows.hooks import FAILURE_HOOKS
from flows.reporting import publish_table, run_logger
from tasks.catalog.records import list_backups
from tasks.core.errors import BackupError, ConfigError, DestinationError, VerifyError
from tasks.core.redact import redact
from tasks.core.settings import Settings, load_settings
from tasks.monitor.metrics import record_offsite_status
from tasks.offsite.verify import VerifyReport
from tasks.offsite.verify_status import offsite_status_by_kind
from tasks.steps.offsite import verify_offsite_sample
from tasks.storage.destination import Destination, open_destinations


@dataclass(frozen=True)
class OffsiteVerifyResult:
    reports: list[VerifyReport] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # destination -> why not verified
    seconds: float = 0.0

    @property
    def checked(self) -> int:
        return sum(len(r.checks) for r in self.reports)

    @property
    def failed(self) -> int:
        return sum(len(r.failed) for r in self.reports)

    @property
    def ok(self) -> bool:
        return not self.errors and self.failed == 0

    def summary_lines(self) -> list[str]:
        lines = ["Off-site verification " + ("passed" if self.ok else "FAILED")]
        for report in self.reports:
            lines.append(
                f"  {report.destination}: {len(report.checks) - len(report.failed)} of "
                f"{len(report.checks)} read back and matched ({report.total} copies there)"
            )
            for check in report.checks:
                lines.append(f"    {check.remote_name}: {check.status} — {check.detail}")
        for where, why in self.errors.items():
            lines.append(f"  {where}: not verified — {why}")
        lines.append(f"  duration: {self.seconds:.1f} s")
        return lines


def _record_status(settings: Settings, dest: Destination, report: VerifyReport) -> None:
    """`chatbot_offsite_backup_status` of each kind read back at `dest`: 0 when a copy of
    that kind does not match its sidecar (the ChatbotOffsiteBackupFailing alert); 1 only
    when this run proved the newest local backup of that kind is there; else unchanged.

    The series is the copy step's; a copy found damaged here is as much a failed off-site
    copy as one that never arrived. Copies that merely still match do not clear a failed
    upload of a newer backup (tasks.offsite.verify_status says why).
    """
    verdicts = offsite_status_by_kind(report.checks, list_backups(settings.backups))
    for kind, ok in sorted(verdicts.items()):
        record_offsite_status(settings, kind, dest.scheme, ok, dest.display)


@flow(name="offsite-verify", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
def offsite_verify(sample: int | None = None) -> OffsiteVerifyResult:
    """Read back `sample` (default: all) copies at every destination, oldest-verified first."""
    if sample is not None and sample < 1:
        raise ConfigError(f"--sample: must be 1 or more, got {sample}")
    started = time.monotonic()
    settings = load_settings()
    destinations = open_destinations(settings)
    logger = run_logger()
    reports: list[VerifyReport] = []
    errors: dict[str, str] = {}
    for dest in destinations:
        try:
            report = verify_offsite_sample(settings, dest.source_text, sample)
        except BackupError as exc:
            errors[dest.display] = redact(str(exc))
            continue
        reports.append(report)
        _record_status(settings, dest, report)
    result = OffsiteVerifyResult(reports, errors, time.monotonic() - started)
    for line in result.summary_lines():
        (logger.info if result.ok else logger.error)(line)
    publish_table(
        "offsite-verify",
        [
            {
                "destination": r.destination,
                "copy": c.remote_name,
                "status": c.status,
                "detail": c.detail,
            }
            for r in reports
            for c in r.checks
        ]  # fmt: skip
        + [
            {"destination": d, "copy": "", "status": "error", "detail": e}
            for d, e in errors.items()
        ],
        "Off-site verification",
    )
    if result.failed:
        bad = [(r, c) for r in reports for c in r.failed]
        report, first = bad[0]
        raise VerifyError(
            f"off-site verification: {result.failed} of {result.checked} copies do not match "
            f"their sidecars — {report.destination}/{first.remote_name}: {first.detail}"
        )
    if errors:
        where, why = next(iter(errors.items()))
        raise DestinationError(
            f"off-site verification could not read {len(errors)} of {len(destinations)} "
            f"destination(s) — {where}: {why}"
        )
    return result
