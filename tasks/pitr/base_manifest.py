"""Reading a base backup archive in one pass, checked against its `backup_manifest`.

What `pg_verifybackup` does for a plain-format backup (PostgreSQL 15's cannot read a tar),
done while the `.tar.gz` streams: the archive's own sha256 against its sidecar; the
manifest's checksum over its own text; every file the manifest lists present, with its
size and SHA256; no file that it does not list; the WAL range it names. `backup_label`
gives the start WAL file, time and timeline.

With `extract_to`, the same pass writes the files into an empty folder — regular files
and folders only (a base backup holds nothing else), created with O_EXCL|O_NOFOLLOW, so
nothing can land outside it — and each file is checked as it was written, not read again.
Memory: one block at a time, plus the manifest text and one (size, sha256) pair per file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import posixpath
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from tasks.core.errors import VerifyError
from tasks.pitr.segments import parse_lsn
from tasks.stream.compress import BLOCK_SIZE, HashingReader, open_decompressed

MANIFEST = "backup_manifest"
LABEL = "backup_label"
_CHECKSUM_KEY = b'"Manifest-Checksum"'
_KEEP_IN_MEMORY = {MANIFEST, LABEL}
_LABEL_WAL = re.compile(
    r"^START WAL LOCATION: (?P<lsn>[0-9A-F]+/[0-9A-F]+) \(file (?P<file>[0-9A-F]{24})\)$", re.M
)
_LABEL_TIME = re.compile(
    r"^START TIME: (?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?P<tz>\S+)$", re.M
)
_LABEL_TIMELINE = re.compile(r"^START TIMELINE: (?P<tli>\d+)$", re.M)
_LABEL_LABEL = re.compile(r"^LABEL: (?P<label>.*)$", re.M)


@dataclass(frozen=True)
class BaseContents:
    """What a checked base backup holds."""

    files: int
    content_bytes: int
    timeline: int
    start_lsn: int
    end_lsn: int
    start_wal: str
    start_time: datetime | None  # backup_label's START TIME when the server wrote it in UTC
    label: str
    sha256: str  # of the compressed archive
    manifest_checksum: str
    wal_ranges: list[tuple[int, int, int]] = field(default_factory=list)  # (tli, start, end)


class _Tree:
    """Writes members into an empty folder: files and folders only, never through a link."""

    def __init__(self, root: Path, owner: tuple[int, int] | None) -> None:
        self.root = root
        self.owner = owner
        self.dir_modes: list[tuple[Path, int]] = []

    def folder(self, name: str, mode: int) -> None:
        path = self.root / name
        self._parents(path)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if path.is_symlink() or not path.is_dir():
                raise VerifyError(f"base backup: {name} is in the archive twice") from None
        self._own(path)
        self.dir_modes.append((path, (mode & 0o750) | 0o700))

    def open_file(self, name: str, mode: int) -> BinaryIO:
        path = self.root / name
        self._parents(path)
        try:
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, (mode & 0o640) | 0o600
            )
        except FileExistsError:
            raise VerifyError(f"base backup: {name} is in the archive twice") from None
        if self.owner is not None:
            os.fchown(fd, *self.owner)
        return os.fdopen(fd, "wb", buffering=BLOCK_SIZE)

    def _parents(self, path: Path) -> None:
        parent = path.parent
        if parent == self.root or parent.is_dir():
            return
        for folder in reversed([parent, *parent.parents]):
            if folder == self.root or self.root not in folder.parents:
                continue
            if not folder.is_dir():
                os.mkdir(folder, 0o700)
                self._own(folder)

    def _own(self, path: Path) -> None:
        if self.owner is not None:
            os.lchown(path, *self.owner)

    def finish(self) -> None:
        for path, mode in sorted(self.dir_modes, key=lambda item: -len(item[0].parts)):
            os.chmod(path, mode)


def _member_name(member: tarfile.TarInfo) -> str:
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise VerifyError(f"base backup: unsafe member name {member.name!r}; refused")
    return posixpath.normpath(name)


def read_base_archive(
    path: Path,
    expected_sha256: str | None,
    *,
    extract_to: Path | None = None,
    owner: tuple[int, int] | None = None,
) -> BaseContents:
    """Read (and with `extract_to`, write out) the base backup at `path`, checked throughout.

    Raises VerifyError naming the first problem; the caller removes what was written.
    """
    seen: dict[str, tuple[int, str]] = {}
    kept: dict[str, bytes] = {}
    tree = _Tree(extract_to, owner) if extract_to is not None else None
    try:
        with open(path, "rb") as raw:
            hashed = HashingReader(raw)
            compression = "zstd" if path.name.endswith(".zst") else "gzip"
            stream = open_decompressed(io.BufferedReader(hashed, BLOCK_SIZE), compression)
            with tarfile.open(fileobj=stream, mode="r|") as archive:
                for member in archive:
                    _take_member(archive, member, seen, kept, tree)
            hashed.drain()
    except VerifyError:
        raise
    except (EOFError, tarfile.TarError, zlib.error, gzip.BadGzipFile, zstandard.ZstdError) as exc:
        raise VerifyError(f"{path.name}: damaged or truncated base backup ({exc})") from None
    except OSError as exc:
        if (
            extract_to is not None
            and exc.filename
            and str(exc.filename).startswith(str(extract_to))
        ):
            raise
        raise VerifyError(f"{path.name}: cannot be read ({exc.strerror or exc})") from None
    if tree is not None:
        tree.finish()
    actual = hashed.sha256.hexdigest()
    if expected_sha256 is not None and actual != expected_sha256:
        raise VerifyError(
            f"{path.name}: sha256 does not match its sidecar (expected {expected_sha256[:12]}…, "
            f"found {actual[:12]}…) — the base backup is damaged"
        )
    return _check_against_manifest(path.name, seen, kept, actual)


def _take_member(
    archive: tarfile.TarFile,
    member: tarfile.TarInfo,
    seen: dict[str, tuple[int, str]],
    kept: dict[str, bytes],
    tree: _Tree | None,
) -> None:
    name = _member_name(member)
    if member.isdir():
        if tree is not None:
            tree.folder(name, member.mode)
        return
    if not member.isfile():
        raise VerifyError(
            f"base backup: {name} is a {'link' if member.issym() or member.islnk() else 'special file'}"
            "; a pg_basebackup archive (one tablespace, WAL in the archive) holds only files and "
            "folders — refused"
        )
    if name in seen:
        raise VerifyError(f"base backup: {name} is in the archive twice")
    source = archive.extractfile(member)
    assert source is not None
    digest = hashlib.sha256()
    size = 0
    keep = io.BytesIO() if name in _KEEP_IN_MEMORY else None
    out = tree.open_file(name, member.mode) if tree is not None else None
    try:
        while chunk := source.read(BLOCK_SIZE):
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
            if keep is not None:
                keep.write(chunk)
    finally:
        if out is not None:
            out.close()
    if size != member.size:
        raise VerifyError(f"base backup: {name} is truncated")
    seen[name] = (size, digest.hexdigest())
    if keep is not None:
        kept[name] = keep.getvalue()


def _check_against_manifest(
    archive_name: str, seen: dict[str, tuple[int, str]], kept: dict[str, bytes], sha256: str
) -> BaseContents:
    text = kept.get(MANIFEST)
    if text is None:
        raise VerifyError(f"{archive_name}: no backup_manifest inside; not a pg_basebackup archive")
    cut = text.rfind(_CHECKSUM_KEY)
    try:
        manifest: dict[str, Any] = json.loads(text)
        claimed = str(manifest["Manifest-Checksum"]).lower()
        entries = manifest["Files"]
        ranges = manifest["WAL-Ranges"]
    except (ValueError, KeyError, TypeError):
        raise VerifyError(f"{archive_name}: backup_manifest is malformed") from None
    if cut < 0 or hashlib.sha256(text[:cut]).hexdigest() != claimed:
        raise VerifyError(f"{archive_name}: backup_manifest does not match its own checksum")
    listed: set[str] = set()
    total = 0
    for entry in entries:
        name = _manifest_path(entry, archive_name)
        listed.add(name)
        found = seen.get(name)
        if found is None:
            raise VerifyError(f"{archive_name}: {name} is in the manifest but not in the archive")
        size, digest = found
        if size != int(entry.get("Size", -1)):
            raise VerifyError(
                f"{archive_name}: {name} has {size} bytes, the manifest says {entry.get('Size')}"
            )
        algorithm = str(entry.get("Checksum-Algorithm", "NONE")).upper()
        if algorithm == "SHA256" and digest != str(entry.get("Checksum", "")).lower():
            raise VerifyError(f"{archive_name}: {name} does not match its manifest checksum")
        total += size
    extra = sorted(set(seen) - listed - {MANIFEST})
    if extra:
        raise VerifyError(f"{archive_name}: {extra[0]} is in the archive but not in the manifest")
    try:
        wal_ranges = [
            (int(r["Timeline"]), parse_lsn(str(r["Start-LSN"])), parse_lsn(str(r["End-LSN"])))
            for r in ranges
        ]
    except (KeyError, TypeError, ValueError):
        raise VerifyError(f"{archive_name}: backup_manifest has no valid WAL-Ranges") from None
    if not wal_ranges:
        raise VerifyError(f"{archive_name}: backup_manifest names no WAL range")
    label = kept.get(LABEL, b"").decode("utf-8", "replace")
    wal = _LABEL_WAL.search(label)
    timeline = _LABEL_TIMELINE.search(label)
    if wal is None or timeline is None:
        raise VerifyError(f"{archive_name}: backup_label is missing or malformed")
    start_lsn = parse_lsn(wal.group("lsn"))
    if start_lsn != wal_ranges[0][1]:
        raise VerifyError(f"{archive_name}: backup_label and backup_manifest disagree on the start")
    when = _LABEL_TIME.search(label)
    start_time = None
    if when is not None and when.group("tz") in ("UTC", "GMT"):
        start_time = datetime.strptime(when.group("time"), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    label_line = _LABEL_LABEL.search(label)
    return BaseContents(
        files=len(listed),
        content_bytes=total,
        timeline=int(timeline.group("tli")),
        start_lsn=start_lsn,
        end_lsn=wal_ranges[-1][2],
        start_wal=wal.group("file"),
        start_time=start_time,
        label=label_line.group("label") if label_line else "",
        sha256=sha256,
        manifest_checksum=claimed,
        wal_ranges=wal_ranges,
    )


def _manifest_path(entry: dict[str, Any], archive_name: str) -> str:
    if "Path" in entry:
        return posixpath.normpath(str(entry["Path"]))
    encoded = entry.get("Encoded-Path")  # a name that is not valid UTF-8, hex-encoded
    try:
        return posixpath.normpath(bytes.fromhex(str(encoded)).decode("utf-8", "surrogateescape"))
    except ValueError:
        raise VerifyError(f"{archive_name}: backup_manifest has a bad file entry") from None
