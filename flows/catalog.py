"""The backups a restore can choose from: local (every kind) and off-site, one catalog.

Each kind contributes its local entries through one lister in `LOCAL_KINDS`; a new kind
of backup is one more entry there. The off-site destination (`OFFSITE_DESTINATION`) is
listed only when asked (`--offsite`), or when a restore finds nothing fitting locally.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from tasks.catalog.listing import (
    LATEST,
    CatalogEntry,
    choose,
    digest_in,
    local_backups,
    merge,
)
from tasks.core.errors import BackupError, ConfigError, VerifyError
from tasks.core.naming import SIDECAR_SUFFIX
from tasks.core.settings import Settings
from tasks.offsite.catalog import remote_catalog
from tasks.pitr.base_catalog import BASE_KIND, list_bases
from tasks.storage.destination import open_destination


def _db_and_full(kind: str) -> Callable[[Path], list[CatalogEntry]]:
    return lambda folder: [e for e in local_backups(folder) if e.kind == kind]


def _bases(folder: Path) -> list[CatalogEntry]:
    return [
        CatalogEntry(
            name=base.name,
            kind=BASE_KIND,
            tier=base.tier,
            created=base.created_at,
            size=base.size,
            sha256=base.sha256,
            location="local",
            good=True,  # list_bases only returns finished, checked base backups
            why="finished and checked",
            path=base.path,
            db_type="postgres",
        )
        for base in list_bases(folder)
    ]


LOCAL_KINDS: dict[str, Callable[[Path], list[CatalogEntry]]] = {
    "db": _db_and_full("db"),
    "full": _db_and_full("full"),
    BASE_KIND: _bases,
}
KINDS: tuple[str, ...] = tuple(LOCAL_KINDS)


def local_entries(settings: Settings, kinds: tuple[str, ...] = KINDS) -> list[CatalogEntry]:
    return [entry for kind in kinds for entry in LOCAL_KINDS[kind](settings.backups)]


def offsite_entries(settings: Settings, kinds: tuple[str, ...] = KINDS) -> list[CatalogEntry]:
    """Our backups at OFFSITE_DESTINATION; ConfigError when it is not set."""
    dest = open_destination(settings)
    entries = []
    for remote in remote_catalog(dest):
        if remote.name.kind not in kinds:
            continue
        sidecar = None
        if remote.committed:
            try:
                text = dest.read_bytes(remote.remote_name + SIDECAR_SUFFIX).decode(errors="replace")
                sidecar = digest_in(text, remote.remote_name) or digest_in(text, remote.name.name)
            except Exception:  # the sha256 column is informative; the copy is still listed
                sidecar = None
        entries.append(
            CatalogEntry(
                name=remote.name.name,
                kind=remote.name.kind,
                tier=remote.tier,
                created=remote.name.created_at,
                size=remote.size,
                sha256=sidecar,
                location="offsite",
                good=remote.committed and remote.size > 0,
                why="copied and committed" if remote.committed else "no sidecar: unfinished copy",
                url=dest.url(remote.remote_name),
                db_type=remote.name.db_type,
                tier_marked=remote.tier_marked,
            )
        )
    return entries


def catalog(
    settings: Settings, kinds: tuple[str, ...] = KINDS, offsite: bool = False
) -> list[CatalogEntry]:
    """Every backup of `kinds`, newest first; off-site ones too with `offsite`."""
    local = local_entries(settings, kinds)
    return merge(local, offsite_entries(settings, kinds) if offsite else [])


def choose_backup(
    settings: Settings, kind: str, as_of: datetime | None = None, db_type: str | None = None
) -> CatalogEntry:
    """`--latest` (as_of None) or `--as-of T`: the newest good backup of `kind` made at
    or before T, looked for locally first, then at OFFSITE_DESTINATION when one is set."""
    local = local_entries(settings, (kind,))
    try:
        return choose(local, kind, as_of, db_type)
    except (ConfigError, VerifyError) as local_miss:
        if not settings.offsite_destination:
            raise
        try:
            remote = offsite_entries(settings, (kind,))
        except BackupError:
            raise local_miss from None
        return choose(merge(local, remote), kind, as_of, db_type)


def restore_kind(job: str) -> str:
    """The kind of backup each restore job restores."""
    return "db" if job == "db-restore" else "full"


def wants_choice(backup_file: str | None) -> bool:
    """Whether a restore's `backup_file` asks the catalog to choose (empty or `latest`)."""
    return not backup_file or backup_file.strip().lower() == LATEST
