"""The backups at a Destination (the catalog) and off-site retention (prune).

Prune follows the local rules (tasks.retention.plan) per kind and tier, and never tries
to delete an object under an S3 Object Lock retention: such copies are left for a later
run and reported (`RemotePrune.locked`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.catalog.records import BackupRecord
from tasks.core.naming import META_SUFFIX, SIDECAR_SUFFIX, BackupName
from tasks.core.tiers import DEFAULT_TIER, TIERS
from tasks.offsite.encryption import AGE_SUFFIX
from tasks.offsite.remote import (
    COMPANION_SUFFIXES,
    STALE_PARTIAL_AGE,
    backup_name_of,
    read_remote_meta,
)
from tasks.retention.plan import RetentionPolicy, plan
from tasks.storage.destination import Destination


@dataclass(frozen=True)
class RemoteBackup:
    """A backup data object at the destination."""

    remote_name: str
    name: BackupName
    size: int
    committed: bool  # its sidecar is there
    tier: str
    tier_marked: bool
    modified: datetime | None

    @property
    def encrypted(self) -> bool:
        return self.remote_name.endswith(AGE_SUFFIX)

    def record(self) -> BackupRecord:
        """As a BackupRecord for `tasks.retention.plan` (its path is the bare remote name).

        An unfinished copy has size 0 there: it never counts as one of the newest kept.
        """
        return BackupRecord(
            path=Path(self.remote_name),
            name=self.name,
            tier=self.tier,
            size=self.size if self.committed else 0,
            tier_marked=self.tier_marked,
        )


def remote_catalog(dest: Destination, with_tiers: bool = True) -> list[RemoteBackup]:
    """Our backups at `dest` (names by our patterns only), oldest first."""
    entries = dest.list()
    names = {e.name for e in entries}
    out = []
    for entry in entries:
        parsed = backup_name_of(entry.name)
        if parsed is None:
            continue
        committed = entry.name + SIDECAR_SUFFIX in names
        tier: Any = None
        if with_tiers and entry.name + META_SUFFIX in names:
            tier = read_remote_meta(dest, entry.name).get("tier")
        marked = isinstance(tier, str) and tier in TIERS
        out.append(
            RemoteBackup(
                entry.name,
                parsed,
                entry.size,
                committed,
                tier if marked else DEFAULT_TIER[parsed.kind],
                marked,
                entry.modified,
            )
        )
    out.sort(key=lambda b: (b.name.created_at, b.remote_name))
    return out


# --------------------------------------------------------------------------- prune


@dataclass
class RemotePrune:
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    cleaned: list[str] = field(default_factory=list)  # abandoned partials, orphan sidecars
    locked: dict[str, datetime] = field(default_factory=dict)  # left: locked until then


def prune_remote(
    dest: Destination, retention_days: int, now: datetime, dry_run: bool = False
) -> RemotePrune:
    """Off-site retention under the local rules (tasks.retention.plan), per kind and tier.

    Only names of our patterns are touched; the newest 3 finished copies of each kind
    and tier stay whatever their age.
    """
    entries = dest.list()
    backups = remote_catalog(dest)
    result = RemotePrune()
    groups = sorted({(b.name.kind, b.tier) for b in backups})
    records = [b.record() for b in backups]
    for kind, tier in groups:
        decided = plan(records, RetentionPolicy(kind, tier, retention_days), now)
        result.kept += [r.path.name for r in decided.keep]
        result.removed += [r.path.name for r in decided.remove]
        result.reasons.update(decided.reasons)
    present = {e.name for e in entries}
    for name in list(result.removed):
        parts = [name, *(name + s for s in COMPANION_SUFFIXES)]
        until = _locked_until(dest, [p for p in parts if p in present], now)
        if until is not None:
            result.removed.remove(name)
            result.locked[name] = until
            result.reasons[name] = f"locked until {until.isoformat(timespec='seconds')}"
    if not dry_run:
        for name in result.removed:
            # Sidecar first: from that moment the copy is unfinished, whatever happens next.
            for part in (name + SIDECAR_SUFFIX, name, name + META_SUFFIX, name + SEALED):
                if part in present:
                    dest.delete(part)
    data_names = {b.remote_name for b in backups} - set(result.removed)
    gone = {p for n in result.removed for p in (n, *(n + s for s in COMPANION_SUFFIXES))}
    for entry in entries:
        if entry.name in gone:
            continue
        if _abandoned(entry.name, entry.modified, data_names, now):
            if _locked_until(dest, [entry.name], now) is not None:
                continue
            result.cleaned.append(entry.name)
            if not dry_run:
                dest.delete(entry.name)
    return result


SEALED = META_SUFFIX + AGE_SUFFIX


def _locked_until(dest: Destination, names: list[str], now: datetime) -> datetime | None:
    """The latest retention end among `names` still in the future, else None."""
    if dest.scheme != "s3":  # copies locked under an earlier setting count too
        return None
    ends = [until for n in names if (until := dest.locked_until(n)) is not None and until > now]
    return max(ends) if ends else None


def _abandoned(name: str, modified: datetime | None, data: set[str], now: datetime) -> bool:
    if Destination.is_partial(name):
        base = name[1:].split(".partial-", 1)[0]
        old = modified is not None and now - modified > STALE_PARTIAL_AGE
        return old and (backup_name_of(base) is not None or _sidecar_base(base) is not None)
    owner = _sidecar_base(name)
    return owner is not None and owner not in data


def _sidecar_base(name: str) -> str | None:
    """`NAME.sha256` / `NAME.meta.json` of one of our backup names -> NAME."""
    for suffix in COMPANION_SUFFIXES:
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            return base if backup_name_of(base) is not None else None
    return None
