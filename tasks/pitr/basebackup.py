"""Taking a base backup: `pg_basebackup` streamed into `base_postgres_*.tar.gz`, proven.

`pg_basebackup -D - -Ft -X none` writes one tar of the whole cluster, its
`backup_manifest` (SHA256 per file) included, to stdout; it flows through the project's
compressor and hasher into a hidden file that gets its final name and sidecar only when
pg_basebackup succeeded (tasks.stream.pipeline). The WAL the base needs is not inside: the base
is only ever used with the WAL archive, and PostgreSQL's archiver has pushed that WAL
there before pg_basebackup returns ("all required WAL segments have been archived").

Then the proof, by independent reads: the file on disk is read back and checked against
the server's manifest (`tasks.pitr.base_manifest`), and every segment from the start to
the end position must be in the WAL archive, committed, matching its sidecar and
decompressing. Only then is `NAME.meta.json` written — the commit marker that makes the
base visible to pitr-restore. The password reaches pg_basebackup through its environment.
"""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from tasks.backup.db_artifact import unused_moment
from tasks.core import clock
from tasks.core.atomic import write_text_atomic
from tasks.core.errors import SourceError, VerifyError
from tasks.core.naming import META_SUFFIX
from tasks.pitr.archive import check_archived
from tasks.pitr.base_catalog import BASE_KIND, base_backup_name
from tasks.pitr.base_manifest import BaseContents
from tasks.pitr.segments import format_lsn, lsn_segno, segment_name
from tasks.pitr.wal_catalog import ArchivedWal, find_archived, read_segment_header
from tasks.sources.postgres import first_line, libpq_environment, widen_pipe
from tasks.stream.pipeline import Artifact, write_artifact

# How long the WAL a base needs may take to show up in the archive after pg_basebackup
# returned (it waits for PostgreSQL's archiver, which runs our wal-push).
WAL_WAIT_SECONDS = 120.0


@dataclass(frozen=True)
class BaseWal:
    """The archived WAL a base backup needs, checked."""

    segments: list[str]
    segment_size: int
    system_identifier: int


def run_pg_basebackup(params: dict[str, str], out: BinaryIO, label: str) -> None:
    """Stream `pg_basebackup` (tar, WAL left to the archive, SHA256 manifest) into `out`."""
    command = [
        "pg_basebackup",
        "--pgdata=-",
        "--format=tar",
        "--wal-method=none",
        "--checkpoint=fast",  # start now, not after a spread checkpoint (minutes)
        "--manifest-checksums=SHA256",
        "--no-password",
        f"--label={label}",
    ]
    with tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=stderr, env=libpq_environment(params)
            )
        except FileNotFoundError:
            raise SourceError("pg_basebackup is not installed or not on PATH") from None
        assert process.stdout is not None
        widen_pipe(process.stdout.fileno())
        try:
            while chunk := process.stdout.read(1 << 20):
                out.write(chunk)
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            process.stdout.close()
        code = process.wait()
        if code != 0:
            stderr.seek(0)
            message = stderr.read(64 * 1024).decode("utf-8", "replace")
            raise SourceError(
                f"pg_basebackup failed (exit {code}): {first_line(message)} — the role needs "
                "REPLICATION and pg_hba.conf a `replication` line for it (PITR_DATABASE_URL)"
            )


def take_base_backup(
    params: dict[str, str], backup_dir: Path, compression: str = "gzip", level: int | None = None
) -> Artifact[None]:
    """pg_basebackup -> compress -> hash -> `base_postgres_*.tar.gz` and its sidecar."""

    def name_for(moment: datetime) -> str:
        return base_backup_name(moment, compression)

    moment = unused_moment(backup_dir, name_for)
    final = backup_dir / name_for(moment)
    label = f"chatbot-backup {final.name}"
    return write_artifact(
        final, lambda out: run_pg_basebackup(params, out, label), compression, level
    )


def required_segments(contents: BaseContents, segment_size: int) -> list[str]:
    """The segments from the base's start to its end position, on its timeline."""
    first = lsn_segno(contents.start_lsn, segment_size)
    last = lsn_segno(max(contents.end_lsn - 1, contents.start_lsn), segment_size)
    return [segment_name(contents.timeline, s, segment_size) for s in range(first, last + 1)]


def wait_for_base_wal(
    archive_dir: Path, contents: BaseContents, timeout: float = WAL_WAIT_SECONDS
) -> BaseWal:
    """Wait until the WAL the base needs is archived, then check every segment of it."""
    start = _wait_for(archive_dir, contents.start_wal, timeout)
    header = read_segment_header(start)
    names = required_segments(contents, header.segment_size)
    entries = [_wait_for(archive_dir, name, timeout) for name in names]
    for entry in entries:
        check_archived(entry)
        found = read_segment_header(entry).system_identifier
        if found != header.system_identifier:
            raise VerifyError(f"{entry.name}: archived WAL of another cluster (system {found})")
    return BaseWal(names, header.segment_size, header.system_identifier)


def _wait_for(archive_dir: Path, name: str, timeout: float) -> ArchivedWal:
    deadline = time.monotonic() + timeout
    while True:
        entry = find_archived(archive_dir, name)
        if entry is not None and entry.committed:
            return entry
        if time.monotonic() >= deadline:
            raise VerifyError(
                f"the base backup needs WAL segment {name}, which did not reach the WAL "
                f"archive {archive_dir} within {timeout:g} s: is PostgreSQL's archive_command "
                "`chatbot-backup wal-push %p` with this WAL_ARCHIVE_DIR (see "
                "`chatbot-backup pitr-setup`), and is it succeeding (pg_stat_archiver)?"
            )
        time.sleep(0.25)


def write_base_meta(
    artifact: Artifact[None],
    contents: BaseContents,
    wal: BaseWal,
    *,
    tier: str,
    started_at: datetime,
    ended_at: datetime,
    server_version: str | None = None,
) -> Path:
    """The commit marker: written only once the base and its WAL were proven."""
    meta: dict[str, Any] = {
        "kind": BASE_KIND,
        "tier": tier,
        "db_type": "postgres",
        "created_at": started_at.isoformat(),
        "host": socket.gethostname(),
        "size": artifact.size,
        "sha256": artifact.sha256,
        "timeline": contents.timeline,
        "start_lsn": format_lsn(contents.start_lsn),
        "end_lsn": format_lsn(contents.end_lsn),
        "start_wal": contents.start_wal,
        "end_wal": wal.segments[-1],
        "wal_segments": len(wal.segments),
        "start_time": (contents.start_time or started_at).isoformat(),
        "end_time": ended_at.isoformat(),
        "wal_segment_size": wal.segment_size,
        "system_identifier": str(wal.system_identifier),
        "files": contents.files,
        "content_bytes": contents.content_bytes,
        "manifest_checksum": contents.manifest_checksum,
        "label": contents.label,
        "server_version": server_version,
        "verified_at": clock.utc_now().isoformat(),
    }
    path = artifact.path.with_name(artifact.path.name + META_SUFFIX)
    write_text_atomic(path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path
