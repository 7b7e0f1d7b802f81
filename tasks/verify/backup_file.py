"""Verifying a backup file: checksum, then the whole compressed stream, then its format.

Used after every backup, before every restore, by test-restore and by the monitor.
Nothing here changes a file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import zstandard

from tasks.core.errors import VerifyError
from tasks.core.naming import BackupName, parse_backup_name
from tasks.sources.sqlite import SQLITE_HEADER
from tasks.stream import progress
from tasks.stream.checksum import read_sidecar
from tasks.stream.compress import BLOCK_SIZE, HashingReader, open_decompressed, sniff_compression


@dataclass(frozen=True)
class VerifiedFile:
    path: Path
    size: int  # compressed size on disk
    sha256: str
    content_size: int  # uncompressed; -1 when a fresh-backup check did not measure it
    compression: str
    sidecar_checked: bool


def verify_compressed_file(path: Path, expected_sha256: str | None = None) -> VerifiedFile:
    """Read `path` once: check its sha256 (sidecar or `expected_sha256`) and decompress it all."""
    if not path.exists():
        raise VerifyError(f"{path}: no such backup file")
    if path.is_dir():
        raise VerifyError(f"{path} is a directory, not a backup file")
    compression = sniff_compression(path)
    expected = expected_sha256 or read_sidecar(path)
    content = 0
    first = b""
    progress.phase(f"verifying {path.name}", path.stat().st_size)
    try:
        with open(path, "rb") as raw:
            hashed = HashingReader(raw)
            reader = open_decompressed(io.BufferedReader(hashed, BLOCK_SIZE), compression)
            while chunk := reader.read(BLOCK_SIZE):
                if not first:
                    first = chunk[:64]
                content += len(chunk)
                progress.set_done(raw.tell())
            hashed.drain()  # bytes after the stream still count for the checksum
    except (EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError, OSError) as exc:
        raise VerifyError(
            f"{path.name}: damaged or truncated {compression} stream ({exc})"
        ) from None
    actual = hashed.sha256.hexdigest()
    if expected is not None and actual != expected:
        raise VerifyError(
            f"{path.name}: sha256 does not match (expected {expected[:12]}…, found {actual[:12]}…)"
        )
    parsed = parse_backup_name(path.name)
    _check_content_kind(path, parsed, first, content)
    return VerifiedFile(
        path, path.stat().st_size, actual, content, compression, expected is not None
    )


def _check_content_kind(path: Path, parsed: BackupName | None, first: bytes, content: int) -> None:
    if parsed is None:
        return
    if parsed.kind == "db" and parsed.db_type == "sqlite" and not first.startswith(SQLITE_HEADER):
        raise VerifyError(f"{path.name}: does not hold a SQLite database")
    if parsed.kind == "db" and parsed.db_type == "postgres" and content == 0:
        raise VerifyError(f"{path.name}: the SQL dump is empty")


def verify_fresh_backup(path: Path, expected_sha256: str) -> VerifiedFile:
    """The check after a backup this process just wrote: cheaper than a full decompress.

    Every gzip member was already inflated back and compared with its input while it was
    written (tasks.stream.compress), and `expected_sha256` was computed over exactly those bytes.
    So re-hashing the file on disk against it — and against its sidecar — proves the file
    holds that checked stream; only the first block is decompressed, to check the content
    kind. zstd is not inflated back by our writer: there the re-hash proves the file is
    what zstandard produced, and the frames carry their own content checksum (see
    tasks.stream.compress), which every later full verify and restore checks.
    """
    compression = sniff_compression(path)
    sidecar = read_sidecar(path)
    if sidecar is not None and sidecar != expected_sha256:
        raise VerifyError(f"{path.name}: the sha256 sidecar does not match the backup just written")
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as raw:
            while chunk := raw.read(BLOCK_SIZE):
                digest.update(chunk)
            raw.seek(0)
            reader = open_decompressed(raw, compression)
            first = reader.read(64)
    except (EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError, OSError) as exc:
        raise VerifyError(
            f"{path.name}: damaged or truncated {compression} stream ({exc})"
        ) from None
    actual = digest.hexdigest()
    if actual != expected_sha256:
        raise VerifyError(
            f"{path.name}: sha256 does not match (expected {expected_sha256[:12]}…, "
            f"found {actual[:12]}…)"
        )
    _check_content_kind(path, parse_backup_name(path.name), first, len(first))
    return VerifiedFile(path, path.stat().st_size, actual, -1, compression, sidecar is not None)
