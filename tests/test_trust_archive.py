"""Issue 15, the full-backup side: legal names, links, hard links and pre-restore snapshots.

Each case goes through the real CLI: `backup-all`, then `test-restore --backup-file` and
`restore-all --yes` on the same archive. Both readers must reach the same verdict, and a
refused archive leaves the live tree exactly as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tasks.stream.checksum import sha256_file, write_sidecar
from tests.conftest import Platform
from tests.support.trees import installation_state, member, rewrite_members, tree_facts
from tests.test_db_restore import one_error_line

# Names Linux allows (any byte but NUL and "/"), which people and programs do make.
ODD_NAMES = [
    b"invoice\\2024.pdf",  # issue 15: made every full backup unrestorable
    b"line\nbreak.txt",
    b"quote\"and'apostrophe.txt",
    b"\xff\xfe not utf-8.bin",
    b"-rf",
    b" spaced out ",
    b"tab\tand\x01control\x7f",
    b"caf\xc3\xa9 \xe2\x80\xa8 separator",
    b"n" * 255,
]


def backup(platform: Platform) -> Path:
    done = platform.run("backup-all")
    assert done.returncode == 0, done.stderr
    return max(platform.backup_files("full_backup_*.tar.gz"))


def test_restore(platform: Platform, archive: Path) -> subprocess.CompletedProcess[str]:
    return platform.run("test-restore", "--backup-file", str(archive))


test_restore.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def restore(platform: Platform, archive: Path) -> subprocess.CompletedProcess[str]:
    return platform.run("restore-all", "--yes", str(archive))


def uploads(platform: Platform) -> Path:
    return platform.root / "data" / "uploads"


def manifest_of(archive: Path) -> dict:
    with tarfile.open(archive, "r:gz") as tar:
        for info in tar:
            if info.name.endswith("/MANIFEST.json"):
                return json.loads(tar.extractfile(info).read())  # type: ignore[union-attr]
    raise AssertionError("no MANIFEST.json")


def entry(manifest: dict, path: str) -> dict:
    [found] = [e for e in manifest["files"] if e["path"] == path]
    return found


def live_state(platform: Platform) -> dict[bytes, tuple[object, ...]]:
    return installation_state(platform.root, platform.backups)


def assert_both_refuse(platform: Platform, archive: Path, words: str) -> None:
    """test-restore fails, restore-all refuses (exit 6) naming `words`, nothing live changes."""
    write_sidecar(archive, sha256_file(archive))
    before = live_state(platform)
    tested = test_restore(platform, archive)
    assert tested.returncode == 1, tested.stdout
    assert words in tested.stdout, tested.stdout
    done = restore(platform, archive)
    assert done.returncode == 6, done.stderr
    line = one_error_line(done)
    assert words in line, line
    assert live_state(platform) == before


# -- 6. any legal name ------------------------------------------------------------------------


def test_every_legal_name_round_trips(sqlite_platform: Platform) -> None:
    platform = sqlite_platform
    folder = os.fsencode(uploads(platform))
    for name in ODD_NAMES:
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(name * 3)
    os.mkdir(os.path.join(folder, b"dir\\with\nodd \xff name"))
    with open(os.path.join(folder, b"dir\\with\nodd \xff name", b"inner\\file"), "wb") as handle:
        handle.write(b"inner")
    (platform.root / "data" / "back\\slash.ini").write_text("[x]\n")
    archive = backup(platform)
    backed_up = tree_facts(platform.root / "data", skip=lambda rel: rel.startswith(b"admin.db"))

    tested = test_restore(platform, archive)
    assert tested.returncode == 0, tested.stdout
    shutil.rmtree(uploads(platform))
    (platform.root / "data" / "back\\slash.ini").unlink()
    done = restore(platform, archive)
    assert done.returncode == 0, done.stderr
    assert tree_facts(platform.root / "data", skip=lambda rel: rel.startswith(b"admin.db")) == backed_up
    # MANIFEST.txt stays one line per file for people: odd bytes are shown escaped.
    text = subprocess.run(
        ["tar", "--wildcards", "-xzf", str(archive), "-O", "*/MANIFEST.txt"],
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8")
    assert "uploads/line\\nbreak.txt" in text and "uploads/invoice\\2024.pdf" in text


# -- 7. links: restored as recorded, never followed; unrecorded ones refused --------------------


def test_absolute_and_outward_links_come_back_as_links(
    sqlite_platform: Platform, tmp_path: Path
) -> None:
    platform = sqlite_platform
    outside = tmp_path / "outside"
    outside.mkdir()
    (uploads(platform) / "real.txt").write_text("content\n")
    os.symlink("/srv/shared", uploads(platform) / "shared")  # issue 15's case: dangling, absolute
    os.symlink(str(outside), uploads(platform) / "to-outside")  # absolute, to a real folder
    os.symlink("../../../outside", uploads(platform) / "up-and-out")  # relative, leaves the tree
    os.symlink("real.txt", uploads(platform) / "relative")
    os.symlink("no such file", uploads(platform) / "dangling")
    os.symlink("uploads/real.txt", platform.root / "data" / "into-uploads")
    archive = backup(platform)
    backed_up = tree_facts(platform.root / "data", skip=lambda rel: rel.startswith(b"admin.db"))

    tested = test_restore(platform, archive)
    assert tested.returncode == 0, tested.stdout
    shutil.rmtree(uploads(platform))
    (platform.root / "data" / "into-uploads").unlink()
    done = restore(platform, archive)
    assert done.returncode == 0, done.stderr
    assert tree_facts(platform.root / "data", skip=lambda rel: rel.startswith(b"admin.db")) == backed_up
    assert os.readlink(uploads(platform) / "shared") == "/srv/shared"
    assert list(outside.iterdir()) == []  # never followed while extracting
    assert not Path("/srv/shared").exists()


def _with_extra(extra: list[tarfile.TarInfo]):
    """An archive edit: `extra` members go in just before the manifest (which stays last)."""

    def edit(info: tarfile.TarInfo, data: bytes | None):
        if info.name.endswith("/MANIFEST.txt"):
            top = info.name.split("/", 1)[0]
            for added in extra:
                added.name = f"{top}/{added.name}"
                if added.type == tarfile.LNKTYPE:
                    added.linkname = f"{top}/{added.linkname}"
            return [*[(added, None) for added in extra], (info, data)]
        return [(info, data)]

    return edit


def _manifest_edit(change):
    def edit(info: tarfile.TarInfo, data: bytes | None):
        if info.name.endswith("/MANIFEST.json") and data is not None:
            manifest = json.loads(data)
            change(manifest)
            return [(info, json.dumps(manifest).encode())]
        return [(info, data)]

    return edit


@pytest.mark.parametrize(
    "case",
    ["link not in the manifest", "link with another target", "member through a link"],
)
def test_links_the_manifest_does_not_vouch_for_are_refused_by_both(
    sqlite_platform: Platform, tmp_path: Path, case: str
) -> None:
    platform = sqlite_platform
    outside = tmp_path / "outside"
    outside.mkdir()
    (uploads(platform) / "real.txt").write_text("content\n")
    os.symlink(str(outside), uploads(platform) / "out")
    archive = backup(platform)
    forged = tmp_path / archive.name
    if case == "link not in the manifest":
        edit = _with_extra([member("uploads/sneaky", tarfile.SYMTYPE, "/etc")])
        words = "uploads/sneaky: link not recorded in MANIFEST.json; refused"
    elif case == "link with another target":
        edit = _manifest_edit(lambda m: entry(m, "uploads/out").update(target="/elsewhere"))
        words = "uploads/out: link to"
    else:
        extra = member("uploads/out/evil.txt")
        edit = _with_extra([extra])
        words = "through a link"
    rewrite_members(archive, forged, edit)
    shutil.rmtree(uploads(platform))  # the incident; a refused restore must not change it
    assert_both_refuse(platform, forged, words)
    assert list(outside.iterdir()) == []


# -- 13. hard links -------------------------------------------------------------------------------


def test_hard_links_are_archived_and_restored_as_links(
    sqlite_platform: Platform, tmp_path: Path
) -> None:
    platform = sqlite_platform
    data = platform.root / "data"
    (uploads(platform) / "a.bin").write_bytes(os.urandom(5000))
    os.link(uploads(platform) / "a.bin", uploads(platform) / "same as a.bin")
    os.link(uploads(platform) / "a.bin", data / "also a.bin")  # another section, same inode
    (data / "sub").mkdir()
    (data / "pair1").write_text("one inode, two names\n")
    os.link(data / "pair1", data / "sub" / "pair2")
    archive = backup(platform)
    backed_up = tree_facts(data, skip=lambda rel: rel.startswith(b"admin.db"))
    assert backed_up[b"sub/pair2"][4] == (b"pair1", b"sub/pair2")  # one inode, two names

    with tarfile.open(archive, "r:gz") as tar:
        kinds = {m.name.partition("/")[2]: (m.type, m.linkname) for m in tar}
    top = archive.name.split(".", 1)[0]
    assert kinds["uploads/same as a.bin"] == (tarfile.LNKTYPE, f"{top}/uploads/a.bin")
    assert kinds["data/sub/pair2"] == (tarfile.LNKTYPE, f"{top}/data/pair1")
    assert kinds["uploads/a.bin"][0] == tarfile.REGTYPE
    manifest = manifest_of(archive)
    assert entry(manifest, "uploads/same as a.bin")["target"] == "uploads/a.bin"
    assert entry(manifest, "data/sub/pair2")["target"] == "data/pair1"
    assert entry(manifest, "data/pair1")["target"] is None
    # Plain tar recreates them too.
    plain = tmp_path / "plain"
    plain.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(plain)], check=True)
    extracted = plain / top / "data"
    assert os.stat(extracted / "pair1").st_ino == os.stat(extracted / "sub" / "pair2").st_ino

    tested = test_restore(platform, archive)
    assert tested.returncode == 0, tested.stdout
    for path in (uploads(platform), data / "sub"):
        shutil.rmtree(path)
    (data / "pair1").unlink()
    (data / "also a.bin").write_text("changed")
    done = restore(platform, archive)
    assert done.returncode == 0, done.stderr
    assert tree_facts(data, skip=lambda rel: rel.startswith(b"admin.db")) == backed_up


@pytest.mark.parametrize(
    "case", ["to a later member", "to outside", "not recorded", "recorded, but a copy"]
)
def test_hard_links_the_manifest_does_not_vouch_for_are_refused_by_both(
    sqlite_platform: Platform, tmp_path: Path, case: str
) -> None:
    platform = sqlite_platform
    (uploads(platform) / "a.txt").write_text("first\n")
    (uploads(platform) / "b.txt").write_text("first\n")  # same content, its own inode
    (uploads(platform) / "c.txt").write_text("third\n")
    os.link(uploads(platform) / "c.txt", uploads(platform) / "d.txt")
    archive = backup(platform)
    forged = tmp_path / archive.name

    def swap_b_for_a_link(info: tarfile.TarInfo, data: bytes | None):
        if info.name.endswith("/uploads/b.txt"):
            top = info.name.split("/", 1)[0]
            return [(member(info.name, tarfile.LNKTYPE, f"{top}/uploads/a.txt"), None)]
        return [(info, data)]

    def d_as_a_copy(info: tarfile.TarInfo, data: bytes | None):
        if info.name.endswith("/uploads/d.txt"):
            return [(member(info.name), b"third\n")]
        return [(info, data)]

    if case == "to a later member":
        edit = _with_extra([member("uploads/e.txt", tarfile.LNKTYPE, "uploads/zzz-later")])
        words = "hard link"
    elif case == "to outside":
        edit = _with_extra([member("uploads/e.txt", tarfile.LNKTYPE, "../../../etc/passwd")])
        words = "refused"
    elif case == "not recorded":
        edit = swap_b_for_a_link  # the manifest says b.txt is a file of its own
        words = "uploads/b.txt: a hard link of uploads/a.txt in the archive"
    else:
        edit = d_as_a_copy  # the manifest says d.txt is c.txt's inode
        words = "uploads/d.txt: not a hard link of uploads/c.txt"
    rewrite_members(archive, forged, edit)
    (uploads(platform) / "a.txt").unlink()
    assert_both_refuse(platform, forged, words)


# -- pre-restore snapshots are never archived, and never removed by restore-all -----------------


def test_pre_restore_snapshots_are_not_archived_and_survive_restore_all(
    sqlite_platform: Platform,
) -> None:
    platform = sqlite_platform
    data = platform.root / "data"
    (data / "old").mkdir()
    (data / "old" / "keep.txt").write_text("backed up\n")
    snapshots = [
        data / "admin.db.before_restore.20250101_000000",
        data / "old" / "admin_postgres_before_restore_20250101_000000.sql.gz",
        data / "old" / "other.db.before_restore.20250102_030405",
        uploads(platform) / "full_before_restore_20250101_000000.tar.gz",
    ]
    for path in snapshots:
        path.write_bytes(b"a snapshot " + path.name.encode())
    # Names that only look alike are ordinary files, backed up as usual.
    (uploads(platform) / "notes_before_restore.txt").write_text("mine\n")
    archive = backup(platform)
    with tarfile.open(archive, "r:gz") as tar:
        names = [m.name for m in tar]
    assert not [n for n in names if "before_restore" in n and "notes_" not in n], names
    manifest = manifest_of(archive)
    recorded = [e["path"] for e in manifest["files"]] + [s["path"] for s in manifest["skipped"]]
    assert not [p for p in recorded if "before_restore" in p and "notes_" not in p], recorded
    assert "uploads/notes_before_restore.txt" in recorded

    (data / "old" / "keep.txt").write_text("changed\n")
    (data / "old" / "later.txt").write_text("live only\n")
    done = restore(platform, archive)
    assert done.returncode == 0, done.stderr
    assert (data / "old" / "keep.txt").read_text() == "backed up\n"
    assert not (data / "old" / "later.txt").exists()
    for path in snapshots:
        assert path.read_bytes() == b"a snapshot " + path.name.encode(), path


def test_a_restores_staged_database_is_not_data(sqlite_platform: Platform) -> None:
    """restore-all stages the database as `.admin.db.partial-PID-HEX` beside the live one:
    its own pre-restore copy archived that file, and one left by a killed restore went
    into every later backup. A name like it elsewhere is the operator's and is kept."""
    platform = sqlite_platform
    data = platform.root / "data"
    left = data / ".admin.db.partial-4242-b755ff35"  # what a killed restore leaves
    left.write_bytes(b"half a database")
    mine = uploads(platform) / ".report.pdf.partial-1-00000000"
    mine.write_bytes(b"an upload")
    archive = backup(platform)
    recorded = [e["path"] for e in manifest_of(archive)["files"]]
    assert not [p for p in recorded if ".admin.db.partial-" in p], recorded
    assert "uploads/.report.pdf.partial-1-00000000" in recorded
    done = restore(platform, archive)
    assert done.returncode == 0, done.stderr
    [copy] = platform.backup_files("full_before_restore_*.tar.gz")
    with tarfile.open(copy, "r:gz") as tar:
        staged = [m.name for m in tar if ".partial-" in m.name and "report" not in m.name]
    assert staged == [], staged
    assert mine.read_bytes() == b"an upload"


# -- after the swap, the live tree is proven to be what was staged ------------------------------


def test_a_swap_that_does_not_bring_in_what_was_checked_is_put_back(tmp_path: Path) -> None:
    """The staged file is replaced after the checks (same bytes, another inode): the proof
    after the renames catches it, and every rename is undone."""
    from functools import partial

    from tasks.backup.full_backup import FullBackupPlan, write_full_backup
    from tasks.core.errors import RestoreError
    from tasks.restore.archive import new_staging_dir, prove_restored_tree, stage_archive
    from tasks.restore.files import Swap, SwapJournal, SwapPlan
    from tasks.sources.sqlite import SqliteSource
    from tests.conftest import make_sqlite_db

    data = tmp_path / "data"
    (data / "uploads").mkdir(parents=True)
    (data / "uploads" / "a.txt").write_text("checked\n")
    os.link(data / "uploads" / "a.txt", data / "uploads" / "b.txt")
    os.symlink("/srv/shared", data / "uploads" / "shared")
    db = make_sqlite_db(data / "admin.db", agents=1, messages=1)
    backups = tmp_path / "backups"
    backups.mkdir()
    plan = FullBackupPlan(
        backup_dir=backups, db_path=db, uploads=data / "uploads", data=data,
        config_files=(), skip_unreadable=False,
    )  # fmt: skip
    archive = write_full_backup(SqliteSource(db, backups), plan, "daily").path
    (data / "uploads" / "a.txt").unlink()  # the incident
    live = tree_facts(data)

    staged = stage_archive(archive, new_staging_dir(data))
    swaps = SwapPlan(swaps=[Swap(data / "uploads", staged.root / "uploads", "uploads")])
    sneaked = staged.root / "uploads" / "a.txt"
    sneaked.unlink()
    sneaked.write_text("checked\n")  # the same bytes, but not the file that was checked
    with pytest.raises(RestoreError, match="uploads/a.txt: not the file that was staged"):
        SwapJournal(proof=partial(prove_restored_tree, staged)).apply(swaps)
    assert tree_facts(data, skip=lambda rel: rel.startswith(b".chatbot-restore-")) == live

    staged_again = stage_archive(archive, new_staging_dir(data))
    good = SwapPlan(swaps=[Swap(data / "uploads", staged_again.root / "uploads", "uploads")])
    SwapJournal(proof=partial(prove_restored_tree, staged_again)).apply(good)
    restored = tree_facts(data / "uploads")
    assert restored[b"b.txt"][-1] == (b"a.txt", b"b.txt")
    assert restored[b"shared"] == ("link", b"/srv/shared")


def test_manifests_without_hard_links_stay_readable() -> None:
    """A file's `target` is new (hard links); manifests that lack it, or carry null, read as
    before, and a target that climbs out is malformed like any bad path."""
    from tasks.archive.manifest.model import FORMAT
    from tasks.core.errors import VerifyError
    from tests.support.manifests import parse_manifest

    def manifest(files: list[dict]) -> str:  # type: ignore[type-arg]
        return json.dumps(
            {"name": "full_backup_20250101_000000", "created_at": "2025-01-01T00:00:00+00:00",
             "tier": "daily", "host": "h", "db_type": "sqlite", "database": None,
             "files": files, "skipped": [], "format": FORMAT}
        )  # fmt: skip

    a = {"path": "uploads/a", "type": "file", "size": 1, "sha256": "a" * 64, "mode": 420}
    old = parse_manifest(manifest([a, {**a, "path": "uploads/b", "target": None}]))
    assert [e.hardlink for e in old.files] == [None, None]
    new = parse_manifest(manifest([a, {**a, "path": "uploads/b", "target": "uploads/a"}]))
    assert [e.hardlink for e in new.files] == [None, "uploads/a"]
    with pytest.raises(VerifyError, match="malformed"):
        parse_manifest(manifest([a, {**a, "path": "uploads/b", "target": "../etc/passwd"}]))
