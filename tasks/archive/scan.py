"""Archive integrity of a full backup, in one read: checksum, compressed stream, tar, manifest.

The file is read once: its sha256 is computed while the gzip (or zstd) stream is
decompressed and every tar header is walked, as `tar -tzf` does; `MANIFEST.json` is
noted on the way past (its size; test-restore reads it from the extracted tree).
Used after every full backup, by test-restore, and by the monitor. Nothing here writes
anything.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import zstandard

from tasks.archive.manifest.model import MANIFEST_JSON, MANIFEST_TXT
from tasks.core.errors import VerifyError
from tasks.stream import progress
from tasks.stream.checksum import read_sidecar, sha256_file
from tasks.stream.compress import BLOCK_SIZE, HashingReader, open_decompressed, sniff_compression
from tasks.stream.read_ahead import read_ahead

# A manifest lists every file; 10,000 files take about 2.7 MB. Anything far beyond is not ours.
MAX_MANIFEST_BYTES = 512 << 20
# Its entries are read one by one onto disk, but a gzip bomb posing as a manifest would
# still cost the time and disk to read it: past this size, it must be backed by members
# (one entry each, at most two PATH_MAX names and ~200 bytes of fields).
PLAIN_MANIFEST_BYTES = 64 << 20
MANIFEST_BYTES_PER_MEMBER = 9 << 10


@dataclass
class ArchiveScan:
    path: Path
    size: int  # compressed, on disk
    sha256: str
    compression: str
    sidecar_checked: bool
    members: int = 0
    content_bytes: int = 0  # sum of member sizes
    top_folders: set[str] = field(default_factory=set)
    manifest_member: str | None = None  # "<top>/MANIFEST.json", if the archive holds one
    last_members: list[str] = field(default_factory=list)  # the last two member names

    @property
    def top(self) -> str | None:
        return next(iter(self.top_folders)) if len(self.top_folders) == 1 else None

    @property
    def manifest_is_last(self) -> bool:
        names = {name.rsplit("/", 1)[-1] for name in self.last_members}
        return len(self.last_members) == 2 and names == {MANIFEST_JSON, MANIFEST_TXT}


# Called with each member as the scan passes it, before the stream moves on: the member's
# data can be read from the tar then (test-restore extracts in the same read).
MemberVisitor = Callable[[tarfile.TarFile, tarfile.TarInfo], None]


def scan_archive(
    path: Path, expected_sha256: str | None = None, visit: MemberVisitor | None = None
) -> ArchiveScan:
    """Read the whole archive once; VerifyError saying what is wrong, else what it holds.
    `visit` sees every member on the way. It keeps its own failures to itself: what it
    raises is taken for the archive's (a stream or tar error stops the scan as damage)."""
    if not path.exists():
        raise VerifyError(f"{path}: no such backup file")
    compression = sniff_compression(path)
    expected = expected_sha256 or read_sidecar(path)
    size = path.stat().st_size
    progress.phase(f"reading {path.name}", size)
    try:
        with open(path, "rb") as raw:
            scan = scan_stream(raw, path, compression, visit, metered=True)
    except StreamDamage:
        _raise_sidecar_mismatch(path, expected)  # the plainer reason, when there is one
        raise
    progress.set_done(size)
    scan.sidecar_checked = expected is not None
    check_scanned(scan, expected)
    return scan


class StreamDamage(VerifyError):
    """The compressed stream or the tar inside it is damaged or truncated."""


def scan_stream(
    raw: BinaryIO,
    path: Path,
    compression: str,
    visit: MemberVisitor | None = None,
    *,
    metered: bool = False,
    inflate_ahead: bool = True,
) -> ArchiveScan:
    """What `scan_archive` reads, from an open file (`path` names it in messages): hashed
    while inflated and walked; its sha256 is in the result, for the caller to judge
    (`check_scanned`). `metered`: report the progress of the run."""
    scan = ArchiveScan(path=path, size=0, sha256="", compression=compression, sidecar_checked=False)
    try:
        hashed = HashingReader(raw)
        inflated = open_decompressed(io.BufferedReader(hashed, BLOCK_SIZE), compression)
        # hashed and inflated in a thread of its own while this one walks the headers
        stream = read_ahead(inflated) if inflate_ahead else inflated
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                while (member := tar.next()) is not None:
                    _note_member(scan, member)
                    if visit is not None:
                        visit(tar, member)
                    if metered:
                        progress.set_done(hashed.size)
                    tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every header; we need none
            # tar stops at its end marker; the rest of the stream must still decompress.
            while stream.read(BLOCK_SIZE):
                if metered:
                    progress.set_done(hashed.size)
        finally:
            if stream is not inflated:  # (closing the inflating reader would close `hashed`)
                stream.close()  # the reading thread has stopped: the rest is read here
        hashed.drain()
    except (EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError) as exc:
        raise StreamDamage(
            f"{path.name}: damaged or truncated {compression} stream ({exc})"
        ) from None
    except tarfile.TarError as exc:
        raise StreamDamage(f"{path.name}: not a readable tar archive ({exc})") from None
    except OSError as exc:
        raise VerifyError(f"{path.name}: cannot read ({exc})") from None
    scan.size = hashed.size
    scan.sha256 = hashed.sha256.hexdigest()
    return scan


def check_scanned(scan: ArchiveScan, expected_sha256: str | None) -> None:
    """VerifyError unless the scanned bytes are the ones expected and hold something."""
    if expected_sha256 is not None and scan.sha256 != expected_sha256:
        raise VerifyError(_mismatch(scan.path, expected_sha256, scan.sha256))
    if scan.members == 0:
        raise VerifyError(f"{scan.path.name}: the archive is empty")


def _mismatch(path: Path, expected: str, actual: str) -> str:
    return (
        f"{path.name}: sha256 does not match its sidecar (expected {expected[:12]}…, "
        f"found {actual[:12]}…) — the file is corrupt"
    )


def _raise_sidecar_mismatch(path: Path, expected: str | None) -> None:
    """After a read error: if the sidecar disagrees too, say that (one more read)."""
    if expected is None:
        return
    try:
        actual = sha256_file(path)
    except OSError:
        return
    if actual != expected:
        raise VerifyError(_mismatch(path, expected, actual))


def member_name(member: tarfile.TarInfo) -> str:
    """The member's name without a leading "./" (some tar tools write one)."""
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def _note_member(scan: ArchiveScan, member: tarfile.TarInfo) -> None:
    scan.members += 1
    scan.content_bytes += member.size if member.isfile() else 0
    name = member_name(member)
    scan.top_folders.add(name.split("/", 1)[0])
    scan.last_members = [*scan.last_members[-1:], name]
    parts = name.split("/")
    if len(parts) == 2 and parts[1] == MANIFEST_JSON and member.isfile():
        cap = max(PLAIN_MANIFEST_BYTES, scan.members * MANIFEST_BYTES_PER_MEMBER)
        if member.size > min(cap, MAX_MANIFEST_BYTES):
            raise VerifyError(
                f"{scan.path.name}: MANIFEST.json is implausibly large ({member.size} bytes "
                f"for {scan.members} archive members)"
            )
        scan.manifest_member = name
