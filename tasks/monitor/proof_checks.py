"""The monitor's view of the restore proofs: the last test-restore of each kind.

Every test-restore run records `chatbot_restore_proof_status{kind}` (1 every check passed,
0 not) and its time in the metrics file; the reactive automation runs one after every
scheduled backup (docs/ops/automations.md). A failed proof still ends its Prefect run
Completed (its verdict is the result), so without this check only the metrics would know.

A proof is about one backup: test-restore records only tests of backups in BACKUP_DIR (or
off-site copies of them), with the time that backup was made
(`chatbot_last_restore_proof_backup_timestamp_seconds`). A failed proof of the newest
backup of its kind is critical; of an older backup still in the folder, a warning (the
newest is not proven either way); of a backup since rotated away, nothing to act on. A
proof recorded without the backup's time (by an older version) is taken as of the newest.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from tasks.monitor.exposition import SampleKey
from tasks.verify.finding import Finding

STATUS = "chatbot_restore_proof_status"
WHEN = "chatbot_last_restore_proof_timestamp_seconds"
BACKUP_TIME = "chatbot_last_restore_proof_backup_timestamp_seconds"


@dataclass(frozen=True)
class _Proof:
    kind: str
    passed: bool
    when: float | None
    backup_time: float | None  # when the tested backup was made; None: not recorded


def check_restore_proofs(
    samples: Mapping[SampleKey, float],
    newest: Mapping[str, float] | None = None,
    present: Mapping[str, Collection[float]] | None = None,
) -> Finding:
    """critical when the last restore proof of a kind failed on the newest backup of that
    kind; ok otherwise (also when none was recorded yet: the age and integrity checks still
    judge the backups). `newest`: kind -> when its newest good backup in BACKUP_DIR was made
    (Unix time); `present`: kind -> when each file of that kind there was made. Without
    them, every failed proof is taken as one of the newest backup."""
    proofs: list[_Proof] = []
    for (name, labels), value in samples.items():
        kind = dict(labels).get("kind")
        if name == STATUS and kind:
            proofs.append(
                _Proof(
                    kind,
                    value != 0,
                    samples.get((WHEN, labels)),
                    samples.get((BACKUP_TIME, labels)),
                )
            )
    if not proofs:
        return Finding("restore-proof", "ok", "no restore proof recorded yet")
    proofs.sort(key=lambda p: p.kind)
    latest, older, gone = [], [], []
    for proof in (p for p in proofs if not p.passed):
        made = proof.backup_time
        newest_made = (newest or {}).get(proof.kind)
        if newest is None or made is None or newest_made is None or made >= newest_made:
            latest.append(proof)
        elif made in (present or {}).get(proof.kind, ()):
            older.append(proof)
        else:
            gone.append(proof)
    if latest:
        parts = [f"{p.kind} (at {_show(p.when)})" for p in latest]
        return Finding(
            "restore-proof",
            "critical",
            f"the last test-restore of a {', '.join(parts)} backup failed: the newest backup "
            "may not restore; run `chatbot-backup test-restore` and read its checks",
        )
    if older:
        parts = [f"{p.kind} backup made at {_show(p.backup_time)}" for p in older]
        return Finding(
            "restore-proof",
            "warning",
            f"the last test-restore failed on an older {', '.join(parts)} (still in the "
            "backup folder); the newest has not been proven since: run "
            "`chatbot-backup test-restore` and read its checks",
        )
    passed = [p for p in proofs if p.passed]
    shown = ", ".join(f"{p.kind} at {_show(p.when)}" for p in passed)
    note = "; ".join(
        f"the failed test of a {p.kind} backup made at {_show(p.backup_time)} is about a "
        "backup no longer in the folder"
        for p in gone
    )
    reason = f"last restore proofs passed: {shown}" if shown else ""
    return Finding("restore-proof", "ok", "; ".join(r for r in (reason, note) if r))


def _show(when: float | None) -> str:
    if when is None:
        return "an unknown time"
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M UTC")
