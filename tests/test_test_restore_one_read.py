"""test-restore reads a full archive once (issue 18): integrity and extraction together.

`check_archive_read` hashes the file against its sidecar, inflates it, walks every
header and extracts each member on the way. What must not change from the two reads it
replaces: the archive's own verdict comes first (a damaged archive fails
archive-integrity and the extraction is "not run"), an unsafe member fails the
extraction by name while the integrity check still passes, nothing lands outside the
scratch folder, and a scratch folder too small says so instead of failing with ENOSPC.
The generated cases (tests/test_fuzz_readers.py, tests/test_property_trees.py) compare
its verdicts with the two reads' on mutated and generated archives.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import tasks.archive.safe_extract as safe_extract
from tasks.stream.checksum import sha256_file, write_sidecar
from tasks.verify.restore_test import check_archive_read
from tests.support.disks import small_tmpfs
from tests.support.trees import tree_facts

TOP = "full_backup_20260101_000000"


def _archive(path: Path, members: list[tuple[str, bytes]], sidecar: bool = True) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    if sidecar:
        write_sidecar(path, sha256_file(path))
    return path


def _flip_last_quarter(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 3 // 4] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_clean_archive_is_extracted_exactly_in_one_read(tmp_path: Path) -> None:
    files = [(f"{TOP}/uploads/f{i:03d}.bin", os.urandom(40_000 + i)) for i in range(50)]
    archive = _archive(tmp_path / f"{TOP}.tar.gz", files)
    read_before = _bytes_read()
    read = check_archive_read(archive, tmp_path / "work")
    read_during = _bytes_read() - read_before
    assert read.integrity.passed, read.integrity.reason
    assert "sha256 matches its sidecar" in read.integrity.reason
    assert read.extracted is not None and read.extracted.passed, read.extracted
    assert read.extraction is not None and len(read.extraction.files) == 50
    for name, data in files:
        assert (tmp_path / "work" / name).read_bytes() == data
    # One read of the archive (incompressible: ~2 MB), not two: the scan extracted.
    size = archive.stat().st_size
    assert size <= read_during < size * 3 // 2, (size, read_during)


def _bytes_read() -> int:
    """Bytes this process read through read(2) so far (Linux /proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_an_unsafe_member_fails_the_extraction_by_name_not_the_integrity(tmp_path: Path) -> None:
    outside = tmp_path / "escaped"
    archive = _archive(
        tmp_path / f"{TOP}.tar.gz",
        [
            (f"{TOP}/uploads/a.txt", b"a" * 1000),
            (f"{TOP}/../../escaped", b"evil"),
            (f"{TOP}/uploads/b.txt", b"b" * 1000),
        ],
    )
    read = check_archive_read(archive, tmp_path / "work" / "archive")
    assert read.integrity.passed, read.integrity.reason  # the whole archive was still read
    assert read.scan is not None and read.scan.members == 3
    assert read.extracted is not None and not read.extracted.passed
    assert "escaped" in read.extracted.reason and read.extraction is None
    assert not outside.exists() and not (tmp_path / "work" / "escaped").exists()


def test_damage_after_an_unsafe_member_is_the_archives_verdict(tmp_path: Path) -> None:
    """The unsafe member comes first, the flipped byte later: integrity fails (it is
    reported first), and the extraction is not run, as with two reads."""
    archive = _archive(
        tmp_path / f"{TOP}.tar.gz",
        [(f"{TOP}/../evil", b"x"), *((f"{TOP}/f{i}", os.urandom(20_000)) for i in range(20))],
    )
    _flip_last_quarter(archive)
    read = check_archive_read(archive, tmp_path / "work")
    assert not read.integrity.passed and read.scan is None and read.extracted is None
    assert "sha256 does not match its sidecar" in read.integrity.reason


def test_damage_without_a_sidecar_is_named_as_the_streams(tmp_path: Path) -> None:
    files = [(f"{TOP}/f{i}", os.urandom(20_000)) for i in range(20)]
    archive = _archive(tmp_path / f"{TOP}.tar.gz", files, sidecar=False)
    _flip_last_quarter(archive)
    read = check_archive_read(archive, tmp_path / "work")
    assert not read.integrity.passed and read.extracted is None
    assert "damaged or truncated gzip stream" in read.integrity.reason, read.integrity.reason


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "small", 4) as mount:
        yield mount


def test_a_scratch_folder_too_small_says_so_and_stops_before_it_is_full(
    tmp_path: Path, small_disk: Path
) -> None:
    files = [(f"{TOP}/uploads/f{i}", os.urandom(1 << 20)) for i in range(8)]  # 8 MB > 4 MB
    archive = _archive(tmp_path / f"{TOP}.tar.gz", files)
    read = check_archive_read(archive, small_disk / "work")
    assert read.integrity.passed, read.integrity.reason
    assert read.extracted is not None and not read.extracted.passed
    reason = read.extracted.reason
    assert "set TMPDIR to a larger folder" in reason and f"needs {8 << 20}" in reason, reason
    assert shutil.disk_usage(small_disk).free > 0  # stopped before the disk was full


def test_a_recorded_size_too_large_writes_nothing(tmp_path: Path, small_disk: Path) -> None:
    files = [(f"{TOP}/uploads/f{i}", os.urandom(1 << 20)) for i in range(8)]
    archive = _archive(tmp_path / f"{TOP}.tar.gz", files)
    archive.with_name(archive.name + ".meta.json").write_text(
        json.dumps({"kind": "full", "bytes": 8 << 20})
    )
    read = check_archive_read(archive, small_disk / "work")
    assert read.integrity.passed
    assert read.extracted is not None and "set TMPDIR to a larger folder" in read.extracted.reason
    assert tree_facts(small_disk / "work") == {}  # refused before writing anything


def test_full_scratch_database_fails_the_extraction_not_the_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The extraction's record (a scratch SQLite file under TMPDIR) cannot grow: the
    extraction check fails and names TMPDIR; the archive itself is still judged good."""
    import sqlite3

    def tiny_scratch() -> sqlite3.Connection:
        db = sqlite3.connect(":memory:")
        db.execute("PRAGMA max_page_count = 8")
        return db

    files = [(f"{TOP}/uploads/u{i:05d}.txt", b"x") for i in range(2_000)]
    archive = _archive(tmp_path / f"{TOP}.tar.gz", files)
    monkeypatch.setattr(safe_extract, "open_scratch_database", tiny_scratch)
    read = check_archive_read(archive, tmp_path / "work")
    assert read.integrity.passed, read.integrity.reason
    assert read.extracted is not None and not read.extracted.passed
    assert "set TMPDIR to a larger folder" in read.extracted.reason, read.extracted.reason
