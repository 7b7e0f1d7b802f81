"""Reading a compressed backup once for a restore: hash, check and inflate in one pass.

A restore used to read the file twice — a whole verification pass (inflate + sha256),
then the load. Here one background thread reads the compressed bytes, hashes them as
read and inflates them (ISA-L, zlib and zstd release the GIL, so this runs beside the feeding of
`psql` on another core), handing decompressed blocks over through a small bounded queue:
memory stays at a few blocks whatever the size of the dump. Damage shows as the stream
ends; the caller decides then, from `finish()`, whether the bytes were whole and matched
the expected sha256 — nothing read before that point may be made permanent.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import zstandard

from tasks.core.errors import VerifyError
from tasks.stream import gzip_codec
from tasks.stream.allocator import keep_block_memory
from tasks.stream.handoff import Handoff

READ_SIZE = 1 << 20  # compressed bytes per read
OUT_SIZE = 1 << 20  # most decompressed bytes per block handed over
QUEUE_BLOCKS = 8  # blocks in flight: bounds memory at ~8 MiB of SQL
ZSTD_PIECE = 16 * 1024  # compressed bytes per zstd call (its output is not capped)


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()
_STREAM_ERRORS: tuple[type[BaseException], ...] = (
    EOFError,
    zstandard.ZstdError,
    OSError,
    ValueError,
    *gzip_codec.ERRORS,
)


class InflatingReader:
    """Decompressed blocks of `path` from a background thread; sha256 of the file bytes.

    `next_block()` returns b"" at the end of the stream and raises VerifyError when the
    stream is damaged or truncated; `finish()` then checks the digest. `close()` stops the
    thread whatever state it is in.
    """

    def __init__(self, path: Path, compression: str) -> None:
        keep_block_memory()  # a block per read, on another thread: no page faults for each
        self._path = path
        self._compression = compression
        self._raw = open(path, "rb")
        self._handoff = Handoff(QUEUE_BLOCKS)
        self._sha256 = hashlib.sha256()
        self.compressed_size = 0
        self.content_size = 0
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="inflate", daemon=True)
        self._thread.start()

    # ---- producer (background thread) ----
    def _read_raw(self) -> bytes:
        data = self._raw.read(READ_SIZE)
        self._sha256.update(data)
        self.compressed_size += len(data)
        return data

    def _run(self) -> None:
        try:
            if self._compression == "zstd":
                self._inflate_zstd()
            else:
                self._inflate_gzip()
            self._handoff.put(_END)
        except _STREAM_ERRORS as exc:
            self._handoff.put(
                _Failed(
                    VerifyError(
                        f"{self._path.name}: damaged or truncated {self._compression} stream ({exc})"
                    )
                )
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            self._handoff.put(_Failed(exc))

    def _inflate_gzip(self) -> None:
        """Concatenated gzip members (ours are 1 MiB each), zero padding allowed between
        them as `gunzip` does; each member's CRC-32 and length are checked by zlib."""
        inflater = gzip_codec.inflater()
        pending = b""
        started = False
        members = 0
        while not self._handoff.stopped:
            if not pending:
                pending = self._read_raw()
                if not pending:
                    break
            if not started:
                pending = pending.lstrip(b"\x00") if members else pending
                if not pending:
                    continue
                if pending[:1] != b"\x1f":
                    raise EOFError("garbage after the last gzip member")
                started = True
            out = inflater.decompress(pending, OUT_SIZE)
            pending = inflater.unconsumed_tail
            if inflater.eof:
                pending = inflater.unused_data + pending
                inflater = gzip_codec.inflater()
                started = False
                members += 1
            if out:
                self.content_size += len(out)
                if not self._handoff.put(out):
                    return
        if self._handoff.stopped:
            return
        if started:
            raise EOFError("the stream ends inside a gzip member")
        if members == 0:
            raise EOFError("no gzip member in the file")

    def _inflate_zstd(self) -> None:
        """Concatenated zstd frames. A decompression object, not `stream_reader`: the
        reader ends quietly on a truncated frame, the object tells by its `eof`. It is fed
        in small pieces, because it returns all it can make of its input at once."""
        inflater = zstandard.ZstdDecompressor().decompressobj()
        frames = 0
        in_frame = False
        while not self._handoff.stopped:
            data = self._read_raw()
            if not data:
                break
            view = memoryview(data)
            for start in range(0, len(view), ZSTD_PIECE):
                piece = bytes(view[start : start + ZSTD_PIECE])
                while piece:
                    in_frame = True
                    out = inflater.decompress(piece)
                    piece = b""
                    if inflater.eof:
                        frames += 1
                        in_frame = False
                        piece = inflater.unused_data
                        inflater = zstandard.ZstdDecompressor().decompressobj()
                    if out:
                        self.content_size += len(out)
                        if not self._handoff.put(out):
                            return
        if self._handoff.stopped:
            return
        if in_frame or frames == 0:
            raise EOFError("the stream ends inside a zstd frame")

    # ---- consumer ----
    def next_block(self) -> bytes:
        if self._ended:
            return b""
        item = self._handoff.get()
        if isinstance(item, _Failed):
            self._ended = True
            raise item.error
        if item is _END:
            self._ended = True
            return b""
        return item  # type: ignore[return-value]

    def finish(self, expected_sha256: str | None) -> str:
        """The file's sha256 once the stream ended; VerifyError unless it is `expected`."""
        if not self._ended:
            raise RuntimeError("finish() before the end of the stream")
        self._thread.join()
        actual = self._sha256.hexdigest()
        if expected_sha256 is not None and actual != expected_sha256:
            raise VerifyError(
                f"{self._path.name}: sha256 does not match (expected {expected_sha256[:12]}…, "
                f"found {actual[:12]}…); nothing was applied"
            )
        return actual

    def close(self) -> None:
        self._handoff.stop(self._thread)
        self._raw.close()
