"""A minimal tar writer for one-pass streaming: headers, data hashed as it goes, padding.

`tarfile`'s own stream mode ("w|") re-slices its whole buffer for every 10 KiB record
(quadratic on large writes) and keeps a TarInfo for every member in memory; this
writer keeps neither. Headers come from `TarInfo.tobuf` in PAX format, so names in any
language, long names and files over 8 GiB are stored the way GNU tar reads them.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import dataclass
from typing import BinaryIO

BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240: the end of the archive is padded to a whole record
CHUNK = 1 << 20


@dataclass(frozen=True)
class CopiedData:
    """What was read from a file while it was archived."""

    size: int  # bytes read from the file (at most the size in the header)
    sha256: str  # of the bytes stored in the archive (padding included, if any)
    short: bool  # the file ended before the size in the header: zeros were stored
    longer: bool  # the file had more bytes than the header promised: they were left out
    error: OSError | None  # a read error after the header went out


class TarStreamWriter:
    """Write tar members to a binary stream; `close()` writes the end-of-archive marker."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._offset = 0
        self._buffer = bytearray(CHUNK)

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        self._out.write(data)
        self._offset += len(data)

    def add_header(self, info: tarfile.TarInfo) -> None:
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def add_bytes(self, info: tarfile.TarInfo, data: bytes) -> None:
        info.size = len(data)
        self.add_header(info)
        self._write(data)
        self._pad(len(data))

    def add_fd(self, info: tarfile.TarInfo, fd: int) -> CopiedData:
        """Store exactly `info.size` bytes read from `fd`, hashing them as they pass.

        The header is written before the data, so the size is fixed: a file that
        shrinks is padded with zeros, one that grows is cut; both are reported.
        """
        self.add_header(info)
        digest = hashlib.sha256()
        remaining = info.size
        read_total = 0
        error: OSError | None = None
        view = memoryview(self._buffer)
        while remaining > 0:
            want = min(remaining, CHUNK)
            try:
                got = os.readv(fd, [view[:want]])
            except OSError as exc:
                error = exc
                got = 0
            if got == 0:
                break
            chunk = view[:got]
            digest.update(chunk)
            self._write(chunk)
            remaining -= got
            read_total += got
        short = remaining > 0
        while remaining > 0:
            zeros = bytes(min(remaining, CHUNK))
            digest.update(zeros)
            self._write(zeros)
            remaining -= len(zeros)
        longer = False
        if not short and error is None:
            try:
                longer = len(os.read(fd, 1)) > 0
            except OSError as exc:
                error = exc
        self._pad(info.size)
        return CopiedData(read_total, digest.hexdigest(), short, longer, error)

    def _pad(self, size: int) -> None:
        remainder = size % BLOCK
        if remainder:
            self._write(bytes(BLOCK - remainder))

    def close(self) -> None:
        """Two zero blocks end the archive; then pad to a whole record, as tar does."""
        self._write(bytes(2 * BLOCK))
        remainder = self._offset % RECORD
        if remainder:
            self._write(bytes(RECORD - remainder))
