"""The full backup artifact: database snapshot + folders → one `full_backup_*.tar.gz`.

The database goes first, through the same sources as `db-backup` (a consistent SQLite
snapshot or a `pg_dump` of one exported snapshot), compressed into a private temporary
file in the backup folder; then the tar stream is produced straight into
`pipeline.write_artifact` (parallel compression, sha256 sidecar, atomic rename, 0600).
Nothing is held whole in memory; the temporary file carries a partial name that the
next run sweeps up if this one is killed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from tasks.archive.full_archive import FullArchiveBuilder
from tasks.archive.full_content import ArchiveContent, ArchiveSummary, DatabaseMember
from tasks.backup.db_artifact import backup_meta, unused_moment
from tasks.backup.read_back import read_behind, take_read_behind
from tasks.catalog.records import write_meta
from tasks.core.atomic import FILE_MODE, OUT_OF_SPACE, partial_path
from tasks.core.errors import ConfigError, OutOfSpaceError
from tasks.core.naming import db_backup_name, full_backup_name
from tasks.core.settings import Settings
from tasks.sources.base import DatabaseSource
from tasks.stream.compress import HashingWriter, compressing_writer
from tasks.stream.pipeline import Artifact, write_artifact

SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class FullBackupPlan:
    """Where everything is, resolved once from the settings."""

    backup_dir: Path
    db_path: Path | None  # SQLite only: the live file, never copied raw into data/
    uploads: Path | None
    data: Path | None
    config_files: tuple[Path, ...]
    skip_unreadable: bool
    compression: str = "gzip"
    level: int | None = None

    def data_exclude(self) -> frozenset[Path]:
        """What data/ leaves out: the live database, uploads/ and the backups, if inside."""
        excluded: set[Path] = set()
        for path in (self.uploads, self.backup_dir):
            if path is not None:
                excluded.add(_real(path))
        if self.db_path is not None:
            for base in {_real(self.db_path), Path(os.path.abspath(self.db_path))}:
                excluded.add(base)
                excluded.update(Path(f"{base}{suffix}") for suffix in SQLITE_COMPANIONS)
        return frozenset(excluded)


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def plan_from_settings(settings: Settings) -> FullBackupPlan:
    configs = tuple(settings.config_paths)
    seen: dict[str, Path] = {}
    for path in configs:
        if path.name in seen:
            raise ConfigError(
                f"CONFIG_FILES: {seen[path.name]} and {path} would both be stored as "
                f"config/{path.name}; give them distinct names"
            )
        seen[path.name] = path
    for variable, path in (("UPLOADS_DIR", settings.uploads), ("APP_DATA_DIR", settings.app_data)):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{variable}: {path} is not a folder")
    return FullBackupPlan(
        backup_dir=settings.backups,
        db_path=settings.db_path if settings.db_type == "sqlite" else None,
        uploads=_real(settings.uploads),
        data=_real(settings.app_data),
        config_files=configs,
        skip_unreadable=settings.backup_skip_unreadable,
        compression=settings.compression,
        level=settings.backup_compression_level,
    )


@contextlib.contextmanager
def database_member(
    source: DatabaseSource, scratch_dir: Path, name: str, compression: str, level: int | None
) -> Iterator[DatabaseMember]:
    """The database artifact (exactly as db-backup makes it) in a private temporary file."""
    tmp = partial_path(scratch_dir / name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as raw:
                hashed = HashingWriter(raw)
                compressed = compressing_writer(hashed, compression, level)  # type: ignore[arg-type]
                try:
                    dumped = source.dump(compressed)  # type: ignore[arg-type]
                finally:
                    compressed.close()
        except OSError as exc:
            if exc.errno in OUT_OF_SPACE:  # the backup folder is full, not the database
                raise OutOfSpaceError(
                    f"no space left in {scratch_dir} while writing the database part of "
                    "the full backup; nothing was kept — free some space there and run again",
                    scratch_dir,
                ) from None
            raise
        yield DatabaseMember(
            path=tmp,
            name=name,
            size=hashed.size,
            sha256=hashed.sha256.hexdigest(),
            tables=dict(dumped.tables),
            privileges=dumped.privileges,
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_full_backup(
    source: DatabaseSource,
    plan: FullBackupPlan,
    tier: str,
    name_of: Callable[[datetime, str], str] = full_backup_name,
    *,
    read_back: bool = False,
) -> Artifact[ArchiveSummary]:
    """Write `full_backup_<UTC stamp>.tar.gz` (+ .sha256, + .meta.json) into the backup dir.

    `name_of` names it otherwise: restore-all's `full_before_restore_*` copy of the live
    state is the same format, so restore-all can bring it back. `read_back`: the archive
    is read back from the disk while it is written (tasks/backup/read_back.py), for
    `take_read_behind(path).result(sha256)` to judge."""
    moment = unused_moment(plan.backup_dir, lambda m: name_of(m, plan.compression))
    final = plan.backup_dir / name_of(moment, plan.compression)
    top = final.name.split(".", 1)[0]
    source.check()
    db_name = db_backup_name(source.db_type, moment, plan.compression)
    watch = read_behind(final, plan.compression) if read_back else None
    try:
        with database_member(source, plan.backup_dir, db_name, plan.compression, plan.level) as db:
            content = ArchiveContent(
                top=top,
                created_at=moment,
                tier=tier,
                db_type=source.db_type,
                database=db,
                uploads=plan.uploads,
                data=plan.data,
                data_exclude=plan.data_exclude(),
                config_files=plan.config_files,
                skip_unreadable=plan.skip_unreadable,
            )

            def produce(out: BinaryIO) -> ArchiveSummary:
                return FullArchiveBuilder(out, content).build()

            # Read back whole from the disk (every member inflated, its crc32 and length
            # checked): the in-memory check of each member would prove the same again. The
            # database member inside keeps its own (the read-back does not inflate it).
            artifact = write_artifact(
                final, produce, plan.compression, plan.level, watch, member_check=not read_back
            )
        summary = artifact.detail
        write_meta(
            artifact.path,
            backup_meta(
                "full",
                tier,
                source.db_type,
                moment,
                artifact,
                db.tables,
                db.privileges,
                files=summary.files,
                bytes=summary.bytes,
                changed=summary.changed_count,
                skipped=summary.skipped_count,
            ),
        )
    except BaseException:
        # The verify step will not run to claim the read: drop it here, or every such
        # failure would keep a finished reader for the life of the process.
        if watch is not None:
            take_read_behind(final)
        raise
    return artifact


def estimated_bytes(plan: FullBackupPlan) -> int:
    """About how many bytes the archive's tar stream carries (for a progress percentage):
    the files' sizes, links not followed; the live database's file stands for its dump."""
    total = 0
    excluded = plan.data_exclude()
    for root in (plan.uploads, plan.data):
        if root is None or not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            if root == plan.data:
                dirnames[:] = [d for d in dirnames if here / d not in excluded]
            for name in filenames:
                with contextlib.suppress(OSError):
                    total += os.lstat(here / name).st_size
    for path in (*plan.config_files, *([plan.db_path] if plan.db_path else [])):
        with contextlib.suppress(OSError):
            total += os.stat(path).st_size
    return total
