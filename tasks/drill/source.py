"""Which backup a drill restores, and bringing it into the drill's scratch folder.

Locally: the newest backup of the scenario's kind in BACKUP_DIR, read where it is (the
drill only reads it). `--from-offsite`: the newest finished copy at the off-site
destination only — the real disaster has no local disk — downloaded into the scratch
folder, checked against its sidecar and decrypted (tasks.offsite.copy.fetch_backup).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.catalog.records import list_backups, read_meta
from tasks.core.errors import BackupError
from tasks.drill.objectives import COMPLETE_FAILURE
from tasks.offsite.catalog import remote_catalog
from tasks.offsite.fetch import fetch_backup, read_backup_meta
from tasks.storage.destination import open_destination


class NoBackupError(BackupError):
    """There is nothing to drill on."""


@dataclass(frozen=True)
class Candidate:
    kind: str  # "db" or "full"
    created_at: datetime
    name: str  # the backup's own name (without `.age`)
    ref: str  # a local path, or the remote object's name


@dataclass(frozen=True)
class DrillSource:
    """Where the drill restores from, what it holds, and the backup it picked."""

    where: str  # "BACKUP_DIR /data/backups" or the off-site destination's display form
    offsite: bool
    chosen: Candidate
    available: list[tuple[str, datetime]] = field(default_factory=list)  # for the RPO checks


def _pick(candidates: list[Candidate], scenario: str, where: str) -> Candidate:
    """complete-failure: the newest full backup; database-corruption: the newest database
    backup (a database-only one, else the database inside the newest full one)."""
    full = [c for c in candidates if c.kind == "full"]
    db = [c for c in candidates if c.kind == "db"]
    if scenario == COMPLETE_FAILURE:
        if not full:
            raise NoBackupError(f"no full backup (full_backup_*.tar.gz) in {where}")
        return max(full, key=lambda c: c.created_at)
    if not db and not full:
        raise NoBackupError(f"no database backup (admin_*, full_backup_*) in {where}")
    return max(db or full, key=lambda c: c.created_at)


def local_source(backups: Path, scenario: str) -> DrillSource:
    where = f"BACKUP_DIR {backups}"
    records = list_backups(backups, judge=False) if backups.is_dir() else []
    candidates = [
        Candidate(r.kind, r.created_at, r.path.name, str(r.path))
        for r in records
        if r.kind in ("db", "full") and not r.name.snapshot
    ]
    chosen = _pick(candidates, scenario, where)
    return DrillSource(where, False, chosen, [(c.kind, c.created_at) for c in candidates])


def offsite_source(settings: Any, scenario: str) -> DrillSource:
    dest = open_destination(settings)
    candidates = [
        Candidate(b.name.kind, b.name.created_at, b.name.name, b.remote_name)
        for b in remote_catalog(dest, with_tiers=False)
        if b.committed and b.name.kind in ("db", "full") and not b.name.snapshot
    ]
    chosen = _pick(candidates, scenario, f"the off-site destination {dest.display}")
    return DrillSource(dest.display, True, chosen, [(c.kind, c.created_at) for c in candidates])


def fetch(source: DrillSource, settings: Any, workdir: Path) -> tuple[Path, dict[str, Any]]:
    """The backup as a local file (fetched into `workdir` when off-site), and its meta."""
    if not source.offsite:
        path = Path(source.chosen.ref)
        return path, read_meta(path)
    dest = open_destination(settings)
    into = workdir / "fetch"
    path = fetch_backup(dest.url(source.chosen.ref), settings, into=into)
    return path, read_backup_meta(dest.url(source.chosen.ref), settings)
