"""The monitor's view of the restore proofs: the last test-restore of each kind.

Every test-restore run records `chatbot_restore_proof_status{kind}` (1 every check passed,
0 not) and its time in the metrics file; the reactive automation runs one after every
scheduled backup (docs/ops/automations.md). A failed proof still ends its Prefect run
Completed (its verdict is the result), so without this check only the metrics would know.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from tasks.monitor.exposition import SampleKey
from tasks.verify.finding import Finding

STATUS = "chatbot_restore_proof_status"
WHEN = "chatbot_last_restore_proof_timestamp_seconds"


def check_restore_proofs(samples: Mapping[SampleKey, float]) -> Finding:
    """critical when the last restore proof of any kind failed; ok otherwise (also when
    none was recorded yet: the age and integrity checks still judge the backups)."""
    proofs: dict[str, tuple[float, float | None]] = {}
    for (name, labels), value in samples.items():
        kind = dict(labels).get("kind")
        if name == STATUS and kind:
            when = samples.get((WHEN, labels))
            proofs[kind] = (value, when)
    if not proofs:
        return Finding("restore-proof", "ok", "no restore proof recorded yet")
    failed = sorted(kind for kind, (value, _) in proofs.items() if value == 0)
    if failed:
        parts = [f"{kind} (at {_show(proofs[kind][1])})" for kind in failed]
        return Finding(
            "restore-proof",
            "critical",
            f"the last test-restore of a {', '.join(parts)} backup failed: the newest backup "
            "may not restore; run `chatbot-backup test-restore` and read its checks",
        )
    shown = ", ".join(f"{kind} at {_show(when)}" for kind, (_, when) in sorted(proofs.items()))
    return Finding("restore-proof", "ok", f"last restore proofs passed: {shown}")


def _show(when: float | None) -> str:
    if when is None:
        return "an unknown time"
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M UTC")
