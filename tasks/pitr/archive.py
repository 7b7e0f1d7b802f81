"""wal-push and wal-fetch on the local WAL archive: PostgreSQL's archive_command and
restore_command (layout: `tasks.pitr.wal_catalog`).

Push: the file is read once — compressed with the project's codec while its own sha256
and the compressed bytes' sha256 are computed — into a hidden partial file, fsynced,
then published under its final name with a hard link, which never replaces an existing
file, and the sidecar is written (atomically) last. Only then is the push done, and
only then does the command exit 0: PostgreSQL recycles the segment after that.

A name that is already archived is compared, not replaced (as pgBackRest does):
- the same compressed bytes, or (the codec's output may change between versions) the
  same content once decompressed: done, exit 0 — PostgreSQL re-sends a segment whose
  first push it did not hear back from, e.g. after a crash;
- different content: VerifyError, nothing overwritten. Two clusters archiving into one
  folder, or a damaged archived copy, must be seen by a person.

Fetch: the archived file is decompressed into a hidden file next to DEST while the
compressed bytes are hashed; it becomes DEST only when the hash matches the sidecar.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tasks.core.atomic import ensure_private_dir, partial_path, write_text_atomic
from tasks.core.errors import BackupError, ConfigError, DestinationError, SourceError, VerifyError
from tasks.core.naming import sidecar_name
from tasks.pitr.segments import parse_wal_name
from tasks.pitr.wal_catalog import ArchivedWal, archived_name, find_archived
from tasks.stream.compress import (
    BLOCK_SIZE,
    HashingReader,
    HashingWriter,
    compressing_writer,
    open_decompressed,
    with_zstd_errors,
)

_OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}
_PARTIAL_PID = re.compile(r"\.partial-(?P<pid>\d+)-[0-9a-f]+$")


class WalMissingError(BackupError):
    """wal-fetch: the archive does not hold the file PostgreSQL asked for.

    PostgreSQL asks for files that do not exist as a matter of course (the next
    timeline's history, the segment after the last one archived): exit 1, short message.
    """

    exit_code = 1


@dataclass(frozen=True)
class PushResult:
    name: str
    path: Path  # the archived (compressed) file
    sha256: str  # of the compressed file, as its sidecar says
    size: int  # compressed bytes
    source_size: int
    already_archived: bool  # an identical copy was there; nothing was written
    seconds: float


@dataclass(frozen=True)
class FetchResult:
    name: str
    source: Path
    dest: Path
    size: int  # uncompressed bytes written
    seconds: float


# --------------------------------------------------------------------------- push


def push_wal(
    source: Path, archive_dir: Path, compression: str = "gzip", level: int | None = None
) -> PushResult:
    """Archive the WAL file at `source` (e.g. `pg_wal/000000010000000000000003`)."""
    started = time.monotonic()
    name = source.name
    if parse_wal_name(name) is None:
        raise ConfigError(
            f"{name!r} is not a WAL file name (segment, .partial, .backup or "
            ".history); archive_command must pass %p"
        )
    try:
        ensure_private_dir(archive_dir)
    except OSError as exc:
        raise DestinationError(
            f"WAL archive {archive_dir} cannot be created ({exc.strerror}); check "
            "WAL_ARCHIVE_DIR and that the PostgreSQL server's user may write there"
        ) from None
    final = archive_dir / archived_name(name, compression)
    _remove_dead_partials(archive_dir, name)
    try:
        source_handle = open(source, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise SourceError(f"{source}: no such file") from None
    except OSError as exc:
        raise SourceError(f"{source}: cannot read ({exc.strerror})") from None
    with source_handle:
        written_at = os.fstat(source_handle.fileno()).st_mtime
        tmp = partial_path(final)
        try:
            packed_sha256, source_size = _compress_into(
                source_handle, tmp, written_at, compression, level
            )

            def content_sha256() -> str:
                # Only needed when the name is already archived: read the source again
                # then, rather than hash every segment twice (issue 19's time budget).
                source_handle.seek(0)
                digest = hashlib.sha256()
                while chunk := source_handle.read(BLOCK_SIZE):
                    digest.update(chunk)
                return digest.hexdigest()

            result = _publish(name, tmp, final, archive_dir, content_sha256, packed_sha256)
        except OSError as exc:
            if exc.errno in _OUT_OF_SPACE:
                raise DestinationError(
                    f"no space left in {archive_dir} while archiving {name}; PostgreSQL "
                    "keeps the segment and retries — free some space"
                ) from None
            raise DestinationError(f"cannot write {final} ({exc.strerror or exc})") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return PushResult(
        name, result[0], result[1], result[2], source_size, result[3],
        time.monotonic() - started,
    )  # fmt: skip


def _compress_into(
    source: BinaryIO, tmp: Path, written_at: float, compression: str, level: int | None
) -> tuple[str, int]:
    """Source -> compressed partial file (fsynced, mtime of the source); its sha256, size."""
    size = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb", buffering=BLOCK_SIZE) as out:
        hashed = HashingWriter(out)
        # One thread: a segment is small, and PostgreSQL calls us once per segment on a
        # server that is busy doing its real work.
        writer = compressing_writer(hashed, compression, level, threads=1)  # type: ignore[arg-type]
        try:
            while chunk := source.read(BLOCK_SIZE):
                writer.write(chunk)
                size += len(chunk)
        finally:
            writer.close()
        out.flush()
        os.utime(out.fileno(), (written_at, written_at))
        os.fsync(out.fileno())
    return hashed.sha256.hexdigest(), size


def _publish(
    name: str,
    tmp: Path,
    final: Path,
    archive_dir: Path,
    content_sha256: Callable[[], str],
    packed_sha256: str,
) -> tuple[Path, str, int, bool]:
    """(path, sha256, size, already_archived) once `name` is durably archived."""
    for _ in range(3):  # a concurrent push of the same name can win a race, at most once
        existing = find_archived(archive_dir, name)
        if existing is not None:
            return _settle_existing(existing, content_sha256, packed_sha256)
        if _link_no_clobber(tmp, final):
            # One fsync of the folder covers both names: write_text_atomic ends with it.
            # A crash before it may lose either; a sidecar without its file is no
            # archived copy (and the next push writes it again), and exit 0 comes only
            # after it, so PostgreSQL pushes again whatever was lost.
            _write_wal_sidecar(final, packed_sha256)
            return final, packed_sha256, final.stat().st_size, False
    raise DestinationError(f"{name} keeps appearing and vanishing in {archive_dir}")


def _link_no_clobber(tmp: Path, final: Path) -> bool:
    """Give `tmp` the name `final` unless that exists; False when it does."""
    try:
        os.link(tmp, final)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
    # A file system without hard links (some network and FUSE mounts): check, then
    # rename. Only a second pusher of the very same name could slip in between.
    if final.exists():
        return False
    os.rename(tmp, final)
    return True


def _write_wal_sidecar(final: Path, sha256: str) -> None:
    write_text_atomic(final.with_name(sidecar_name(final.name)), f"{sha256}  {final.name}\n")


def _settle_existing(
    existing: ArchivedWal, content_sha256: Callable[[], str], packed_sha256: str
) -> tuple[Path, str, int, bool]:
    """An archived copy exists: done if it holds the same content, else refuse."""
    recorded = _recorded_sha256(existing) if existing.committed else None
    if recorded is not None and recorded == packed_sha256:
        return existing.path, recorded, existing.size, True
    archived_sha256, file_sha256 = _content_digest(existing, recorded)
    this_sha256 = content_sha256()
    if archived_sha256 != this_sha256:
        raise VerifyError(
            f"{existing.name} is already archived with different content "
            f"({existing.path}, content sha256 {archived_sha256[:12]}…, this one "
            f"{this_sha256[:12]}…); nothing was overwritten. Is a second cluster archiving "
            "into this WAL_ARCHIVE_DIR? Check before moving the archived copy aside"
        )
    if not existing.committed:  # a push killed after publishing, before its sidecar
        _write_wal_sidecar(existing.path, file_sha256)
    return existing.path, file_sha256, existing.size, True


def _recorded_sha256(entry: ArchivedWal) -> str:
    sidecar = entry.path.with_name(sidecar_name(entry.path.name))
    try:
        text = sidecar.read_text(errors="replace")
    except FileNotFoundError:
        raise VerifyError(f"{sidecar.name}: vanished while being read") from None
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[1].lstrip("*") == entry.path.name:
            digest = parts[0].lower()
            if re.fullmatch(r"[0-9a-f]{64}", digest):
                return digest
    raise VerifyError(f"{sidecar.name}: not a sha256sum line for {entry.path.name}")


def check_archived(entry: ArchivedWal) -> str:
    """Prove an archived file: committed, matching its sidecar, decompressing to the end.
    Returns the sha256 of its content."""
    if not entry.committed:
        raise VerifyError(f"{entry.path.name} has no sha256 sidecar (its push did not finish)")
    content, _ = _content_digest(entry, _recorded_sha256(entry), hint="")
    return content


_PUSH_HINT = "; nothing was overwritten — move it aside so the next push archives the segment again"


def _content_digest(
    entry: ArchivedWal, recorded: str | None, hint: str = _PUSH_HINT
) -> tuple[str, str]:
    """(sha256 of the decompressed content, sha256 of the compressed file); a copy that
    does not match its own sidecar, or does not decompress, is damaged."""
    content = hashlib.sha256()
    try:
        with open(entry.path, "rb") as raw:
            hashed = HashingReader(raw)
            with open_decompressed(hashed, entry.compression) as stream:  # type: ignore[arg-type]
                while chunk := stream.read(BLOCK_SIZE):
                    content.update(chunk)
            hashed.drain()
    except with_zstd_errors(EOFError, OSError, zlib.error, gzip.BadGzipFile) as exc:
        raise VerifyError(
            f"the archived copy of {entry.name} ({entry.path}) is damaged ({exc}){hint}"
        ) from None
    file_sha256 = hashed.sha256.hexdigest()
    if recorded is not None and recorded != file_sha256:
        raise VerifyError(
            f"the archived copy of {entry.name} ({entry.path}) does not match its sha256 "
            f"sidecar{hint}"
        )
    return content.hexdigest(), file_sha256


def _remove_dead_partials(archive_dir: Path, name: str) -> None:
    """Hidden partials of `name` left by killed pushes (their process is gone)."""
    prefix = f".{name}."
    try:
        entries = list(os.scandir(archive_dir))
    except FileNotFoundError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        match = _PARTIAL_PID.search(entry.name)
        if match and not _alive(int(match.group("pid"))):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- fetch


def fetch_wal(name: str, archive_dir: Path, dest: Path) -> FetchResult:
    """Restore archived WAL file `name` to `dest`, verified against its sha256 sidecar."""
    started = time.monotonic()
    if parse_wal_name(name) is None:
        raise ConfigError(f"{name!r} is not a WAL file name; restore_command must pass %f %p")
    entry = find_archived(archive_dir, name)
    if entry is None:
        raise WalMissingError(f"{name} is not in the WAL archive {archive_dir}")
    if not entry.committed:
        raise VerifyError(
            f"{entry.path.name} has no sha256 sidecar (its push did not finish); not restored"
        )
    expected = _recorded_sha256(entry)
    tmp = partial_path(dest)
    size = 0
    try:
        with open(entry.path, "rb") as raw, open(tmp, "xb") as out:
            hashed = HashingReader(raw)
            with open_decompressed(hashed, entry.compression) as stream:  # type: ignore[arg-type]
                while chunk := stream.read(BLOCK_SIZE):
                    out.write(chunk)
                    size += len(chunk)
            hashed.drain()
        if hashed.sha256.hexdigest() != expected:
            raise VerifyError(
                f"{entry.path.name} does not match its sha256 sidecar — the "
                "archived copy is damaged; not restored"
            )
        os.replace(tmp, dest)
    except with_zstd_errors(EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise VerifyError(
            f"{entry.path.name} is damaged or truncated ({exc}); not restored"
        ) from None
    except OSError as exc:
        raise DestinationError(f"cannot write {dest} ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return FetchResult(name, entry.path, dest, size, time.monotonic() - started)
