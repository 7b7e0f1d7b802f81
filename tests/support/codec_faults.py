"""A gzip deflater with a fault: every member it makes ends with a wrong crc32, as a
broken codec would write it. What must find it: the in-memory self-check of each member
(db-backup), or the read-back of the whole file (backup-all)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def crc_breaking(real: Callable[[int], Any]) -> type:
    """A deflater class wrapping `real` (tasks.stream.gzip_codec.deflater), one byte of
    each member's crc32 trailer flipped."""

    class Faulty:
        def __init__(self, level: int) -> None:
            self._inner = real(level)

        def compress(self, data: bytes) -> bytes:
            return bytes(self._inner.compress(data))

        def flush(self) -> bytes:
            tail = bytearray(self._inner.flush())
            tail[-5] ^= 0xFF  # inside the stored crc32 of the trailer
            return bytes(tail)

    return Faulty
