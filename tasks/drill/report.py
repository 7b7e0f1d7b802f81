"""The drill's report: each step timed, the RTO and RPO verdicts, written as .md and .json.

`$BACKUP_DIR/reports/dr_drill_YYYYMMDD_HHMMSS.md` (for people: the runbook's evidence) and
`.json` (for machines), written atomically, mode 0600 like everything in BACKUP_DIR.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.core.atomic import atomic_writer
from tasks.core.redact import redact
from tasks.drill.objectives import RpoCheck, RtoCheck

REPORTS_DIR = "reports"
STEPS = ("fetch", "verify", "extract", "database restore", "files", "checks")


@dataclass
class StepResult:
    name: str
    passed: bool
    seconds: float
    detail: str  # what was done or proved, or why it failed
    ran: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "result": "pass" if self.passed else ("not run" if not self.ran else "FAIL"),
            "seconds": round(self.seconds, 3),
            "detail": redact(self.detail),
        }


@dataclass
class DrillReport:
    scenario: str
    from_offsite: bool
    source: str  # where it restored from
    backup: str | None  # the backup's name
    backup_created_at: datetime | None
    started_at: datetime
    host: str
    steps: list[StepResult] = field(default_factory=list)
    rto: RtoCheck | None = None
    rpo: list[RpoCheck] = field(default_factory=list)
    live_untouched: str = ""
    seconds: float = 0.0

    @property
    def restored(self) -> bool:
        return bool(self.steps) and all(s.passed for s in self.steps)

    @property
    def passed(self) -> bool:
        return (
            self.restored
            and self.rto is not None
            and self.rto.met
            and bool(self.rpo)
            and all(r.met for r in self.rpo)
        )

    def reasons(self) -> list[str]:
        """Why the drill failed, first problem first; [] when it passed."""
        out = [f"{s.name}: {s.detail}" for s in self.steps if s.ran and not s.passed]
        if self.rto is not None and not self.rto.met:
            out.append(
                f"RTO missed: {self.rto.took_seconds:.1f} s against "
                f"{self.rto.limit_minutes:g} min for {self.rto.label}"
            )
        for r in self.rpo:
            if not r.met:
                age = (
                    "no backup" if r.age_hours is None else f"newest backup {r.age_hours:.2f} h old"
                )
                out.append(f"RPO missed for {r.data_class}: {age}, objective {r.limit_hours:g} h")
        if not self.rpo and self.restored:
            out.append("RPO not measured: no backup found")
        return [redact(x) for x in out]

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": "dr-drill",
            "scenario": self.scenario,
            "from_offsite": self.from_offsite,
            "source": redact(self.source),
            "backup": self.backup,
            "backup_created_at": (
                self.backup_created_at.isoformat() if self.backup_created_at else None
            ),
            "host": self.host,
            "started_at": self.started_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "restored": self.restored,
            "passed": self.passed,
            "reasons": self.reasons(),
            "steps": [s.as_dict() for s in self.steps],
            "rto": self.rto.as_dict() if self.rto else None,
            "rpo": [r.as_dict() for r in self.rpo],
            "live_untouched": self.live_untouched,
        }

    def markdown(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"# DR drill {self.started_at:%Y-%m-%d %H:%M:%S} UTC: {self.scenario} — {verdict}",
            "",
            f"- Host: {self.host}",
            f"- Restored from: {redact(self.source)}"
            + (" (off-site)" if self.from_offsite else ""),
            f"- Backup: {self.backup or '—'}"
            + (
                f", made {self.backup_created_at:%Y-%m-%d %H:%M:%S} UTC"
                if self.backup_created_at
                else ""
            ),
            f"- Total: {self.seconds:.1f} s",
            f"- Live platform: {self.live_untouched or 'not checked'}",
            "",
            "## Steps",
            "",
            "| step | result | seconds | detail |",
            "|---|---|---:|---|",
        ]
        for step in self.steps:
            row = step.as_dict()
            detail = str(row["detail"]).replace("|", "\\|")
            lines.append(f"| {step.name} | {row['result']} | {step.seconds:.2f} | {detail} |")
        lines += ["", "## Recovery Time Objective", ""]
        if self.rto is not None:
            lines.append(
                f"{self.rto.label}: {self.rto.took_seconds:.1f} s against "
                f"{self.rto.limit_minutes:g} min — {'met' if self.rto.met else 'MISSED'}"
            )
        else:
            lines.append("not measured")
        lines += [
            "",
            "## Recovery Point Objective",
            "",
            "| data class | newest backup | age (h) | objective (h) | result |",
            "|---|---|---:|---:|---|",
        ]
        for r in self.rpo:
            newest = f"{r.newest:%Y-%m-%d %H:%M:%S}" if r.newest else "none"
            age = "—" if r.age_hours is None else f"{r.age_hours:.2f}"
            result = "met" if r.met else "MISSED"
            lines.append(f"| {r.data_class} | {newest} | {age} | {r.limit_hours:g} | {result} |")
        reasons = self.reasons()
        if reasons:
            lines += ["", "## Why it failed", ""] + [f"- {x}" for x in reasons]
        return redact("\n".join(lines) + "\n")


def report_paths(backups: Path, started_at: datetime) -> tuple[Path, Path]:
    stem = f"dr_drill_{started_at:%Y%m%d_%H%M%S}"
    folder = backups / REPORTS_DIR
    return folder / f"{stem}.md", folder / f"{stem}.json"


def write_report(report: DrillReport, backups: Path) -> tuple[Path, Path]:
    """Both files, atomically; a second drill in the same second gets a suffix."""
    folder = backups / REPORTS_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    base_md, base_js = report_paths(backups, report.started_at)
    md, js, n = base_md, base_js, 1
    while md.exists() or js.exists():
        n += 1
        md = base_md.with_name(f"{base_md.stem}_{n}.md")
        js = base_js.with_name(f"{base_js.stem}_{n}.json")
    with atomic_writer(js) as handle:
        handle.write((json.dumps(report.as_dict(), indent=2) + "\n").encode())
    with atomic_writer(md) as handle:
        handle.write(report.markdown().encode())
    return md, js
