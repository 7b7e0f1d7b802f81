"""gzip in and out through ISA-L (the `isal` wheel) and zlib-ng (`zlib-ng`), zlib without them.

Both write and read standard gzip members (RFC 1952: `gunzip`, `tar -z` and Python's
`gzip` read their output). ISA-L is several times faster than zlib and its levels 1-3
pack better than zlib's 1-2, but it has levels 0-3 only, and its best comes within 1.10x
of `gzip -6`'s size at most (bench/README.md, issue 18). A level of 4-9
(BACKUP_COMPRESSION_LEVEL) is therefore zlib's algorithm at that level, done by zlib-ng:
the same sizes as zlib's (level 6 within 0.3 % of `gzip -6`) at 1.5-2.2x zlib's speed.
Inflating is ISA-L's at every level (the fastest of the three). Without a wheel its
part falls back to zlib, and the first use says so once in the log.

Errors look like zlib's whichever library did the work: ISA-L's `IsalError` and
zlib-ng's `error` are re-raised as `zlib.error`, so every caller's `except zlib.error`
keeps meaning "damaged stream".
"""

from __future__ import annotations

import gzip
import io
import zlib
from typing import Any, BinaryIO, cast

_igzip: Any = None
_isal_zlib: Any = None
try:
    from isal import igzip, isal_zlib

    _igzip, _isal_zlib = igzip, isal_zlib
except ImportError:  # pragma: no cover - the wheel is a dependency; this is the fallback
    pass
_zlib_ng: Any = None
try:
    from zlib_ng import zlib_ng

    _zlib_ng = zlib_ng
except ImportError:  # pragma: no cover - the wheel is a dependency; this is the fallback
    pass


ISAL_MAX_LEVEL = 3
GZIP_WBITS = 31  # gzip framing
_READ_BLOCK = 1 << 20
_said_fallback = False

ERRORS: tuple[type[BaseException], ...] = (zlib.error,)
if _isal_zlib is not None:
    ERRORS = (*ERRORS, cast("type[BaseException]", _isal_zlib.error))
if _zlib_ng is not None:
    ERRORS = (*ERRORS, cast("type[BaseException]", _zlib_ng.error))


def have_isal() -> bool:
    return _isal_zlib is not None


def _say_fallback(package: str) -> None:
    global _said_fallback
    if not _said_fallback:
        _said_fallback = True
        # logging is imported here only: wal-push (once per WAL segment) never pays for it.
        import logging

        logging.getLogger("chatbot_backup").warning(
            f"the {package!r} package is not installed: gzip falls back to zlib, "
            f"which is several times slower; pip install {package}"
        )


def library_for(level: int) -> str:
    """'isal', 'zlib-ng' or 'zlib': which library deflates at `level`."""
    if 0 <= level <= ISAL_MAX_LEVEL:
        if _isal_zlib is not None:
            return "isal"
        _say_fallback("isal")
        return "zlib"
    if _zlib_ng is not None:
        return "zlib-ng"
    _say_fallback("zlib-ng")
    return "zlib"


def deflater(level: int) -> Any:
    """A compression object writing one gzip member at `level`."""
    library = library_for(level)
    if library == "isal":
        return _isal_zlib.compressobj(level, _isal_zlib.DEFLATED, GZIP_WBITS)
    if library == "zlib-ng":
        return _zlib_ng.compressobj(level, _zlib_ng.DEFLATED, GZIP_WBITS)
    return zlib.compressobj(level, zlib.DEFLATED, GZIP_WBITS)


def inflater() -> Any:
    """A decompression object for one gzip member (`decompress(data, max_length)`,
    `unconsumed_tail`, `unused_data`, `eof` as zlib's)."""
    if _isal_zlib is None:
        _say_fallback("isal")
        return zlib.decompressobj(GZIP_WBITS)
    return _isal_zlib.decompressobj(GZIP_WBITS)


def crc32(data: bytes | bytearray | memoryview) -> int:
    return _isal_zlib.crc32(data) if _isal_zlib is not None else zlib.crc32(data)


class _IsalGzipReader(io.RawIOBase):
    """ISA-L's GzipFile (concatenated members, like `gzip.GzipFile`) with its errors
    re-raised as zlib's."""

    def __init__(self, source: BinaryIO) -> None:
        assert _igzip is not None
        self._file = _igzip.GzipFile(fileobj=source, mode="rb")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            return self._file.readinto(buffer)
        except ERRORS as exc:
            raise zlib.error(str(exc)) from None

    def close(self) -> None:
        if not self.closed:
            self._file.close()
            super().close()


def gzip_reader(source: BinaryIO) -> BinaryIO:
    """The uncompressed stream of a gzip file object (one or more members)."""
    if _igzip is None:
        _say_fallback("isal")
        return cast(BinaryIO, gzip.GzipFile(fileobj=source, mode="rb"))
    return cast(BinaryIO, io.BufferedReader(_IsalGzipReader(source), _READ_BLOCK))
