"""The database-only backup artifact: dump → compress → checksum → file, in one pass."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.catalog.records import write_meta
from tasks.core import clock
from tasks.core.naming import db_backup_name
from tasks.sources.base import DatabaseSource, DumpResult
from tasks.stream.pipeline import Artifact, write_artifact


def unused_moment(folder: Path, name_for: Callable[[datetime], str]) -> datetime:
    """Now (UTC), moved on a second at a time until its name is free in `folder`."""
    while True:
        moment = clock.utc_now().replace(microsecond=0)
        if not (folder / name_for(moment)).exists():
            return moment
        time.sleep(1.05 - (clock.utc_now().microsecond / 1e6))


def dump_database_artifact(
    source: DatabaseSource,
    backup_dir: Path,
    tier: str,
    compression: str = "gzip",
    level: int | None = None,
) -> Artifact[DumpResult]:
    def name_for(moment: datetime) -> str:
        return db_backup_name(source.db_type, moment, compression)

    moment = unused_moment(backup_dir, name_for)
    source.check()
    artifact = write_artifact(backup_dir / name_for(moment), source.dump, compression, level)
    write_meta(
        artifact.path,
        backup_meta(
            "db",
            tier,
            source.db_type,
            moment,
            artifact,
            artifact.detail.tables,
            privileges=artifact.detail.privileges,
        ),
    )
    return artifact


def backup_meta(
    kind: str,
    tier: str,
    db_type: str,
    moment: datetime,
    artifact: Artifact[Any],
    tables: dict[str, int],
    privileges: dict[str, list[Any]] | None = None,
    **more: int,
) -> dict[str, Any]:
    """The `.meta.json` fields every backup has (a full backup adds its file counts;
    PostgreSQL its tables' owners and privileges)."""
    return {
        "kind": kind,
        "tier": tier,
        "db_type": db_type,
        "created_at": moment.isoformat(),
        "host": socket.gethostname(),
        "size": artifact.size,
        "sha256": artifact.sha256,
        "tables": tables,
        **({"privileges": privileges} if privileges is not None else {}),
        **more,
    }
