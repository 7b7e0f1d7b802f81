"""Safe extraction: hostile archives are refused and nothing lands outside the target."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from tasks.archive.member_rules import UnsafeArchiveError
from tasks.archive.safe_extract import extract_archive
from tasks.core.errors import VerifyError
from tests.support.readers import extract_safely


class Tar:
    """A .tar.gz built member by member, hostile ones included."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tar = tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT)

    def file(self, name: str, data: bytes = b"data", mode: int = 0o644) -> Tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), mode
        self.tar.addfile(info, io.BytesIO(data))
        return self

    def dir(self, name: str, mode: int = 0o755) -> Tar:
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, mode
        self.tar.addfile(info)
        return self

    def link(self, name: str, target: str, hard: bool = False) -> Tar:
        info = tarfile.TarInfo(name)
        info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
        info.linkname = target
        self.tar.addfile(info)
        return self

    def special(self, name: str, kind: bytes) -> Tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        self.tar.addfile(info)
        return self

    def close(self) -> Path:
        self.tar.close()
        return self.path


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """Target inside a folder whose other contents must never change."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "precious.txt").write_text("keep me")
    return tmp_path


def untouched(box: Path) -> bool:
    return (
        sorted(p.name for p in (box / "outside").iterdir()) == ["precious.txt"]
        and (box / "outside" / "precious.txt").read_text() == "keep me"
    )


def test_a_normal_archive_round_trips(box: Path) -> None:
    archive = (
        Tar(box / "a.tar.gz")
        .dir("top")
        .dir("top/d", 0o750)
        .file("top/d/x.txt", b"x" * 3000, 0o640)
        .file("top/empty", b"")
        .dir("top/ro", 0o555)
        .file("top/ro/inside.txt", b"in a read-only folder")
        .link("top/rel", "d/x.txt")
        .link("top/hard", "top/d/x.txt", hard=True)
        .file("top/setuid", b"#!/bin/sh\n", 0o4755)
        .close()
    )
    result = extract_archive(archive, box / "t")
    top = box / "t" / "top"
    assert (top / "d" / "x.txt").read_bytes() == b"x" * 3000
    assert stat.S_IMODE((top / "d").stat().st_mode) == 0o750
    assert stat.S_IMODE((top / "d" / "x.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE((top / "ro").stat().st_mode) == 0o555
    assert (top / "ro" / "inside.txt").read_bytes() == b"in a read-only folder"
    assert os.readlink(top / "rel") == "d/x.txt" and (top / "hard").read_bytes() == b"x" * 3000
    assert stat.S_IMODE((top / "setuid").stat().st_mode) == 0o755  # setuid dropped
    assert (result.set_id_dropped, result.set_id_names) == (1, ["top/setuid"])  # and counted
    assert result.files["top/empty"].size == 0
    assert result.symlinks == {"top/rel": "d/x.txt"}
    assert extract_safely(archive, box / "t2") == sorted(
        {"top", "top/d", "top/ro", "top/d/x.txt", "top/empty", "top/ro/inside.txt",
         "top/rel", "top/hard", "top/setuid"}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda t: t.file("/etc/evil"), "absolute path refused"),
        (lambda t: t.file("top/../../outside/evil"), "'..' in a member name refused"),
        (lambda t: t.file("../outside/precious.txt", b"overwritten"), "'..'"),
        (lambda t: t.link("top/out", "/etc/passwd"), "link pointing outside"),
        (lambda t: t.link("top/out", "../../outside"), "link pointing outside"),
        (lambda t: t.link("top/h", "/etc/passwd", hard=True), "hard link"),
        (lambda t: t.special("top/dev", tarfile.CHRTYPE), "device refused"),
        (lambda t: t.special("top/fifo", tarfile.FIFOTYPE), "FIFO refused"),
        (lambda t: t.file("top/a").file("top/a", b"again"), "appears twice"),
        # A link to a folder outside, then a file "through" it: refused, never written there.
        (lambda t: t.link("top/esc", "../../outside").file("top/esc/evil"), "refused"),
        # The same, with the link written after the file that wants to go through it.
        (lambda t: t.file("top/esc/evil").link("top/esc", "../../outside"), "refused"),
    ],
)
def test_hostile_members_are_refused(box: Path, build, message: str) -> None:  # type: ignore[no-untyped-def]
    tar = Tar(box / "hostile.tar.gz").dir("top")
    build(tar)
    archive = tar.close()
    with pytest.raises(UnsafeArchiveError, match=message.replace("(", r"\(")):
        extract_archive(archive, box / "target")
    assert untouched(box)
    assert not Path("/etc/evil").exists()


def test_chain_of_inside_looking_links_that_leads_out(box: Path) -> None:
    # a/b/up -> ../.. (= target), then x -> a/b/up/.. : lexically inside, really outside.
    archive = (
        Tar(box / "chain.tar.gz")
        .dir("a")
        .dir("a/b")
        .link("a/b/up", "../..")
        .link("x", "a/b/up/..")
        .close()
    )
    with pytest.raises(UnsafeArchiveError, match="x: link pointing outside"):
        extract_archive(archive, box / "target")
    result = extract_archive(archive, box / "target2", skip_external_links=True)
    assert not os.path.lexists(box / "target2" / "x")
    assert result.external_links == {"x": "a/b/up/.."} and "a/b/up" in result.symlinks
    assert untouched(box)


def test_links_out_can_be_recorded_instead(box: Path) -> None:
    archive = Tar(box / "a.tar.gz").dir("top").link("top/hosts", "/etc/hosts").close()
    result = extract_archive(archive, box / "t", skip_external_links=True)
    assert result.external_links == {"top/hosts": "/etc/hosts"}
    assert result.link_target("top/hosts") == "/etc/hosts"
    assert not os.path.lexists(box / "t" / "top" / "hosts")


def test_size_limit_stops_a_bomb(box: Path) -> None:
    archive = Tar(box / "big.tar.gz").file("a", b"\0" * 100_000).file("b", b"\0" * 100_000).close()
    with pytest.raises(UnsafeArchiveError, match="more than 150000 bytes"):
        extract_archive(archive, box / "t", max_bytes=150_000)


def test_damaged_archive_is_a_verify_error(box: Path) -> None:
    archive = Tar(box / "a.tar.gz").file("a", os.urandom(200_000)).close()
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(VerifyError, match="damaged or truncated"):
        extract_archive(archive, box / "t")
