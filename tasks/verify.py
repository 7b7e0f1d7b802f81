"""Verifying a backup file: checksum, then the whole compressed stream, then its format.

Used after every backup, before every restore, by test-restore and by the monitor.
Nothing here changes a file.
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import zstandard

from tasks.checksum import read_sidecar
from tasks.compress import BLOCK_SIZE, HashingReader, open_decompressed
from tasks.errors import VerifyError
from tasks.naming import BackupName, parse_backup_name
from tasks.sources.sqlite import SQLITE_HEADER

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class VerifiedFile:
    path: Path
    size: int  # compressed size on disk
    sha256: str
    content_size: int  # uncompressed
    compression: str
    sidecar_checked: bool


def sniff_compression(path: Path) -> str:
    """'gzip' or 'zstd' from the file's first bytes; VerifyError for anything else."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except IsADirectoryError:
        raise VerifyError(f"{path} is a directory, not a backup file") from None
    except FileNotFoundError:
        raise VerifyError(f"{path}: no such backup file") from None
    except OSError as exc:
        raise VerifyError(f"{path}: cannot read ({exc.strerror})") from None
    if head[:2] == _GZIP_MAGIC:
        return "gzip"
    if head == _ZSTD_MAGIC:
        return "zstd"
    if not head:
        raise VerifyError(f"{path.name}: empty file, not a backup")
    raise VerifyError(f"{path.name}: not a gzip or zstd file")


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
    try:
        with open(path, "rb") as raw:
            hashed = HashingReader(raw)
            reader = open_decompressed(io.BufferedReader(hashed, BLOCK_SIZE), compression)
            while chunk := reader.read(BLOCK_SIZE):
                if not first:
                    first = chunk[:64]
                content += len(chunk)
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
