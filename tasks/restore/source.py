"""What a file handed to a restore is: where it lies, what it holds, what it recorded.

A restore accepts the project's own artifacts and the files an operator made by hand
with the guide's tools (`pg_dump | gzip`, `sqlite3 .backup` + `gzip`), whatever their
names, so the kind of a database backup is read from its first decompressed bytes,
never trusted from its name. Nothing here changes a file.
"""

from __future__ import annotations

import contextlib
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import zstandard

from tasks.archive.manifest.model import valid_privileges
from tasks.catalog.good_backup import looks_like_sql as _looks_like_sql
from tasks.catalog.records import read_meta
from tasks.core.errors import VerifyError
from tasks.sources.sqlite import SQLITE_HEADER
from tasks.stream.checksum import read_sidecar, sha256_file
from tasks.stream.compress import BLOCK_SIZE, open_decompressed, sniff_compression

ContentKind = Literal["sqlite", "sql", "tar"]

_SNIFF_BYTES = 64 * 1024
_TAR_MAGIC_OFFSET = 257  # "ustar" in a POSIX/GNU tar header


def resolve_backup_file(backup_file: str, backup_dir: Path) -> Path:
    """The file to restore: as given (relative to the current folder), else in BACKUP_DIR.

    An operator who starts a restore from the Prefect UI types a bare backup name; one at
    a shell types a path. A path that exists nowhere is returned as given, so that the
    verification reports it as missing.
    """
    given = Path(backup_file).expanduser()
    if given.is_absolute():
        return given
    here = Path.cwd() / given
    if here.exists():
        return here.absolute()
    in_backups = backup_dir / given
    if given.parent == Path(".") and in_backups.exists():
        return in_backups
    return here.absolute()


def sniff_content(path: Path, compression: str) -> ContentKind:
    """'sqlite', 'sql' (a plain pg_dump) or 'tar' (a full backup) from the first bytes.

    Call it on a verified file: a damaged stream has already been reported.
    """
    try:
        with open(path, "rb") as raw:
            reader = open_decompressed(io.BufferedReader(raw, BLOCK_SIZE), compression)
            head = _read_up_to(reader, _SNIFF_BYTES)
    except (OSError, EOFError, ValueError, zlib.error, zstandard.ZstdError) as exc:
        raise VerifyError(
            f"{path.name}: damaged or truncated {compression} stream, cannot read its content ({exc})"
        ) from None
    if head.startswith(SQLITE_HEADER):
        return "sqlite"
    if head[_TAR_MAGIC_OFFSET : _TAR_MAGIC_OFFSET + 5] == b"ustar":
        return "tar"
    if _looks_like_sql(head):
        return "sql"
    raise VerifyError(
        f"{path.name}: holds neither a SQLite database nor a plain-SQL pg_dump — not a database backup"
    )


def _read_up_to(reader: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes; a stream damaged further on yields what came before the damage
    (a one-pass restore reports the damage itself when it reaches it)."""
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        try:
            chunk = reader.read(remaining)
        except (OSError, EOFError, ValueError, zlib.error, zstandard.ZstdError):
            if chunks:
                break
            raise
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    with contextlib.suppress(Exception):
        reader.close()
    return b"".join(chunks)


@dataclass(frozen=True)
class RecordedCounts:
    """The table row counts a backup recorded, and where they came from."""

    tables: dict[str, int] | None  # None: the backup recorded none (a hand-made dump)
    source: str
    # PostgreSQL: each table's owner and privileges (None: not recorded, older backups)
    privileges: dict[str, list[Any]] | None = None


def recorded_counts(artifact: Path, sha256: str) -> RecordedCounts:
    """Row counts from the artifact's `NAME.meta.json`, when it belongs to these bytes.

    The meta file is not covered by the checksum, so its own sha256 must name the
    artifact that was verified; otherwise its counts describe some other file.
    """
    meta = read_meta(artifact)
    tables = meta.get("tables")
    if not isinstance(tables, dict) or meta.get("sha256") != sha256:
        return RecordedCounts(None, "none recorded")
    if not all(isinstance(k, str) and isinstance(v, int) for k, v in tables.items()):
        return RecordedCounts(None, "none recorded")
    return RecordedCounts(
        dict(tables), f"{artifact.name}.meta.json", valid_privileges(meta.get("privileges"))
    )


@dataclass(frozen=True)
class CheckedFile:
    """A backup about to be restored in one pass: the cheap checks passed."""

    path: Path
    compression: str
    sha256: str | None  # the sidecar's digest, which the file's bytes matched; None: no sidecar


def check_before_load(path: Path) -> CheckedFile:
    """The part of the verification that needs no inflating, run before anything is touched:
    the file is there and is gzip/zstd, and its bytes match its sidecar (sha256 only:
    about 1 GB/s). The stream itself is checked by the one-pass load, which also hashes
    the bytes again and withholds COMMIT unless they still match."""
    compression = sniff_compression(path)  # missing, a directory, not gzip/zstd: refused
    expected = read_sidecar(path)
    if expected is not None:
        actual = sha256_file(path)
        if actual != expected:
            raise VerifyError(
                f"{path.name}: sha256 does not match (expected {expected[:12]}…, "
                f"found {actual[:12]}…)"
            )
    return CheckedFile(path, compression, expected)
