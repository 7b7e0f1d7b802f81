"""Fuzzing every reader of a file the operator hands us (SPEC.md, Restore; issue 9).

Readers under test, and the one error each documents:
- `parse_manifest` (MANIFEST.json bytes): VerifyError.
- `read_sidecar` / `verify_sidecar` (NAME.sha256): None, a digest, or VerifyError.
- `parse_backup_name` / `impossible_timestamp`: None or a value, never an exception.
- `scan_archive`, `refuse_unsafe_members`, `extract_archive`, `stage_archive`,
  `verify_compressed_file`: VerifyError (UnsafeArchiveError is one).
- the test-restore checks (`check_archive_integrity`, `check_extraction`, `check_archive_read`,
  `check_manifest`, `check_section`): never raise; they return a failed outcome.

Inputs: arbitrary bytes; a real full backup (made by the backup-all code path) with
random flips, truncations and insertions, before or after compression; and tar archives
whose headers Hypothesis writes (`..`, absolute, long, NUL and non-ASCII names; links,
hard links, devices, FIFOs; lying sizes). Each example runs in a sandbox whose every
entry outside the target is snapshotted before and compared after, under a wall-clock
alarm so a hang fails instead of stalling CI. Derandomized: CI replays the same examples.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest
import zstandard
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tasks.archive.header_pass import refuse_unsafe_members
from tasks.archive.safe_extract import extract_archive
from tasks.archive.scan import scan_archive
from tasks.core.errors import VerifyError
from tasks.core.naming import (
    db_backup_name,
    full_backup_name,
    impossible_timestamp,
    parse_backup_name,
    sidecar_name,
)
from tasks.restore.archive import stage_archive
from tasks.stream.checksum import read_sidecar
from tasks.verify.backup_file import verify_compressed_file
from tasks.verify.restore_test import (
    SECTION_CHECKS,
    check_archive_integrity,
    check_archive_read,
    check_extraction,
    check_manifest,
    check_section,
)
from tests.conftest import make_sqlite_db
from tests.support.manifests import parse_manifest
from tests.support.plans import platform_plan
from tests.support.readers import verify_sidecar

settings.register_profile(
    "fuzz-readers",
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,
    deadline=timedelta(seconds=10),  # generous: two cores shared with other suites
    max_examples=100,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
FUZZ = settings.get_profile("fuzz-readers")  # applied per test; the global profile is untouched
HANG_SECONDS = 30  # one example of a few KB; anything near this is a hang

T = TypeVar("T")
ESCAPE = Path(tempfile.gettempdir()) / f"chatbot-fuzz-escape-{os.getpid()}"


class Hang(Exception):
    pass


@contextlib.contextmanager
def no_hang(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Fail an example that runs too long (a deadline only fires once it returns)."""

    def expired(signum: int, frame: object) -> None:
        raise Hang(f"a reader ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def documented(call: Callable[[], T]) -> T | None:
    """The reader's result, None for its documented VerifyError; anything else propagates."""
    try:
        return call()
    except VerifyError:
        return None


# -- the sandbox -------------------------------------------------------------------------


def snapshot(root: Path, skip: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under `root` except `skip`'s subtree: type, size, mode, mtime, link."""
    seen: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            link = os.readlink(path) if os.path.islink(path) else None
            seen[os.path.relpath(path, root)] = (
                info.st_mode,
                info.st_size,
                info.st_mtime_ns,
                info.st_nlink,
                link,
            )
    return seen


class Box:
    """sandbox/a/b/c/{archive, target}: three levels of `..` still land inside sandbox/."""

    def __init__(self, parent: Path) -> None:
        self.root = Path(tempfile.mkdtemp(dir=parent))
        self.deep = self.root / "a" / "b" / "c"
        self.deep.mkdir(parents=True)
        self.target = self.deep / "target"
        self.target.mkdir(mode=0o700)
        for where in (self.root, self.root / "a", self.root / "a" / "b", self.deep):
            (where / "precious.txt").write_text("keep me")
        self.parent_listing = sorted(os.listdir(self.root.parent))
        self.before = snapshot(self.root, self.target)

    def archive(self, data: bytes, name: str = "full_backup_20260101_000000.tar.gz") -> Path:
        path = self.deep / name
        path.write_bytes(data)
        self.before = snapshot(self.root, self.target)
        return path

    def assert_nothing_outside_changed(self) -> None:
        assert snapshot(self.root, self.target) == self.before
        assert sorted(os.listdir(self.root.parent)) == self.parent_listing
        assert not ESCAPE.exists()
        # Nothing left in the target leads out: a later write through it would escape.
        for dirpath, dirnames, filenames in os.walk(self.target):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    real = os.path.realpath(path)
                    assert real == str(self.target) or real.startswith(f"{self.target}/"), (
                        f"{path} -> {os.readlink(path)} resolves outside the target"
                    )

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-sandbox")


@contextlib.contextmanager
def boxed(sandbox: Path) -> Iterator[Box]:
    box = Box(sandbox)
    try:
        with no_hang():
            yield box
        box.assert_nothing_outside_changed()
    finally:
        box.remove()


def run_every_archive_reader(box: Box, archive: Path) -> None:
    """Each reader of a user-given archive, on the same file, into the same sandbox."""
    scanned = documented(lambda: scan_archive(archive))
    headers_ok = documented(lambda: refuse_unsafe_members(archive)) is not None
    extracted = documented(lambda: extract_archive(archive, box.target / "plain")) is not None
    # What the examples reached (shown by --hypothesis-show-statistics).
    event(
        f"scan {'ok' if scanned else 'refused'}, headers {'ok' if headers_ok else 'refused'}, "
        f"extract {'ok' if extracted else 'refused'}"
    )
    documented(
        lambda: extract_archive(
            archive, box.target / "lenient", skip_external_links=True, max_bytes=1 << 20
        )
    )
    documented(lambda: stage_archive(archive, box.target / "staging"))
    # test-restore's checks report problems as outcomes: they never raise.
    integrity, scan = check_archive_integrity(archive)
    assert integrity.passed == (scan is not None)
    if scan is None:
        read = check_archive_read(archive, box.target / "one-read")
        assert not read.integrity.passed and read.scan is None and read.extracted is None
        return
    outcome, extraction = check_extraction(archive, scan, box.target / "test-restore")
    # test-restore's one read reaches the same verdicts as the two reads (scan, extract)
    read = check_archive_read(archive, box.target / "one-read")
    assert read.integrity.passed and read.extracted is not None
    assert read.extracted.passed == outcome.passed, (read.extracted, outcome)
    assert (read.extraction is None) == (extraction is None)
    if extraction is None:
        assert not outcome.passed
        return
    checked, manifest = check_manifest(scan, extraction)
    if manifest is not None and scan.top is not None:
        for check in SECTION_CHECKS:
            check_section(check, manifest, extraction, scan.top)


# -- a real full backup, made by the backup-all code path --------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """(the .tar.gz bytes, its uncompressed tar) of a small real full backup."""
    from tasks.backup.full_backup import write_full_backup
    from tasks.sources.sqlite import SqliteSource

    root = tmp_path_factory.mktemp("pristine")
    db = make_sqlite_db(root / "data" / "admin.db", agents=3, messages=5)
    uploads = root / "data" / "uploads"
    (uploads / "img").mkdir(parents=True)
    (uploads / "img" / "a.png").write_bytes(b"\x89PNG" + bytes(range(200)))
    (uploads / "notes é.txt").write_text("hello")
    (uploads / "link").symlink_to("img/a.png")
    (root / ".env").write_text("APP=1\n")
    plan = platform_plan(root, config_files=(root / ".env",))
    backups = plan.backup_dir
    artifact = write_full_backup(SqliteSource(db, backups), plan, "daily")
    data = artifact.path.read_bytes()
    return data, gzip.decompress(data)


def header_offsets(tar_bytes: bytes) -> list[int]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        return [m.offset for m in tar.getmembers()]


def test_the_pristine_backup_passes_every_reader(
    sandbox: Path, pristine: tuple[bytes, bytes]
) -> None:
    """The baseline: without damage every reader accepts it, so the fuzzing reaches deep."""
    with boxed(sandbox) as box:
        archive = box.archive(pristine[0])
        assert refuse_unsafe_members(archive) > 5
        staged = stage_archive(archive, box.target / "staging")
        assert staged.files == 3 and staged.database is not None
        integrity, scan = check_archive_integrity(archive)
        assert integrity.passed and scan is not None
        outcome, extraction = check_extraction(archive, scan, box.target / "t")
        assert outcome.passed and extraction is not None
        assert check_manifest(scan, extraction)[0].passed


# -- mutations ---------------------------------------------------------------------------

MUTATION = st.tuples(
    st.sampled_from(["flip", "set", "truncate", "insert", "delete"]),
    st.integers(min_value=0, max_value=1 << 24),
    st.binary(min_size=1, max_size=64),
)


def mutate(data: bytes, ops: list[tuple[str, int, bytes]], hot: list[int]) -> bytes:
    """Apply each operation at a position; half of them aim inside a tar header."""
    out = bytearray(data)
    for op, where, payload in ops:
        if not out:
            break
        pos = (hot[where % len(hot)] + payload[0] % 512) if hot and where % 2 else where
        pos %= len(out)
        if op == "flip":
            out[pos] ^= 1 << (payload[0] % 8)
        elif op == "set":
            out[pos : pos + len(payload)] = payload
        elif op == "truncate":
            del out[pos:]
        elif op == "insert":
            out[pos:pos] = payload
        else:
            del out[pos : pos + len(payload)]
    return bytes(out)


@FUZZ
@given(ops=st.lists(MUTATION, min_size=1, max_size=4), compressed=st.booleans())
def test_mutated_real_backup(
    sandbox: Path,
    pristine: tuple[bytes, bytes],
    ops: list[tuple[str, int, bytes]],
    compressed: bool,
) -> None:
    """Damage to the .tar.gz (mostly caught by gzip) or to the tar inside it (re-gzipped)."""
    gz, tar_bytes = pristine
    if compressed:
        data = mutate(gz, ops, [])
    else:
        data = gzip.compress(mutate(tar_bytes, ops, header_offsets(tar_bytes)), 1)
    with boxed(sandbox) as box:
        run_every_archive_reader(box, box.archive(data))


@FUZZ
@given(
    data=st.binary(max_size=4096), prefix=st.sampled_from([b"", b"\x1f\x8b", b"\x28\xb5\x2f\xfd"])
)
def test_arbitrary_bytes_as_an_archive(sandbox: Path, data: bytes, prefix: bytes) -> None:
    with boxed(sandbox) as box:
        archive = box.archive(prefix + data)
        run_every_archive_reader(box, archive)
        for name in ("admin_sqlite_20260101_000000.db.gz", "admin_postgres_20260101_000000.sql.gz"):
            as_db_backup = box.archive(prefix + data, name)
            documented(lambda: verify_compressed_file(as_db_backup))  # noqa: B023


# -- hostile tar headers -------------------------------------------------------------------

# Plain names, weighted up so that many archives get past the header pass and exercise
# the extraction itself (links among files and folders, chains of links, clashes).
PLAIN = st.sampled_from(
    ["a", "b", "l", "z", "a/b", "a/l", "a/b/c", "./a", "a//b", "a/", "precious.txt"]
)
HOSTILE = st.sampled_from(
    [
        "full_backup_20260101_000000",
        "full_backup_20260101_000000/MANIFEST.json",
        "a/./b",
        ".",
        "./",
        "",
        "..",
        "../x",
        "../../x",
        "../../../../x",
        "a/../../x",
        "a/../b",
        "/abs",
        f"{ESCAPE}/x",
        str(ESCAPE),
        "x" * 300,
        "d/" + "y" * 256,
        "/".join(["deep"] * 60),
        "été/☃/𝄞",
        "a\x00b",
        "\udcff-undecodable",
        "../precious.txt",
    ]
)
NAMES = st.one_of(
    PLAIN,
    HOSTILE,
    st.text(alphabet=st.sampled_from("ab./\x00é -"), max_size=24),
    st.text(max_size=16),
)
# Link targets that look inside but may resolve outside through other links.
TARGETS = st.one_of(
    st.sampled_from([".", "..", "z/..", "l/..", "a/..", "l/../..", "b", "a/b", "/", "/etc"]),
    NAMES,
)
TYPES = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.AREGTYPE,
        tarfile.DIRTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.CHRTYPE,
        tarfile.BLKTYPE,
        tarfile.FIFOTYPE,
        tarfile.CONTTYPE,
        b"V",
        b"Z",
    ]
)


@st.composite
def members(draw: st.DrawFn) -> bytes:
    """One tar member: a header Hypothesis chose, then data (maybe not what it claims)."""
    info = tarfile.TarInfo(draw(st.one_of(PLAIN, NAMES)))
    info.type = draw(TYPES)
    info.linkname = draw(TARGETS) if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    info.mode = draw(st.integers(min_value=0, max_value=0o7777))
    info.mtime = draw(st.sampled_from([0, 1_700_000_000, 2**33 - 1]))
    info.uid = info.gid = draw(st.sampled_from([0, 1000, 65534]))
    data = (
        draw(st.binary(max_size=600)) if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else b""
    )
    info.size = len(data) + draw(st.sampled_from([0, 0, 0, 1, 700, -1 if data else 0]))
    fmt: Literal[0, 1, 2] = draw(
        st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
    )
    try:
        header = info.tobuf(fmt, "utf-8", "surrogateescape")
    except (ValueError, UnicodeError):
        header = tarfile.TarInfo("unencodable").tobuf(tarfile.PAX_FORMAT)
    return header + data + bytes(-len(data) % 512)


@settings(FUZZ, max_examples=200)
@given(
    parts=st.lists(members(), min_size=1, max_size=6),
    end=st.sampled_from(["marker", "none", "truncated"]),
    compression=st.sampled_from(["gzip", "zstd"]),
)
def test_hostile_tar_headers(sandbox: Path, parts: list[bytes], end: str, compression: str) -> None:
    raw = b"".join(parts) + (bytes(1024) if end == "marker" else b"")
    if end == "truncated":
        raw = raw[: len(raw) * 2 // 3]
    data = gzip.compress(raw, 1) if compression == "gzip" else zstandard.compress(raw)
    with boxed(sandbox) as box:
        run_every_archive_reader(box, box.archive(data))


# -- the manifest --------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(data=st.binary(max_size=2048))
def test_manifest_reader_arbitrary_bytes(data: bytes) -> None:
    with no_hang():
        documented(lambda: parse_manifest(data))


@FUZZ
@given(
    replacements=st.lists(
        st.tuples(st.integers(min_value=0, max_value=1000), st.text(max_size=10), JSON),
        min_size=1,
        max_size=4,
    ),
    nest=st.integers(min_value=0, max_value=100_000),
)
def test_manifest_reader_structured(
    pristine: tuple[bytes, bytes],
    replacements: list[tuple[int, str, Any]],
    nest: int,
) -> None:
    """A real manifest with values swapped for any JSON, keys added, or nested absurdly deep."""
    with tarfile.open(fileobj=io.BytesIO(pristine[1]), mode="r:") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/MANIFEST.json"))
        handle = tar.extractfile(member)
        assert handle is not None
        manifest = json.loads(handle.read())
    parse_manifest(json.dumps(manifest))  # the untouched manifest is accepted
    nodes: list[tuple[Any, Any]] = []

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            nodes.extend((value, key) for key in value)
            for child in value.values():
                collect(child)
        elif isinstance(value, list):
            nodes.extend((value, index) for index in range(len(value)))
            for child in value:
                collect(child)

    for where, key, value in replacements:
        nodes.clear()
        collect(manifest)
        container, slot = nodes[where % len(nodes)]
        if isinstance(container, dict) and where % 3 == 0:
            container[key] = value  # a new key
        else:
            container[slot] = value
    text = json.dumps(manifest)
    with no_hang():
        documented(lambda: parse_manifest(text))
        documented(lambda: parse_manifest("[" * nest + "]" * nest))


# -- the sidecar and the backup name ---------------------------------------------------------


@FUZZ
@given(text=st.binary(max_size=400), digest_line=st.booleans())
def test_sidecar_reader_arbitrary_content(sandbox: Path, text: bytes, digest_line: bool) -> None:
    with boxed(sandbox) as box:
        artifact = box.archive(b"\x1f\x8bpayload", "admin_sqlite_20260101_000000.db.gz")
        sidecar = artifact.with_name(sidecar_name(artifact.name))
        if digest_line:  # a plausible line, its digest or name spoiled by the fuzz
            text = b"ab" * 32 + b"  " + artifact.name.encode() + text
        sidecar.write_bytes(text)
        box.before = snapshot(box.root, box.target)
        expected = documented(lambda: read_sidecar(artifact))
        assert expected is None or (
            len(expected) == 64 and set(expected) <= set("0123456789abcdef")
        )
        documented(lambda: verify_sidecar(artifact))


@FUZZ
@given(
    name=st.one_of(
        st.text(max_size=60),
        st.from_regex(
            r"(admin_(sqlite|postgres)|full_backup)_\d{8}_\d{6}\.(db|sql|tar)\.(gz|zst)",
            fullmatch=True,
        ),
    )
)
def test_backup_name_parser_arbitrary_text(name: str) -> None:
    parsed = parse_backup_name(name)
    impossible_timestamp(name)
    if parsed is not None:  # whatever parses is exactly a name we would have made
        if parsed.kind == "full":
            remade = full_backup_name(parsed.created_at, parsed.compression)
        else:
            assert parsed.db_type is not None
            remade = db_backup_name(parsed.db_type, parsed.created_at, parsed.compression)
        assert remade == name
        assert impossible_timestamp(name) is None


@FUZZ
@given(
    moment=st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)),
    kind=st.sampled_from(["sqlite", "postgres", "full"]),
    compression=st.sampled_from(["gzip", "zstd"]),
)
def test_every_name_we_make_parses_back(moment: datetime, kind: str, compression: str) -> None:
    moment = moment.replace(tzinfo=UTC, microsecond=0)
    name = (
        full_backup_name(moment, compression)
        if kind == "full"
        else db_backup_name(kind, moment, compression)
    )
    parsed = parse_backup_name(name)
    assert parsed is not None and parsed.created_at == moment and parsed.compression == compression


# -- a gzip bomb ------------------------------------------------------------------------------

_BOMB_READER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from tasks.archive.scan import scan_archive
    from tasks.core.errors import VerifyError
    from tasks.archive.safe_extract import extract_archive
    scan = scan_archive(Path(sys.argv[1]))
    try:
        extract_archive(Path(sys.argv[1]), Path(sys.argv[2]), max_bytes=1 << 20)
    except VerifyError as exc:
        print("refused:", exc)
    # VmHWM: this process's own peak (ru_maxrss would carry over pytest's, across exec).
    hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]
    print(scan.content_bytes, hwm)
    """
)


def test_gzip_bomb_stays_bounded(sandbox: Path) -> None:
    """256 MiB of zeros in a 256 KB file: the scan streams it, the size limit stops extraction."""
    size = 256 << 20
    with boxed(sandbox) as box:
        path = box.deep / "full_backup_20260101_000000.tar.gz"
        with gzip.open(path, "wb", compresslevel=1) as out:
            info = tarfile.TarInfo("full_backup_20260101_000000/data/zeros")
            info.size = size
            out.write(info.tobuf(tarfile.PAX_FORMAT))
            block = bytes(1 << 20)
            for _ in range(size >> 20):
                out.write(block)
            out.write(bytes(1024))
        box.before = snapshot(box.root, box.target)
        assert path.stat().st_size < 2 << 20
        done = subprocess.run(
            [sys.executable, "-c", _BOMB_READER, str(path), str(box.target / "x")],
            capture_output=True,
            text=True,
            timeout=HANG_SECONDS * 4,
            cwd=Path(__file__).parent.parent,
        )
        assert done.returncode == 0, done.stderr
        assert "refused:" in done.stdout and "more than 1048576 bytes" in done.stdout
        content, peak_kib = map(int, done.stdout.split()[-2:])
        assert content == size
        assert peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB reading a 256 MiB bomb"
        assert sum(f.stat().st_size for f in (box.target / "x").rglob("*") if f.is_file()) == 0


# -- what the fuzzing found, kept as plain regression tests ------------------------------------


def _tar_gz(members: list[tarfile.TarInfo]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(bytes(info.size)))
    return gzip.compress(raw.getvalue())


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize("name", ["x" * 256, "a/" + "é" * 128, "/".join(["d" * 200] * 21)])
def test_a_name_too_long_to_create_is_refused_before_writing(sandbox: Path, name: str) -> None:
    """Found by the fuzzing: ENAMETOOLONG escaped extract_archive as a bare OSError."""
    with boxed(sandbox) as box:
        archive = box.archive(_tar_gz([tarfile.TarInfo("ok"), tarfile.TarInfo(name)]))
        with pytest.raises(VerifyError, match="name too long"):
            refuse_unsafe_members(archive)
        with pytest.raises(VerifyError, match="name too long"):
            extract_archive(archive, box.target / "t")


def test_a_refused_link_leaves_no_earlier_link_leading_out(sandbox: Path) -> None:
    """y -> z/.. looks inside; with z -> . it is the target's parent. When a later link is
    refused, y must not stay behind (a write through it would land outside)."""
    with boxed(sandbox) as box:
        archive = box.archive(_tar_gz([_link("y", "z/.."), _link("z", "."), _link("w", "../out")]))
        with pytest.raises(VerifyError, match="w: link pointing outside"):
            extract_archive(archive, box.target / "t")
        assert not os.path.lexists(box.target / "t" / "y")


def test_a_manifest_bomb_is_refused_before_it_is_read(sandbox: Path) -> None:
    """Found by the bomb test: 100 MiB of spaces as MANIFEST.json (a 0.5 MB file) was read
    into memory whole by the scan (test-restore, monitor), then decoded again by the JSON
    parser: 660 MB peak RSS for 200 MiB. A manifest that large must be backed by members."""
    with boxed(sandbox) as box:
        path = box.deep / "full_backup_20260101_000000.tar.gz"
        size = 100 << 20
        with gzip.open(path, "wb", compresslevel=1) as out:
            info = tarfile.TarInfo("full_backup_20260101_000000/MANIFEST.json")
            info.size = size
            out.write(info.tobuf(tarfile.PAX_FORMAT))
            block = b" " * (1 << 20)
            for _ in range(size >> 20):
                out.write(block)
            out.write(bytes(1024))
        box.before = snapshot(box.root, box.target)
        with pytest.raises(VerifyError, match="MANIFEST.json is implausibly large"):
            scan_archive(path)
        integrity, scan = check_archive_integrity(path)
        assert not integrity.passed and scan is None
        with pytest.raises(VerifyError, match="MANIFEST.json is implausibly large"):
            stage_archive(path, box.target / "staging")  # restore-all's reader
