"""The cheap post-backup check: gzip members self-check, the file is re-hashed on disk."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import pytest

from tasks.core.errors import VerifyError
from tasks.stream import gzip_codec
from tasks.stream.checksum import write_sidecar
from tasks.stream.compress import ParallelGzipWriter
from tasks.stream.pipeline import write_artifact
from tasks.verify.backup_file import verify_fresh_backup
from tests.support.codec_faults import crc_breaking

NAME = "admin_postgres_20261126_120000.sql.gz"


def _backup(folder: Path, payload: bytes) -> tuple[Path, str]:
    artifact = write_artifact(folder / NAME, lambda out: out.write(payload))
    return artifact.path, artifact.sha256


def test_fresh_backup_passes_and_gunzips_to_its_input(tmp_path: Path) -> None:
    payload = b"INSERT INTO t VALUES (1);\n" * 200_000 + os.urandom(3 << 20)
    path, sha = _backup(tmp_path, payload)
    checked = verify_fresh_backup(path, sha)
    assert checked.sha256 == sha and checked.sidecar_checked
    assert gzip.decompress(path.read_bytes()) == payload


@pytest.mark.parametrize("offset", [10, -100, "middle"])
def test_a_byte_changed_on_disk_after_writing_is_caught(tmp_path: Path, offset: object) -> None:
    path, sha = _backup(tmp_path, b"SELECT 1;\n" * 300_000)
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset == "middle" else int(offset)  # type: ignore[call-overload]
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    # Caught by the re-hash, or earlier by the inflate of the first block (the content
    # check) when the changed byte is in it and the inflater (ISA-L) rejects it there.
    with pytest.raises(VerifyError, match="sha256 does not match|damaged or truncated gzip"):
        verify_fresh_backup(path, sha)


def test_zstd_fresh_backup_passes_and_a_changed_byte_is_caught(tmp_path: Path) -> None:
    import zstandard

    payload = b"INSERT INTO t VALUES (2);\n" * 100_000
    final = tmp_path / "admin_postgres_20261126_120000.sql.zst"
    artifact = write_artifact(final, lambda out: out.write(payload), "zstd")
    assert verify_fresh_backup(artifact.path, artifact.sha256).compression == "zstd"
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(final.read_bytes()))
    assert reader.read() == payload
    data = bytearray(final.read_bytes())
    data[len(data) // 2] ^= 0x01
    final.write_bytes(bytes(data))
    # Caught by the re-hash, or earlier by the frame's own checksum when the first block
    # read for the content check already spans the changed byte.
    with pytest.raises(VerifyError, match="sha256 does not match|damaged or truncated zstd"):
        verify_fresh_backup(artifact.path, artifact.sha256)


def test_a_sidecar_that_disagrees_is_caught(tmp_path: Path) -> None:
    path, sha = _backup(tmp_path, b"SELECT 1;\n" * 1000)
    write_sidecar(path, "0" * 64)
    with pytest.raises(VerifyError, match="sidecar"):
        verify_fresh_backup(path, sha)


def test_an_empty_dump_is_refused(tmp_path: Path) -> None:
    path, sha = _backup(tmp_path, b"")
    with pytest.raises(VerifyError, match="empty"):
        verify_fresh_backup(path, sha)


def test_a_member_that_does_not_inflate_to_its_input_stops_the_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Simulates a deflate fault: the member handed to the self-check is damaged."""
    monkeypatch.setattr(gzip_codec, "deflater", crc_breaking(gzip_codec.deflater))
    writer = ParallelGzipWriter(io.BytesIO(), level=2, threads=2)
    writer.write(b"x" * (3 << 20))
    with pytest.raises(VerifyError, match="self-check"):
        writer.close()


@pytest.mark.parametrize("threads", [0, 2])
def test_a_truncated_zstd_backup_fails_the_full_verify(tmp_path: Path, threads: int) -> None:
    """zstandard's stream reader ends quietly inside a cut frame; our reader must not."""
    import zstandard

    from tasks.verify.backup_file import verify_compressed_file

    content = b"-- PostgreSQL database dump\n" + os.urandom(1 << 16) * 40
    whole = zstandard.ZstdCompressor(level=3, threads=threads, write_checksum=True).compress(
        content
    )
    path = tmp_path / "admin_postgres_20260101_000000.sql.zst"
    path.write_bytes(whole)
    assert verify_compressed_file(path).content_size == len(content)
    for cut in (len(whole) // 2, len(whole) - 1):
        path.write_bytes(whole[:cut])
        with pytest.raises(VerifyError, match="truncated zstd"):
            verify_compressed_file(path)
