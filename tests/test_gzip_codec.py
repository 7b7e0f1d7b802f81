"""gzip through ISA-L and zlib-ng (issue 18): standard members, zlib's errors, the logged zlib
fallback."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tasks.stream import gzip_codec
from tasks.stream.compress import DEFAULT_LEVEL, compressing_writer, open_decompressed
from tasks.stream.inflate import InflatingReader

ROOT = Path(__file__).resolve().parent.parent


def _payload() -> bytes:
    rows = [f'{i}\tuser\tHow do I reset {i % 17}?\t{{"k": {i}}}\n'.encode() for i in range(60000)]
    return b"".join(rows) + os.urandom(300_000)


def _write(path: Path, data: bytes, level: int | None = None) -> None:
    with open(path, "wb") as raw:
        writer = compressing_writer(raw, "gzip", level)  # type: ignore[arg-type]
        writer.write(data)
        writer.close()


def test_isal_is_used_and_the_default_is_its_level_3() -> None:
    assert gzip_codec.have_isal()
    assert DEFAULT_LEVEL["gzip"] == 3
    assert gzip_codec.library_for(3) == "isal"
    assert gzip_codec.library_for(6) == "zlib-ng"  # ISA-L has no level above 3


def test_zlib_ng_at_level_6_packs_like_gzip_6() -> None:
    """Levels 4-9 are zlib's algorithm done by zlib-ng: `gzip -6`'s size, not ISA-L's."""
    data = _payload()[:-300_000] * 3
    out = io.BytesIO()
    writer = compressing_writer(out, "gzip", 6)
    writer.write(data)
    writer.close()
    gzip6 = subprocess.run(["gzip", "-6", "-c"], input=data, capture_output=True, check=True)
    assert len(out.getvalue()) <= 1.05 * len(gzip6.stdout)
    assert gzip.decompress(out.getvalue()) == data


@pytest.mark.parametrize("level", [None, 1, 6])
def test_members_read_by_gunzip_and_python(tmp_path: Path, level: int | None) -> None:
    data = _payload()
    target = tmp_path / "dump.sql.gz"
    _write(target, data, level)
    gunzip = subprocess.run(["gunzip", "-c", str(target)], capture_output=True, check=True)
    assert gunzip.stdout == data
    assert gzip.decompress(target.read_bytes()) == data
    with open(target, "rb") as raw:
        assert open_decompressed(raw, "gzip").read() == data
    reader = InflatingReader(target, "gzip")
    try:
        got = bytearray()
        while block := reader.next_block():
            got += block
        reader.finish(None)
    finally:
        reader.close()
    assert bytes(got) == data


def test_tar_z_reads_an_isal_archive(tmp_path: Path) -> None:
    source = tmp_path / "tree"
    source.mkdir()
    (source / "a.txt").write_bytes(_payload())
    plain = tmp_path / "t.tar"
    subprocess.run(["tar", "cf", str(plain), "-C", str(tmp_path), "tree"], check=True)
    archive = tmp_path / "t.tar.gz"
    _write(archive, plain.read_bytes())
    listing = subprocess.run(
        ["tar", "tzf", str(archive)], capture_output=True, check=True, text=True
    )
    assert "tree/a.txt" in listing.stdout


def test_damage_raises_zlibs_error(tmp_path: Path) -> None:
    target = tmp_path / "d.gz"
    _write(target, _payload())
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = b"\xff" * 64
    with pytest.raises((zlib.error, EOFError, gzip.BadGzipFile)):
        open_decompressed(io.BytesIO(bytes(raw)), "gzip").read()


def test_without_the_wheel_zlib_is_used_and_said_once() -> None:
    script = f"""
import logging, sys
sys.modules['isal'] = None  # as if the wheel were not installed
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
sys.path.insert(0, {str(ROOT)!r})
import gzip, io
from tasks.stream.compress import DEFAULT_LEVEL, compressing_writer, open_decompressed
for _ in range(2):
    out = io.BytesIO()
    w = compressing_writer(out, 'gzip')
    w.write(b'hello ' * 100000)
    w.close()
    assert gzip.decompress(out.getvalue()) == b'hello ' * 100000
    assert open_decompressed(io.BytesIO(out.getvalue()), 'gzip').read() == b'hello ' * 100000
print(DEFAULT_LEVEL['gzip'])
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "2"  # zlib's default of before
    assert run.stderr.count("'isal' package is not installed") == 1, run.stderr


def test_without_zlib_ng_levels_above_3_are_zlibs_and_said_once() -> None:
    script = f"""
import logging, sys
sys.modules['zlib_ng'] = None  # as if the wheel were not installed
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
sys.path.insert(0, {str(ROOT)!r})
import gzip, io
from tasks.stream import gzip_codec
from tasks.stream.compress import compressing_writer
for _ in range(2):
    out = io.BytesIO()
    w = compressing_writer(out, 'gzip', 6)
    w.write(b'hello ' * 100000)
    w.close()
    assert gzip.decompress(out.getvalue()) == b'hello ' * 100000
print(gzip_codec.library_for(6), gzip_codec.library_for(3))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["zlib", "isal"]
    assert run.stderr.count("'zlib-ng' package is not installed") == 1, run.stderr
