"""Streaming compression on every core, and hashing while writing.

gzip: the input is cut into blocks that are deflated in parallel threads (ISA-L at levels
0-3, zlib-ng at 4-9, zlib without those wheels: all release the GIL) and written in order
as concatenated gzip members — a valid gzip file that `gunzip`, `tar -z` and Python's
`gzip` read as one stream (RFC 1952, section 2.2).
zstd: zstandard's own multithreaded frame writer. Memory stays bounded: at most
`2 × threads` blocks are in flight.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

# zstandard (it imports `platform`) and the thread pool are imported where they are used:
# wal-push, run once per WAL segment with gzip, pays for neither (issue 19's time budget).

from tasks.core.errors import VerifyError
from tasks.stream import gzip_codec

BLOCK_SIZE = 1 << 20
# gzip level 3 with ISA-L (tasks/stream/gzip_codec.py): its best ratio, at the speed of
# its level 2 on the prose bench set. 1 MiB members, one thread, CPU MB/s, size relative
# to `gzip -6` of the same bytes (bench/codec_levels.py, quiet machine, 2026-12-01, issue 18):
#   prose set (gzip -6 2.9x):    ISA-L 1 326 MB/s 1.152x | 2 327 1.125x | 3 269 1.105x
#                                 zlib-ng 4 83 1.029x | 6 49 1.003x | zlib 2 81 1.134x | 6 22
#   chat-log set (gzip -6 8.1x): ISA-L 1 605 MB/s 1.488x | 2 614 1.466x | 3 335 1.372x
#                                 zlib-ng 5 136 1.088x | 6 93 0.999x | zlib 2 165 1.431x | 6 64
# No ISA-L level comes within 1.05x of gzip -6 on these sets; levels 4-9 (zlib-ng) do, at
# a fifth to a third of level 3's speed: BACKUP_COMPRESSION_LEVEL=6 is the choice where
# space is dearer than time (db-backup 1 GB: 0.33 / 0.58 of `pg_dump | gzip -6`'s time at
# 1.005x its size; the default: 0.16 / 0.37 at 1.11x / 1.46x; bench/README.md).
# Without the isal wheel the default stays zlib level 2 (issue 8's choice: 3.5x the speed
# of level 6, 1.13x its size).
# zstd level 1: the level that keeps up with pg_dump on 2 cores. The 964 MB bench dump
# (2026-11-27): `pg_dump > /dev/null` 3.9 s; `pg_dump | zstd -1 -T2` 4.4 s, 367 MB;
# `| zstd -3 -T2` 5.7 s, 312 MB (gzip -6: 334 MB). Level 3 would cost 1.8 s for 15 %
# less space; BACKUP_COMPRESSION_LEVEL=3 (or higher) buys that where space is dearer.
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

DEFAULT_LEVEL = {"gzip": 3 if gzip_codec.have_isal() else 2, "zstd": 1}
ZSTD_JOB_SIZE = 2 << 20


def cpu_threads() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


class HashingWriter(io.RawIOBase):
    """Pass bytes through to `target`, counting them and computing their sha256."""

    def __init__(self, target: BinaryIO) -> None:
        self._target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._target.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)


class HashingReader(io.RawIOBase):
    """Read from `source`, computing the sha256 and size of every byte read."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._source.read(len(buffer))
        self.sha256.update(data)
        self.size += len(data)
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read to the end, so that the digest covers the whole source."""
        while self.read(BLOCK_SIZE):
            pass


def _gzip_member(block: bytes, level: int, check: bool = True) -> bytes:
    compressor = gzip_codec.deflater(level)  # ISA-L at levels 0-3, zlib-ng above
    member = compressor.compress(block) + compressor.flush()
    if check:
        _check_member(member, block)
    return member


def _check_member(member: bytes, block: bytes) -> None:
    """Inflate a fresh member and compare it with its input (crc32 and length).

    This is what lets a backup skip a second full decompress pass: every member is
    proved to inflate to exactly its input while it is still in memory (inflate costs
    a fraction of deflate), and the file on disk is then proved to be these bytes by
    re-hashing it against the sha256 recorded while writing (tasks.verify.backup_file).
    A file that is read back whole instead (backup-all's archive) skips it.
    """
    inflater = gzip_codec.inflater()
    try:
        restored = inflater.decompress(member)
    except gzip_codec.ERRORS:  # the member's own crc32/length trailer is checked too
        restored = b""
    if (
        not inflater.eof
        or inflater.unused_data
        or len(restored) != len(block)
        or gzip_codec.crc32(restored) != gzip_codec.crc32(block)
    ):
        raise VerifyError(
            "gzip self-check failed: a compressed block does not inflate to its input"
        )


class ParallelGzipWriter(io.RawIOBase):
    """Compress to gzip members in a thread pool; write them to `target` in order."""

    def __init__(
        self,
        target: BinaryIO,
        level: int = 6,
        threads: int | None = None,
        member_check: bool = True,
    ) -> None:
        self._target = target
        self._level = level
        # False only for a file read back whole from the disk afterwards (backup-all's
        # archive): that read inflates every member and checks its crc32 and length again.
        self._check = member_check
        self._threads = threads or cpu_threads()
        # One thread: the same members, compressed inline (no pool to start and join).
        self._pool: ThreadPoolExecutor | None = None
        if self._threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            from tasks.stream.allocator import keep_block_memory

            keep_block_memory()  # members made on the pool's threads, freed on this one

            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="gzip")
        self._pending: deque[Future[bytes]] = deque()
        self._buffer = bytearray()
        self._wrote_any = False

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._buffer += data
        while len(self._buffer) >= BLOCK_SIZE:
            self._submit(bytes(self._buffer[:BLOCK_SIZE]))
            del self._buffer[:BLOCK_SIZE]
        return len(data)

    def _submit(self, block: bytes) -> None:
        self._wrote_any = True
        if self._pool is None:
            self._target.write(_gzip_member(block, self._level, self._check))
            return
        self._pending.append(self._pool.submit(_gzip_member, block, self._level, self._check))
        while len(self._pending) > 2 * self._threads:
            self._target.write(self._pending.popleft().result())

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._buffer or not self._wrote_any:
                self._submit(bytes(self._buffer))  # an empty input still yields a valid gzip
                self._buffer.clear()
            while self._pending:
                self._target.write(self._pending.popleft().result())
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
            super().close()


class _ZstdWriter(io.RawIOBase):
    def __init__(self, target: BinaryIO, level: int, threads: int) -> None:
        # The frame checksum lets every full verify and restore detect a damaged frame.
        # 2 MB jobs instead of the level's default: measured on a 150 MB bench dump at
        # level 3, 2 threads, this keeps ~16 MB in flight instead of ~52 MB (issue 8's
        # 150 MB peak) for output 2 % larger and the same speed.
        import zstandard

        params = zstandard.ZstdCompressionParameters.from_level(
            level, threads=threads, job_size=ZSTD_JOB_SIZE, write_checksum=True
        )
        compressor = zstandard.ZstdCompressor(compression_params=params)
        self._writer = compressor.stream_writer(target, closefd=False)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._writer.write(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            import zstandard

            self._writer.flush(zstandard.FLUSH_FRAME)
            self._writer.close()
            super().close()


def compressing_writer(
    target: BinaryIO,
    compression: str,
    level: int | None = None,
    threads: int | None = None,
    member_check: bool = True,
) -> io.RawIOBase:
    """A writer that compresses into `target`; closing it finishes the stream.
    `member_check` False: gzip members are not inflated back in memory (see
    ParallelGzipWriter) — only for a file that is read back whole afterwards."""
    level = DEFAULT_LEVEL[compression] if level is None else level
    if compression == "zstd":
        return _ZstdWriter(target, level, threads if threads is not None else cpu_threads())
    return ParallelGzipWriter(target, level, threads, member_check)


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
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    if head == ZSTD_MAGIC:
        return "zstd"
    if not head:
        raise VerifyError(f"{path.name}: empty file, not a backup")
    raise VerifyError(f"{path.name}: not a gzip or zstd file")


def open_decompressed(source: BinaryIO, compression: str) -> BinaryIO:
    """Read the uncompressed stream of a gzip or zstd file object."""
    if compression == "zstd":
        return io.BufferedReader(_ZstdFramesReader(source), BLOCK_SIZE)
    return gzip_codec.gzip_reader(source)


class _ZstdFramesReader(io.RawIOBase):
    """Concatenated zstd frames that raise EOFError when the input ends inside a frame.

    zstandard's `stream_reader` ends quietly on a truncated frame, so a cut-off backup
    would read as a shorter valid one; a decompression object tells by its `eof`. Input is
    fed in small pieces because the object returns everything it can make of its input
    at once, and memory must stay bounded.
    """

    _PIECE = 16 * 1024

    def __init__(self, source: BinaryIO) -> None:
        import zstandard

        self._source = source
        self._inflater = zstandard.ZstdDecompressor().decompressobj()
        self._pending = b""  # compressed bytes read but not yet fed
        self._out = bytearray()
        self._frames = 0
        self._in_frame = False
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._out and not self._ended:
            self._feed()
        size = min(len(buffer), len(self._out))
        buffer[:size] = self._out[:size]
        del self._out[:size]
        return size

    def _feed(self) -> None:
        if not self._pending:
            self._pending = self._source.read(BLOCK_SIZE)
            if not self._pending:
                self._ended = True
                if self._in_frame or self._frames == 0:
                    raise EOFError("the stream ends inside a zstd frame")
                return
        piece, self._pending = self._pending[: self._PIECE], self._pending[self._PIECE :]
        while piece:
            self._in_frame = True
            self._out += self._inflater.decompress(piece)
            piece = b""
            if self._inflater.eof:
                self._frames += 1
                self._in_frame = False
                piece = self._inflater.unused_data
                import zstandard

                self._inflater = zstandard.ZstdDecompressor().decompressobj()


def copy_stream(
    src: BinaryIO, dst: BinaryIO | io.RawIOBase, on_chunk: Callable[[int], None] | None = None
) -> int:
    total = 0
    while True:
        chunk = src.read(BLOCK_SIZE)
        if not chunk:
            return total
        dst.write(chunk)
        total += len(chunk)
        if on_chunk is not None:
            on_chunk(len(chunk))


def with_zstd_errors(*errors: type[BaseException]) -> tuple[type[BaseException], ...]:
    """`errors` plus zstandard's error type when zstandard is loaded (it is whenever a
    zstd stream was opened): for `except` clauses that must not import it."""
    module = sys.modules.get("zstandard")
    return (*errors, module.ZstdError) if module is not None else errors
