"""ReadAhead (issue 18): the same bytes, the same errors at the same point, no thread left."""

from __future__ import annotations

import io
import os
import threading
import zlib
from pathlib import Path

import pytest

from tasks.archive.safe_extract import open_archive
from tasks.stream.compress import BLOCK_SIZE, compressing_writer
from tasks.stream.read_ahead import ReadAhead, read_ahead


class _Failing(io.RawIOBase):
    """`good` bytes, then the error a damaged stream raises."""

    def __init__(self, good: bytes, error: BaseException) -> None:
        self._good = io.BytesIO(good)
        self.error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._good.read(len(buffer))
        if not data:
            raise self.error
        buffer[: len(data)] = data
        return len(data)


def _read_ahead_threads() -> int:
    return sum(t.name == "read-ahead" and t.is_alive() for t in threading.enumerate())


def test_same_bytes_in_any_read_size() -> None:
    data = os.urandom(3 * BLOCK_SIZE + 12345)
    stream = read_ahead(io.BytesIO(data))  # type: ignore[arg-type]
    got = bytearray()
    for size in (1, 511, BLOCK_SIZE, 7, 3 * BLOCK_SIZE):
        got += stream.read(size)
    got += stream.read()
    stream.close()
    assert bytes(got) == data


def test_an_error_is_raised_after_the_good_bytes_as_the_same_object() -> None:
    good = os.urandom(BLOCK_SIZE + 10)
    error = zlib.error("invalid distance too far back")
    stream = read_ahead(_Failing(good, error))  # type: ignore[arg-type]
    assert stream.read(len(good)) == good  # everything before the damage arrives first
    with pytest.raises(zlib.error) as raised:
        stream.read(1)
    assert raised.value is error
    stream.close()
    assert _read_ahead_threads() == 0


def test_closing_early_stops_the_thread() -> None:
    endless = io.BytesIO(os.urandom(64 * BLOCK_SIZE))
    ahead = ReadAhead(endless, BLOCK_SIZE, depth=2)  # type: ignore[arg-type]
    assert ahead.read(10)
    ahead.close()
    assert _read_ahead_threads() == 0
    assert endless.tell() <= 5 * BLOCK_SIZE  # it read ahead a few blocks, not the whole source


def test_a_truncated_archive_is_still_zlibs_error(tmp_path: Path) -> None:
    data = os.urandom(2 * BLOCK_SIZE) + b"x" * BLOCK_SIZE
    target = tmp_path / "a.gz"
    with open(target, "wb") as raw:
        writer = compressing_writer(raw, "gzip")
        writer.write(data)
        writer.close()
    target.write_bytes(target.read_bytes()[:-5000])
    with open_archive(target) as stream, pytest.raises((EOFError, zlib.error)):
        while stream.read(BLOCK_SIZE):
            pass
    assert _read_ahead_threads() == 0


def test_a_producer_blocked_on_a_full_handoff_ends_when_the_reader_stops() -> None:
    """The bounded hand-off both background readers (read-ahead, restore's inflate)
    use: a producer waiting on a full queue gives up once the reader stops, and `stop`
    returns only after it has."""
    from tasks.stream.handoff import Handoff

    handoff = Handoff(depth=1)
    results: list[bool] = []

    def produce() -> None:
        for block in range(100):  # far more than the queue holds
            if not handoff.put(block):
                results.append(False)
                return
        results.append(True)

    producer = threading.Thread(target=produce)
    producer.start()
    assert handoff.get() == 0  # it ran, and is now blocked on the full queue
    handoff.stop(producer)
    assert not producer.is_alive() and results == [False] and handoff.stopped
