"""Produce → compress → hash → atomic file, in one pass with bounded memory.

`write_artifact` hands a producer a writable stream of uncompressed bytes; what the
producer writes is compressed, hashed while it is written, and lands under its final
name (with its sha256 sidecar) only when everything succeeded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Generic, Protocol, TypeVar

from tasks.core.atomic import OUT_OF_SPACE, atomic_writer
from tasks.core.errors import OutOfSpaceError
from tasks.stream import progress
from tasks.stream.checksum import write_sidecar
from tasks.stream.compress import HashingWriter, compressing_writer

T = TypeVar("T")


@dataclass(frozen=True)
class Artifact(Generic[T]):
    path: Path
    sidecar: Path
    size: int
    sha256: str
    seconds: float
    detail: T


class WriteWatch(Protocol):
    """Told how an artifact's write goes, by `write_artifact` (a reader following it)."""

    def opened(self, partial: Path) -> None:
        """The temporary file exists; nothing is written yet."""

    def finished(self) -> None:
        """Everything is written, flushed and renamed to the final name, sidecar beside it."""

    def failed(self) -> None:
        """The write failed: the temporary file is gone or going."""


def write_artifact(
    final: Path,
    produce: Callable[[BinaryIO], T],
    compression: str = "gzip",
    level: int | None = None,
    watch: WriteWatch | None = None,
    member_check: bool = True,
) -> Artifact[T]:
    """`member_check` False: no in-memory check of each gzip member, for a file that is
    read back whole (every member inflated from the disk) before it counts."""
    started = time.monotonic()
    try:
        detail, hashed = _write(final, produce, compression, level, watch, member_check)
        try:
            sidecar = write_sidecar(final, hashed.sha256.hexdigest())
        except BaseException:
            # A backup whose checksum could not be recorded is not a finished backup.
            with contextlib.suppress(FileNotFoundError):
                final.unlink()
            raise
    except BaseException as exc:
        if watch is not None:
            watch.failed()
        if isinstance(exc, OSError) and exc.errno in OUT_OF_SPACE:
            raise OutOfSpaceError(
                f"no space left in {final.parent} while writing {final.name}; "
                "nothing was kept — free some space there and run again",
                final.parent,
            ) from None
        raise
    if watch is not None:
        watch.finished()
    return Artifact(
        path=final,
        sidecar=sidecar,
        size=hashed.size,
        sha256=hashed.sha256.hexdigest(),
        seconds=time.monotonic() - started,
        detail=detail,
    )


def _write(
    final: Path,
    produce: Callable[[BinaryIO], T],
    compression: str,
    level: int | None,
    watch: WriteWatch | None,
    member_check: bool,
) -> tuple[T, HashingWriter]:
    """Produce → compress → hash into `final`'s temporary file, renamed to `final` at the end."""
    with atomic_writer(final, on_open=watch.opened if watch is not None else None) as raw:
        hashed = HashingWriter(raw)
        compressed = compressing_writer(
            hashed,  # type: ignore[arg-type]
            compression,
            level,
            member_check=member_check,
        )
        progress.phase(f"writing {final.name}", progress.expected())
        sink = progress.CountingWriter(compressed) if progress.metered() else compressed
        try:
            detail = produce(sink)  # type: ignore[arg-type]
        except BaseException:
            with contextlib.suppress(Exception):
                compressed.close()
            raise
        compressed.close()
    return detail, hashed
