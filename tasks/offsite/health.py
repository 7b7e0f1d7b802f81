"""The monitor's view of each off-site destination: is its newest copy recent, did its
last verification pass. Plain judgments (severity, reason); tasks.steps.monitor makes
them findings.

A destination is reported when the newest finished copy of an off-site tier is older
than that tier's schedule allows (`tasks.core.tiers.offsite_max_age_hours`), when it
holds no finished copy at all, or when the last `offsite-verify` run recorded there
(`.offsite-verify.json`) found a copy that does not match its sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tasks.core.tiers import TIER_TABLE, offsite_max_age_hours
from tasks.offsite.catalog import remote_catalog
from tasks.offsite.verify import read_state
from tasks.storage.destination import Destination


@dataclass(frozen=True)
class Judgment:
    severity: str  # ok / warning / critical
    reason: str


def judge_destination(dest: Destination, now: datetime) -> list[Judgment]:
    """What is wrong at `dest` (empty when nothing is)."""
    found: list[Judgment] = []
    finished = [b for b in remote_catalog(dest) if b.committed]
    if not finished:
        return [Judgment("warning", f"{dest.display}: holds no finished off-site copy")]
    for tier in TIER_TABLE:
        allowed = offsite_max_age_hours(tier.name)
        copies = [b for b in finished if b.tier == tier.name]
        if allowed is None or not copies:
            continue
        newest = max(b.name.created_at for b in copies)
        age = (now - newest).total_seconds() / 3600
        if age > allowed:
            found.append(
                Judgment(
                    "warning",
                    f"{dest.display}: newest {tier.name} copy is {age:.0f} h old "
                    f"(its schedule allows {allowed:.0f} h)",
                )
            )
    if not any(offsite_max_age_hours(b.tier) is not None for b in finished):
        # Only ad-hoc copies (offsite-sync, --offsite of a daily run): the newest of any.
        newest = max(b.name.created_at for b in finished)
        allowed = min(a for t in TIER_TABLE if (a := offsite_max_age_hours(t.name)) is not None)
        age = (now - newest).total_seconds() / 3600
        if age > allowed:
            found.append(
                Judgment(
                    "warning",
                    f"{dest.display}: newest copy is {age:.0f} h old (allowed {allowed:.0f} h)",
                )
            )
    last = read_state(dest).get("last_run")
    if isinstance(last, dict) and last.get("ok") is False:
        failed = last.get("failed") or []
        names = ", ".join(str(n) for n in failed[:3]) + (" …" if len(failed) > 3 else "")
        found.append(
            Judgment(
                "critical",
                f"{dest.display}: the last off-site verification ({last.get('at', '?')}) "
                f"failed — {len(failed)} copy(ies) do not match their sidecars: {names}",
            )
        )
    return found
