"""The one-pass reader of a restore: inflates, hashes, and tells damage at the end."""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from pathlib import Path

import pytest

from tasks.core.errors import VerifyError
from tasks.stream.compress import compressing_writer
from tasks.stream.inflate import InflatingReader

DATA = os.urandom(200_000).hex().encode() * 6  # 2.4 MB: several 1 MiB gzip members


def compressed(path: Path, compression: str, data: bytes = DATA) -> Path:
    with open(path, "wb") as out:
        writer = compressing_writer(out, compression)
        writer.write(data)
        writer.close()
    return path


def read_all(path: Path, compression: str, expected: str | None = None) -> tuple[bytes, str]:
    reader = InflatingReader(path, compression)
    try:
        blocks = []
        while block := reader.next_block():
            blocks.append(block)
        return b"".join(blocks), reader.finish(expected)
    finally:
        reader.close()


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_round_trip_and_sha256_of_the_file_bytes(tmp_path: Path, compression: str) -> None:
    path = compressed(tmp_path / "f", compression)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    data, found = read_all(path, compression, digest)
    assert data == DATA and found == digest


def test_gzip_made_by_gzip_tool_and_zero_padding(tmp_path: Path) -> None:
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(b"one\n") + gzip.compress(b"two\n") + b"\x00" * 10)
    assert read_all(path, "gzip")[0] == b"one\ntwo\n"


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_concatenated_streams_are_one(tmp_path: Path, compression: str) -> None:
    one = compressed(tmp_path / "a", compression).read_bytes()
    path = tmp_path / "b"
    path.write_bytes(one + one)
    assert read_all(path, compression)[0] == DATA + DATA


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_truncated_stream_fails_at_its_end(tmp_path: Path, compression: str) -> None:
    path = compressed(tmp_path / "f", compression)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(VerifyError, match="damaged or truncated"):
        read_all(path, compression)


def test_flipped_byte_and_trailing_garbage_fail(tmp_path: Path) -> None:
    path = compressed(tmp_path / "f", "gzip")
    raw = bytearray(path.read_bytes())
    path.write_bytes(bytes(raw) + b"garbage")
    with pytest.raises(VerifyError, match="garbage after the last gzip member"):
        read_all(path, "gzip")
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(VerifyError, match="damaged or truncated"):
        read_all(path, "gzip")


def test_sha256_mismatch_is_told_by_finish(tmp_path: Path) -> None:
    path = compressed(tmp_path / "f", "gzip")
    with pytest.raises(VerifyError, match="sha256 does not match"):
        read_all(path, "gzip", "0" * 64)


def test_close_midway_stops_the_thread(tmp_path: Path) -> None:
    path = compressed(tmp_path / "f", "gzip", b"sql\n" * 5_000_000)  # more than the queue holds
    before = threading.active_count()
    reader = InflatingReader(path, "gzip")
    assert reader.next_block()
    reader.close()
    assert threading.active_count() == before
