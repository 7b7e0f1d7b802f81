"""The full archive read back from the disk while it is written (issue 18): the same
verdict as a read after the write, damage and a wrong sidecar caught, a failed write
stopping the reader with nothing left behind."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import time
from dataclasses import astuple
from pathlib import Path
from typing import BinaryIO

import pytest

from tasks.archive.scan import ArchiveScan, scan_archive
from tasks.backup.read_back import ReadBehind, read_behind, take_read_behind
from tasks.core.errors import VerifyError
from tasks.stream.growing import GrowingFile, WriterGaveUp
from tasks.stream.pipeline import write_artifact
from tests.support.plans import platform_plan


def _reader_threads() -> int:
    return sum(t.name == "read-back" and t.is_alive() for t in threading.enumerate())


def _tar_of(files: dict[str, bytes]) -> object:
    def produce(out: BinaryIO) -> int:
        with tarfile.open(fileobj=out, mode="w|") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return len(files)

    return produce


def _files(count: int = 12, size: int = 400_000) -> dict[str, bytes]:
    # half random (what deflate cannot shrink), half text: the archive spans many members
    return {
        f"top/f{i:02d}": os.urandom(size) if i % 2 else (b"chat log line %d\n" % i) * 20_000
        for i in range(count)
    }


def _same(a: ArchiveScan, b: ArchiveScan) -> bool:
    return astuple(a) == astuple(b)


# -- GrowingFile --------------------------------------------------------------------------


def test_the_reader_follows_a_slow_writer_and_ends_only_when_told(tmp_path: Path) -> None:
    path = tmp_path / "growing"
    chunks = [os.urandom(70_000) for _ in range(6)]
    with open(path, "wb", buffering=0) as out:
        follower = GrowingFile(path)
        got = bytearray()

        def read_all() -> None:
            while data := follower.read(50_000):
                got.extend(data)

        reader = threading.Thread(target=read_all)
        reader.start()
        for chunk in chunks:
            out.write(chunk)
            time.sleep(0.05)
        time.sleep(0.2)  # the reader is at the end of what is written: it must wait
        assert reader.is_alive()
        assert bytes(got) == b"".join(chunks)
        follower.finished()
        reader.join(5)
    assert not reader.is_alive()
    assert bytes(got) == b"".join(chunks)
    assert follower.size == len(got)
    follower.close()


def test_abandon_stops_a_waiting_reader(tmp_path: Path) -> None:
    path = tmp_path / "growing"
    path.write_bytes(b"x" * 1000)
    follower = GrowingFile(path)
    assert follower.read(1000) == b"x" * 1000
    raised: list[BaseException] = []

    def wait_for_more() -> None:
        try:
            follower.read(10)
        except BaseException as exc:  # noqa: BLE001 - what the test looks at
            raised.append(exc)

    reader = threading.Thread(target=wait_for_more)
    reader.start()
    time.sleep(0.1)
    assert reader.is_alive()
    follower.abandon()
    reader.join(2)
    assert not reader.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], WriterGaveUp)
    follower.close()


# -- ReadBehind over write_artifact -----------------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_the_read_behind_gives_what_a_read_after_the_write_gives(
    tmp_path: Path, compression: str
) -> None:
    final = tmp_path / f"full_backup_20261202_010203.tar.{'gz' if compression == 'gzip' else 'zst'}"
    behind = read_behind(final, compression)
    artifact = write_artifact(final, _tar_of(_files()), compression, watch=behind)  # type: ignore[arg-type]
    assert take_read_behind(final) is behind  # the verify step finds it by the path
    followed = behind.result(artifact.sha256)
    later = scan_archive(final, artifact.sha256)
    assert _same(followed, later)
    assert followed.members == 12 and followed.sha256 == artifact.sha256
    assert followed.size == final.stat().st_size == artifact.size
    assert _reader_threads() == 0


def test_a_tar_that_is_not_one_fails_the_read_behind(tmp_path: Path) -> None:
    final = tmp_path / "full_backup_20261202_010203.tar.gz"
    behind = ReadBehind(final, "gzip")

    def produce(out: BinaryIO) -> None:
        out.write(os.urandom(3 << 20))  # compresses and hashes fine; no tar inside

    artifact = write_artifact(final, produce, "gzip", watch=behind)
    with pytest.raises(VerifyError, match="not a readable tar archive"):
        behind.result(artifact.sha256)


def test_a_byte_changed_on_disk_before_it_was_read_back_is_caught(tmp_path: Path) -> None:
    final = tmp_path / "full_backup_20261202_010203.tar.gz"

    class ReadsLate(ReadBehind):
        """Starts reading only once the write is over, after a byte on disk changed (what
        the disk or another process could do): the read must find it."""

        def opened(self, partial: Path) -> None:
            self.partial = partial

        def finished(self) -> None:
            with open(final, "r+b") as handle:
                handle.seek(final.stat().st_size // 2)
                byte = handle.read(1)
                handle.seek(-1, os.SEEK_CUR)
                handle.write(bytes([byte[0] ^ 0x40]))
            super().opened(final)
            super().finished()

    behind = ReadsLate(final, "gzip")
    artifact = write_artifact(final, _tar_of(_files()), "gzip", watch=behind)  # type: ignore[arg-type]
    with pytest.raises(VerifyError, match="damaged|sha256 does not match"):
        behind.result(artifact.sha256)


def test_a_sidecar_that_disagrees_is_caught(tmp_path: Path) -> None:
    final = tmp_path / "full_backup_20261202_010203.tar.gz"
    behind = ReadBehind(final, "gzip")
    artifact = write_artifact(final, _tar_of(_files(4)), "gzip", watch=behind)  # type: ignore[arg-type]
    artifact.sidecar.write_text(f"{'0' * 64}  {final.name}\n")
    with pytest.raises(VerifyError, match="sidecar"):
        behind.result(artifact.sha256)


def test_a_failed_write_stops_the_reader_and_keeps_its_own_error(tmp_path: Path) -> None:
    final = tmp_path / "full_backup_20261202_010203.tar.gz"
    behind = read_behind(final, "gzip")

    def produce(out: BinaryIO) -> None:
        out.write(os.urandom(4 << 20))
        time.sleep(0.2)  # the reader has caught up and waits for more
        raise RuntimeError("the uploads folder vanished")

    with pytest.raises(RuntimeError, match="uploads folder vanished"):
        write_artifact(final, produce, "gzip", watch=behind)
    assert _reader_threads() == 0
    assert take_read_behind(final) is None
    assert list(tmp_path.iterdir()) == []  # no partial file, no final name


def test_a_full_backup_is_judged_by_the_read_that_followed_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """backup-all's write starts the read; its verify step takes that read's verdict and
    does not read the file a second time."""
    from tasks.backup.full_backup import write_full_backup
    from tasks.sources.sqlite import SqliteSource
    from tasks.steps import full_backup as steps
    from tests.conftest import make_sqlite_db

    db = make_sqlite_db(tmp_path / "data" / "admin.db", agents=3, messages=5)
    uploads = tmp_path / "data" / "uploads"
    uploads.mkdir()
    for i in range(30):
        (uploads / f"u{i}.bin").write_bytes(os.urandom(100_000))
    plan = platform_plan(tmp_path)
    backups = plan.backup_dir
    artifact = write_full_backup(SqliteSource(db, backups), plan, "daily", read_back=True)
    reads: list[Path] = []
    monkeypatch.setattr(steps, "scan_archive", lambda path, sha: reads.append(path))
    scan = steps.read_back(artifact)
    assert reads == []  # judged from the followed read
    assert scan.manifest_is_last and scan.top == artifact.detail.name
    monkeypatch.undo()
    assert _same(scan, scan_archive(artifact.path, artifact.sha256))
    assert steps.read_back(artifact).sha256 == artifact.sha256  # nothing under way: reads now
