"""`list-backups`: the catalog of every backup, newest first (restic `snapshots`).

Prints one line per backup (name, kind, tier, created, size, where) or, with `as_json`,
the objects SPEC.md names; publishes the same rows as a table artifact in the Prefect UI.
Only good backups (tasks.catalog.good_backup) unless `include_all`, which adds the
others with the reason they are not good.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from prefect import flow

from flows.catalog import KINDS, catalog
from flows.hooks import FAILURE_HOOKS
from flows.reporting import human_size, publish_table
from tasks.catalog.listing import CatalogEntry
from tasks.core.errors import ConfigError
from tasks.core.settings import load_settings

ARTIFACT_KEY = "backup-catalog"
COLUMNS = ("NAME", "KIND", "TIER", "CREATED (UTC)", "SIZE", "WHERE")


def check_kind(kind: str) -> tuple[str, ...]:
    """The kinds `--kind` names (`all`: every kind); ConfigError for any other word."""
    if kind == "all":
        return KINDS
    if kind not in KINDS:
        raise ConfigError(f"--kind: must be one of {', '.join(KINDS)} or all, got {kind!r}")
    return (kind,)


@dataclass
class ListResult:
    entries: list[CatalogEntry] = field(default_factory=list)
    include_all: bool = False

    def json_text(self) -> str:
        return json.dumps([e.as_json() for e in self.entries], indent=2)

    def rows(self) -> list[tuple[str, ...]]:
        rows = []
        for e in self.entries:
            row = (
                e.name,
                e.kind,
                e.tier_shown,
                e.created.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                human_size(e.size),
                e.location,
            )
            rows.append(
                row + ((("good" if e.good else f"NOT GOOD: {e.why}"),) if self.include_all else ())
            )
        return rows

    def lines(self) -> list[str]:
        if not self.entries:
            return ["no backups"]
        header = COLUMNS + (("VERDICT",) if self.include_all else ())
        rows = [header, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        return [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        ]


def _artifact_rows(result: ListResult) -> list[dict[str, Any]]:
    return [
        {
            "name": e.name,
            "kind": e.kind,
            "tier": e.tier_shown,
            "created (UTC)": e.created.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "size": human_size(e.size),
            "sha256": e.sha256 or "",
            "where": e.location,
            **({"verdict": "good" if e.good else e.why} if result.include_all else {}),
        }
        for e in result.entries
    ]


@flow(name="list-backups", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
def list_backups(kind: str = "all", offsite: bool = False, include_all: bool = False) -> ListResult:
    """Every backup, local (and off-site with `offsite`), newest first; good ones only
    unless `include_all`."""
    kinds = check_kind(kind)
    settings = load_settings(check_folders=False)  # reading names and sidecars only
    entries = catalog(settings, kinds, offsite=offsite)
    result = ListResult(
        entries=entries if include_all else [e for e in entries if e.good],
        include_all=include_all,
    )
    where = f"{settings.backups}" + (" and off-site" if offsite else "")
    publish_table(
        ARTIFACT_KEY,
        _artifact_rows(result),
        f"{len(result.entries)} backup(s) in {where}, newest first"
        + ("" if include_all else " (good backups only)"),
    )
    return result
