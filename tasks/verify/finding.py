"""The one finding type: a named check's outcome, its severity, and a reason an operator
can act on. The monitor's checks, PITR's archiver checks and test-restore's checks all
report `Finding`s; `worst` rolls them up, `exit_code_for` maps the roll-up to the
monitor's exit codes (0 ok, 1 warning, 2 critical).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from tasks.core.redact import redact

Severity = Literal["ok", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"ok": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class Finding:
    """One check's outcome, with a reason an operator can act on."""

    name: str
    severity: Severity
    reason: str

    @property
    def passed(self) -> bool:
        return self.severity == "ok"

    @classmethod
    def ok(cls, name: str, reason: str) -> Finding:
        return cls(name, "ok", reason)

    @classmethod
    def failed(cls, name: str, reason: str) -> Finding:
        """A check that failed outright (critical); the reason is redacted."""
        return cls(name, "critical", redact(reason))

    @classmethod
    def not_run(cls, name: str, because: str) -> Finding:
        """A check that could not run because an earlier one failed (critical)."""
        return cls(name, "critical", f"not run: {because}")

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "severity": self.severity, "reason": self.reason}


def worst(findings: Iterable[Finding]) -> Severity:
    rank = max((SEVERITY_RANK[f.severity] for f in findings), default=0)
    return ("ok", "warning", "critical")[rank]


def exit_code_for(status: str) -> int:
    """The guide's monitor exit codes: 0 all passed, 1 warnings, 2 critical."""
    return SEVERITY_RANK[status]
