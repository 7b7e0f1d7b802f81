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
from typing import BinaryIO, Generic, TypeVar

from tasks.atomic import atomic_writer
from tasks.checksum import write_sidecar
from tasks.compress import HashingWriter, compressing_writer

T = TypeVar("T")


@dataclass(frozen=True)
class Artifact(Generic[T]):
    path: Path
    sidecar: Path
    size: int
    sha256: str
    seconds: float
    detail: T


def write_artifact(
    final: Path,
    produce: Callable[[BinaryIO], T],
    compression: str = "gzip",
    level: int | None = None,
) -> Artifact[T]:
    started = time.monotonic()
    with atomic_writer(final) as raw:
        hashed = HashingWriter(raw)
        compressed = compressing_writer(hashed, compression, level)  # type: ignore[arg-type]
        try:
            detail = produce(compressed)  # type: ignore[arg-type]
        except BaseException:
            with contextlib.suppress(Exception):
                compressed.close()
            raise
        compressed.close()
    sidecar = write_sidecar(final, hashed.sha256.hexdigest())
    return Artifact(
        path=final,
        sidecar=sidecar,
        size=hashed.size,
        sha256=hashed.sha256.hexdigest(),
        seconds=time.monotonic() - started,
        detail=detail,
    )
