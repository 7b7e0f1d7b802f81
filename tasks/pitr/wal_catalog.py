"""What the WAL archive folder (`WAL_ARCHIVE_DIR`) holds, read with one folder scan.

Layout, for each file PostgreSQL archived (NAME: a segment, a `.partial` segment, a
`.backup` or a `.history` file):
- `NAME.gz` (or `NAME.zst`, after BACKUP_COMPRESSION=zstd): the file, compressed with the
  project's codec. Its modification time is the time PostgreSQL last wrote the file in
  `pg_wal` (wal-push copies it), so it says how far in time the WAL inside reaches, even
  when archiving lagged behind;
- `NAME.gz.sha256`: a `sha256sum` line for the compressed file, written last: the commit
  marker. A compressed file without one is an unfinished push: never fetched, completed
  or refused by the next push of that name.
Hidden `.NAME.gz.partial-PID-…` files are pushes in progress, or left by killed ones.
So `cd $WAL_ARCHIVE_DIR && sha256sum -c *.sha256` checks the whole archive.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tasks.core.errors import VerifyError
from tasks.core.naming import COMPRESSION_SUFFIX, SIDECAR_SUFFIX
from tasks.pitr.segments import WalName, history_name, parse_history, parse_wal_name
from tasks.stream.compress import open_decompressed, with_zstd_errors

_SUFFIX_COMPRESSION = {suffix: codec for codec, suffix in COMPRESSION_SUFFIX.items()}
# The long page header at the start of every segment (PostgreSQL's xlog_internal.h):
# magic, info, timeline, page address, remaining length, then (8-aligned) the system
# identifier, the segment size and the WAL block size.
_PAGE_HEADER = struct.Struct("<HHIQI")
_LONG_HEADER_TAIL = struct.Struct("<QII")
_XLP_LONG_HEADER = 0x0002


@dataclass(frozen=True)
class ArchivedWal:
    """One archived WAL file."""

    wal: WalName
    path: Path  # the compressed file
    compression: str
    size: int  # compressed bytes
    written_at: datetime  # when PostgreSQL last wrote it (the file's mtime), UTC
    committed: bool  # its sha256 sidecar exists

    @property
    def name(self) -> str:
        return self.wal.name


def archived_name(name: str, compression: str) -> str:
    return name + COMPRESSION_SUFFIX[compression]


def find_archived(folder: Path, name: str) -> ArchivedWal | None:
    """The archived copy of WAL file `name` (any codec), or None; two or three stats."""
    wal = parse_wal_name(name)
    if wal is None:
        return None
    for codec, suffix in COMPRESSION_SUFFIX.items():
        path = folder / (name + suffix)
        try:
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            continue
        committed = os.path.exists(str(path) + SIDECAR_SUFFIX)
        return ArchivedWal(
            wal, path, codec, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC), committed
        )
    return None


def list_archive(folder: Path) -> dict[str, ArchivedWal]:
    """Every archived WAL file in `folder`, by WAL name (one scan; no file is opened)."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    names = {entry.name for entry in entries}
    found: dict[str, ArchivedWal] = {}
    for entry in entries:
        base, dot, ext = entry.name.rpartition(".")
        codec = _SUFFIX_COMPRESSION.get("." + ext) if dot else None
        wal = parse_wal_name(base) if codec else None
        if wal is None or codec is None or not entry.is_file(follow_symlinks=False):
            continue
        info = entry.stat(follow_symlinks=False)
        current = ArchivedWal(
            wal,
            Path(entry.path),
            codec,
            info.st_size,
            datetime.fromtimestamp(info.st_mtime, UTC),
            entry.name + SIDECAR_SUFFIX in names,
        )
        # Both codecs for one name (the codec changed mid-push): the committed one counts.
        previous = found.get(base)
        if previous is None or (current.committed and not previous.committed):
            found[base] = current
    return found


def read_archived_text(entry: ArchivedWal, limit: int = 1 << 20) -> str:
    """A small archived file (a `.history` or `.backup` file), decompressed."""
    try:
        with open(entry.path, "rb") as raw:
            data = open_decompressed(raw, entry.compression).read(limit + 1)
    except with_zstd_errors(EOFError, OSError, zlib.error, gzip.BadGzipFile) as exc:
        raise VerifyError(f"{entry.path.name}: damaged archived WAL file ({exc})") from None
    if len(data) > limit:
        raise VerifyError(f"{entry.path.name}: larger than a WAL history file can be")
    return data.decode("utf-8", "replace")


def read_histories(archive: Mapping[str, ArchivedWal]) -> dict[int, list[tuple[int, int]]]:
    """Every committed timeline history in the archive, parsed: timeline -> entries."""
    histories: dict[int, list[tuple[int, int]]] = {}
    for name, entry in archive.items():
        if entry.wal.kind != "history" or not entry.committed:
            continue
        try:
            histories[entry.wal.timeline] = parse_history(read_archived_text(entry))
        except ValueError as exc:
            raise VerifyError(f"{name}: not a timeline history file ({exc})") from None
    return histories


def newest_timeline(start: int, archive: Mapping[str, ArchivedWal]) -> int:
    """The timeline `recovery_target_timeline = 'latest'` ends on from `start`: the next
    timeline numbers are probed one by one while their history file is archived (as
    PostgreSQL's findNewestTimeLine does)."""
    timeline = start
    while True:
        entry = archive.get(history_name(timeline + 1))
        if entry is None or not entry.committed:
            return timeline
        timeline += 1


@dataclass(frozen=True)
class SegmentHeader:
    system_identifier: int
    segment_size: int
    timeline: int


def read_segment_header(entry: ArchivedWal) -> SegmentHeader:
    """The cluster identity and segment size recorded in an archived segment's first page."""
    need = _PAGE_HEADER.size + 4 + _LONG_HEADER_TAIL.size  # 8-byte alignment after 20 bytes
    try:
        with open(entry.path, "rb") as raw:
            head = open_decompressed(raw, entry.compression).read(need)
    except with_zstd_errors(EOFError, OSError, zlib.error, gzip.BadGzipFile) as exc:
        raise VerifyError(f"{entry.path.name}: damaged archived segment ({exc})") from None
    return parse_segment_header(head, entry.path.name)


def parse_segment_header(head: bytes, name: str) -> SegmentHeader:
    if len(head) < _PAGE_HEADER.size + 4 + _LONG_HEADER_TAIL.size:
        raise VerifyError(f"{name}: too short for a WAL segment")
    _magic, info, timeline, _address, _remaining = _PAGE_HEADER.unpack_from(head, 0)
    if not info & _XLP_LONG_HEADER:
        raise VerifyError(f"{name}: does not start with a WAL segment header")
    system_identifier, segment_size, _block = _LONG_HEADER_TAIL.unpack_from(head, 24)
    return SegmentHeader(system_identifier, segment_size, timeline)


def header_of_file(path: Path) -> SegmentHeader:
    """The header of a raw (uncompressed) segment file, e.g. one in `pg_wal`."""
    with open(path, "rb") as handle:
        head = handle.read(_PAGE_HEADER.size + 4 + _LONG_HEADER_TAIL.size)
    return parse_segment_header(head, path.name)
