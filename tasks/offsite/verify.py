"""Reading remote copies back against their sidecars, and when each was last checked.

`offsite-verify` keeps its record at the destination itself, beside the copies, in
`.offsite-verify.json`: for each copy when it was last read back and the outcome, and
the outcome of the last run. The next run reads the copies verified longest ago (or
never) first, so `--sample N` every week covers every copy in turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tasks.core.backoff import RetryPolicy
from tasks.core.naming import SIDECAR_SUFFIX
from tasks.offsite.catalog import RemoteBackup, remote_catalog
from tasks.offsite.remote import Log, parse_sidecar_text, read_remote_text, remote_call
from tasks.storage.destination import Destination

STATE_NAME = ".offsite-verify.json"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RemoteCheck:
    remote_name: str
    status: str  # ok / mismatch / unfinished / archived
    detail: str


def verify_copy(dest: Destination, backup: RemoteBackup) -> RemoteCheck:
    """Read a remote copy back and compare it with its sidecar."""
    name = backup.remote_name
    if not backup.committed:
        return RemoteCheck(name, "unfinished", "no sidecar: the upload never finished")
    expected = parse_sidecar_text(read_remote_text(dest, name + SIDECAR_SUFFIX) or "", name)
    return read_back(dest, name, expected)


def read_back(dest: Destination, name: str, expected: str | None) -> RemoteCheck:
    """Read `name` back whole and compare its sha256 with `expected` (its sidecar's).

    The one proof that a remote copy is intact: `offsite-verify` uses it, and so does the
    copy step before it counts a copy as already there (tasks.offsite.copy).
    """
    storage = str(dest.info(name).get("StorageClass") or "").upper()
    if storage in ("GLACIER", "DEEP_ARCHIVE"):
        return RemoteCheck(name, "archived", f"in {storage}: not readable, size checked only")
    if expected is None:
        return RemoteCheck(name, "mismatch", "its sidecar is not a sha256sum line for it")
    found, size = dest.sha256(name)
    if found != expected:
        return RemoteCheck(
            name,
            "mismatch",
            f"sha256 {found[:12]}… does not match its sidecar {expected[:12]}… — "
            "the copy was altered or damaged",
        )
    return RemoteCheck(name, "ok", f"{size} bytes, sha256 matches")


# --------------------------------------------------------------------------- the record


def read_state(dest: Destination) -> dict[str, Any]:
    """The verification record at `dest` ({} when there is none or it is unreadable)."""
    text = read_remote_text(dest, STATE_NAME)
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _when(text: object) -> datetime:
    if isinstance(text, str):
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            return EPOCH
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return EPOCH


def oldest_verified_first(
    backups: list[RemoteBackup], state: dict[str, Any], sample: int | None
) -> list[RemoteBackup]:
    """The finished copies to read, never-verified and longest-ago first; `sample` of them."""
    copies = state.get("copies") if isinstance(state.get("copies"), dict) else {}
    assert isinstance(copies, dict)

    def last(b: RemoteBackup) -> datetime:
        entry = copies.get(b.remote_name)
        return _when(entry.get("verified_at")) if isinstance(entry, dict) else EPOCH

    finished = sorted(
        (b for b in backups if b.committed), key=lambda b: (last(b), b.name.created_at)
    )
    return finished if sample is None else finished[:sample]


@dataclass
class VerifyReport:
    """One destination's `offsite-verify` run."""

    destination: str
    checks: list[RemoteCheck] = field(default_factory=list)
    total: int = 0  # finished copies at the destination
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def failed(self) -> list[RemoteCheck]:
        return [c for c in self.checks if c.status not in ("ok", "archived")]

    @property
    def ok(self) -> bool:
        return not self.failed


def verify_destination(
    dest: Destination, sample: int | None, policy: RetryPolicy, log: Log | None = None
) -> VerifyReport:
    """Read back `sample` (or all) finished copies at `dest`; record the outcome there."""
    backups, _ = remote_call(dest, f"listing {dest}", lambda: remote_catalog(dest), policy, log)
    state, _ = remote_call(dest, f"verify record of {dest}", lambda: read_state(dest), policy, log)
    report = VerifyReport(dest.display, total=sum(1 for b in backups if b.committed))
    for backup in oldest_verified_first(backups, state, sample):
        check, _ = remote_call(
            dest,
            f"verifying {dest.url(backup.remote_name)}",
            lambda b=backup: verify_copy(dest, b),  # type: ignore[misc]
            policy,
            log,
        )
        report.checks.append(check)
    present = {b.remote_name for b in backups}
    copies = state.get("copies") if isinstance(state.get("copies"), dict) else {}
    assert isinstance(copies, dict)
    copies = {k: v for k, v in copies.items() if k in present}  # pruned ones drop out
    stamp = report.at.isoformat(timespec="seconds")
    for check in report.checks:
        copies[check.remote_name] = {
            "verified_at": stamp,
            "status": check.status,
            "detail": check.detail,
        }
    record = {
        "copies": copies,
        "last_run": {
            "at": stamp,
            "ok": report.ok,
            "checked": len(report.checks),
            "failed": [c.remote_name for c in report.failed],
        },
    }
    data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    remote_call(
        dest, f"verify record of {dest}", lambda: dest.put_bytes(STATE_NAME, data), policy, log
    )
    return report
