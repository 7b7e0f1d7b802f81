"""The catalog: every backup, local and off-site, as one list, and choosing one by time.

`CatalogEntry` is one backup as `chatbot-backup list` shows it (name, kind, tier,
created, size, sha256, where it is). Each kind of backup contributes its entries through
a lister; the listers of the kinds this wing knows (`db`, `full`) are here, a higher wing
adds its own (base backups of point-in-time recovery: `flows/catalog.py`). Merging puts
a backup found both locally and off-site on one line (`both`).

`choose` is what `--latest` and `--as-of T` pick: the newest good backup of a kind made
at or before T, local first, then off-site.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from tasks.catalog.records import BackupRecord, list_backups
from tasks.core.errors import ConfigError, VerifyError
from tasks.core.naming import sidecar_name

Location = Literal["local", "offsite", "both"]
# What `--latest` and the restore forms of the Prefect UI say: the newest good backup.
LATEST = "latest"
AS_OF_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class CatalogEntry:
    """One backup as the catalog shows it."""

    name: str
    kind: str  # "db", "full", "base", ...
    tier: str
    created: datetime  # UTC, from the name
    size: int
    sha256: str | None
    location: Location
    good: bool
    why: str
    path: Path | None = None  # the local file, when there is one
    url: str | None = None  # the off-site copy, when there is one
    db_type: str | None = None  # sqlite / postgres for database backups
    # False: no tier marker was read (no `.meta.json`), `tier` is its kind's default. For a
    # full backup that is an assumption until rotation reads its MANIFEST.json (too costly
    # for a listing: the manifest is at the end of the archive), so `list` says "assumed".
    tier_marked: bool = True

    def as_json(self) -> dict[str, Any]:
        """The keys SPEC.md names for `list --json`."""
        return {
            "name": self.name,
            "kind": self.kind,
            "tier": self.tier,
            "created": self.created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "size": self.size,
            "sha256": self.sha256,
            "location": self.location,
        }

    @property
    def tier_shown(self) -> str:
        """The tier as `list` prints it: "daily (assumed)" for a full backup whose tier
        is only its kind's default (its MANIFEST.json, unread, may say weekly)."""
        assumed = self.kind == "full" and not self.tier_marked
        return f"{self.tier} (assumed)" if assumed else self.tier

    @property
    def source(self) -> str:
        """What a restore is given: the local file when there is one, else the URL."""
        if self.path is not None:
            return str(self.path)
        assert self.url is not None
        return self.url


def sidecar_digest(path: Path) -> str | None:
    """The sha256 the `NAME.sha256` sidecar records for `path`, or None."""
    try:
        text = path.with_name(sidecar_name(path.name)).read_text(errors="replace")
    except OSError:
        return None
    return digest_in(text, path.name)


def digest_in(text: str, name: str) -> str | None:
    """The sha256 a `sha256sum` text records for `name`, or None."""
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[1].lstrip("*") == name and _HEX64.fullmatch(parts[0].lower()):
            return parts[0].lower()
    return None


def from_record(record: BackupRecord) -> CatalogEntry:
    return CatalogEntry(
        name=record.path.name,
        kind=record.kind,
        tier=record.tier,
        created=record.created_at,
        size=record.size,
        sha256=sidecar_digest(record.path),
        location="local",
        good=record.good,
        why=record.why,
        path=record.path,
        db_type=record.name.db_type,
        tier_marked=record.tier_marked,
    )


def local_backups(folder: Path) -> list[CatalogEntry]:
    """The database and full backups in `folder`, each judged by the good-backup test."""
    return [from_record(record) for record in list_backups(folder)]


def merge(local: Iterable[CatalogEntry], offsite: Iterable[CatalogEntry]) -> list[CatalogEntry]:
    """One list, newest first; a backup in both places is one entry located `both`."""
    by_name = {entry.name: entry for entry in local}
    for remote in offsite:
        mine = by_name.get(remote.name)
        if mine is None:
            by_name[remote.name] = remote
        else:
            by_name[remote.name] = replace(
                mine, location="both", url=remote.url, sha256=mine.sha256 or remote.sha256
            )
    return sorted(by_name.values(), key=lambda e: (e.created, e.name), reverse=True)


def parse_as_of(text: str) -> datetime:
    """`YYYY-MM-DD HH:MM[:SS]` (UTC; a trailing `Z` or `UTC` is allowed) as an aware time."""
    value = " ".join(text.strip().removesuffix("UTC").removesuffix("Z").split())
    for fmt in AS_OF_FORMATS:
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ConfigError(f'--as-of: expected "YYYY-MM-DD HH:MM[:SS]" (UTC), got {text!r}')


def choose(
    entries: list[CatalogEntry],
    kind: str,
    as_of: datetime | None = None,
    db_type: str | None = None,
) -> CatalogEntry:
    """The newest good backup of `kind` (and `db_type`) made at or before `as_of` (None:
    the newest), among local and off-site `entries` (`merge`d: a backup in both places
    is restored from the local file, `CatalogEntry.source`). ConfigError when `as_of` is
    before every backup of that kind; VerifyError when there is none at all."""
    what = f"{db_type} {kind}" if db_type else kind
    mine = sorted(
        (
            e
            for e in entries
            if e.kind == kind and e.good and (db_type is None or e.db_type == db_type)
        ),
        key=lambda e: (e.created, e.location != "offsite", e.name),
    )
    if not mine:
        raise VerifyError(f"no good {what} backup, locally or off-site")
    fitting = [e for e in mine if as_of is None or e.created <= as_of]
    if fitting:
        return fitting[-1]
    assert as_of is not None
    raise ConfigError(
        f"--as-of {as_of:%Y-%m-%d %H:%M:%S} UTC is before every {what} backup; "
        f"the oldest is from {mine[0].created:%Y-%m-%d %H:%M:%S} UTC"
    )
