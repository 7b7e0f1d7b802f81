"""Extracting a tar archive without letting any member land outside the target folder.

Refused, with the member named: absolute paths, `..` anywhere in a path, devices,
FIFOs and other special files, hard links to anything but a file already extracted,
a member whose folder is not a real folder, names too long to create, and the
same name twice. Symbolic links
pointing out of the target are refused too, or, with `skip_external_links`, recorded and
not created (a backup may hold such links legitimately; test-restore compares them with
the manifest without creating them).

Writes never go through a link: every link is created after all files and folders,
files are opened with O_NOFOLLOW|O_EXCL, and a final pass resolves every created link
and removes any that reaches out (a chain of inside-looking links can). Each file is
hashed while it is written, so checking it against a manifest needs no second read.
Folder modes are applied last, deepest first, so a read-only folder still gets its
content; setuid, setgid and sticky bits are dropped.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import os
import posixpath
import sqlite3
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import zstandard

from tasks.compress import BLOCK_SIZE, open_decompressed
from tasks.entry_store import decode_text, encode_text, open_scratch_database, scratch_writes
from tasks.errors import VerifyError
from tasks.verify import sniff_compression


class UnsafeArchiveError(VerifyError):
    """A member would land outside the target, or is something that is never extracted."""


# Linux limits, in bytes: a longer name can never be created, so it is refused up front
# (in the header pass too) rather than failing half-way through the extraction.
NAME_MAX = 255
PATH_MAX = 4096
# What the filesystem says of a name it cannot hold (a backstop for the checks above).
_UNUSABLE_NAME = (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL)


def _length(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def _shorten(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:60]) + f"… ({len(text)} characters)"


@dataclass(frozen=True)
class ExtractedFile:
    size: int
    sha256: str


class ExtractedFiles:
    """name -> ExtractedFile for every file written, kept on disk (a temporary SQLite
    database): an archive of a million files costs no more memory than one of ten."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.execute(
            "CREATE TABLE files (name BLOB PRIMARY KEY, size INTEGER, sha256 TEXT) WITHOUT ROWID"
        )
        self._count = 0

    def __setitem__(self, name: str, value: ExtractedFile) -> None:
        with scratch_writes():
            self._db.execute(
                "INSERT INTO files (name, size, sha256) VALUES (?, ?, ?)",
                (encode_text(name), value.size, value.sha256),
            )
        self._count += 1

    def get(self, name: str) -> ExtractedFile | None:
        row = self._db.execute(
            "SELECT size, sha256 FROM files WHERE name = ?", (encode_text(name),)
        ).fetchone()
        return None if row is None else ExtractedFile(row[0], row[1])

    def __getitem__(self, name: str) -> ExtractedFile:
        found = self.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        for (name,) in self._db.execute("SELECT name FROM files"):
            yield decode_text(name)

    def items(self) -> Iterator[tuple[str, ExtractedFile]]:
        for name, size, sha256 in self._db.execute("SELECT name, size, sha256 FROM files"):
            yield decode_text(name), ExtractedFile(size, sha256)


class NameSet:
    """A set of names kept on disk, in a table of its own (folders: one per upload is common)."""

    def __init__(self, db: sqlite3.Connection, table: str) -> None:
        self._db = db
        self._table = table
        self._db.execute(f"CREATE TABLE {table} (name BLOB PRIMARY KEY) WITHOUT ROWID")
        self._count = 0

    def add(self, name: str) -> None:
        with scratch_writes():
            cursor = self._db.execute(
                f"INSERT OR IGNORE INTO {self._table} (name) VALUES (?)", (encode_text(name),)
            )
        self._count += cursor.rowcount

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        found = self._db.execute(
            f"SELECT 1 FROM {self._table} WHERE name = ?", (encode_text(name),)
        ).fetchone()
        return found is not None

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        """In byte order of the names (sorted, for names that are valid UTF-8)."""
        for (name,) in self._db.execute(f"SELECT name FROM {self._table}"):
            yield decode_text(name)


@dataclass
class Extraction:
    dest: Path
    files: ExtractedFiles  # name -> what was written
    dirs: NameSet  # folders that were members of the archive
    symlinks: dict[str, str] = field(default_factory=dict)  # created: name -> target
    external_links: dict[str, str] = field(default_factory=dict)  # not created
    bytes: int = 0

    def link_target(self, name: str) -> str | None:
        return self.symlinks.get(name, self.external_links.get(name))


def new_extraction(dest: Path) -> tuple[Extraction, sqlite3.Connection]:
    """An empty record of an extraction into `dest`, and the scratch database behind it."""
    db = open_scratch_database()
    return Extraction(dest=dest, files=ExtractedFiles(db), dirs=NameSet(db, "dirs")), db


def clean_name(raw: str) -> str:
    """The member's relative name ("a/b"), or UnsafeArchiveError if it would climb out."""
    if "\x00" in raw:
        raise UnsafeArchiveError(f"{raw!r}: NUL in a member name refused")
    if raw.startswith("/"):
        raise UnsafeArchiveError(f"{raw}: absolute path refused")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{raw}: '..' in a member name refused")
    if _length(raw) >= PATH_MAX or any(_length(p) > NAME_MAX for p in parts):
        raise UnsafeArchiveError(f"{_shorten(raw)}: name too long to extract; refused")
    return "/".join(parts)


def check_link_target(name: str, target: str) -> None:
    """A link target the filesystem can hold (where it points is checked separately)."""
    if "\x00" in target or _length(target) >= PATH_MAX:
        raise UnsafeArchiveError(
            f"{name}: link target {_shorten(target)} cannot be created; refused"
        )


def _inside(dest: str, path: str) -> bool:
    return path == dest or path.startswith(dest + os.sep)


class _Extractor:
    def __init__(
        self,
        dest: Path,
        skip_external_links: bool,
        max_bytes: int | None,
        preserve_owner: bool,
    ) -> None:
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root = os.path.realpath(dest)
        self.result, self.db = new_extraction(Path(self.root))
        self.skip_external_links = skip_external_links
        self.max_bytes = max_bytes
        self.preserve_owner = preserve_owner
        # Folders known to be real (made or checked here), on disk like the rest; the
        # last one is remembered, as the files of one folder come one after another.
        self.real_dirs = NameSet(self.db, "real_dirs")
        self.real_dirs.add("")  # the target itself
        self.last_real_dir = ""
        # Folder modes and times, applied last (deepest first) so content can be written.
        self.db.execute(
            "CREATE TABLE dir_meta (name BLOB, depth INTEGER, mode INTEGER, mtime INTEGER,"
            " uid INTEGER, gid INTEGER)"
        )
        self.links: list[tuple[str, tarfile.TarInfo]] = []
        self.link_names: set[str] = set()  # links are made last; their names are known now

    def path(self, name: str) -> str:
        return os.path.join(self.root, name) if name else self.root

    def ensure_dir(self, name: str, member: str) -> None:
        """Make `name` (and its parents) a real folder; refuse anything else in the way."""
        if name == self.last_real_dir or name in self.real_dirs:
            self.last_real_dir = name
            return
        parts = name.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix in self.real_dirs:
                continue
            path = self.path(prefix)
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise UnsafeArchiveError(
                        f"{member}: {prefix} is in the way and is not a folder"
                    ) from None
            self.real_dirs.add(prefix)
        self.last_real_dir = name

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = clean_name(member.name)
        if not name:
            if member.isdir():
                return  # "./": the target folder itself
            raise UnsafeArchiveError(f"{member.name!r}: a member without a name refused")
        # Every name seen so far is a folder, a file written, or a link still to make.
        if (
            name in self.link_names
            or (name in self.result.dirs and not member.isdir())
            or name in self.result.files
        ):
            raise UnsafeArchiveError(f"{name}: appears twice in the archive; refused")
        parent = name.rsplit("/", 1)[0] if "/" in name else ""
        if member.isdir():
            self.ensure_dir(name, name)
            self.result.dirs.add(name)
            with scratch_writes():
                self.db.execute(
                    "INSERT INTO dir_meta (name, depth, mode, mtime, uid, gid)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        encode_text(name),
                        name.count("/"),
                        member.mode,
                        member.mtime,
                        member.uid,
                        member.gid,
                    ),
                )
        elif member.isfile():
            self.ensure_dir(parent, name)
            self.write_file(tar, member, name)
        elif member.issym():
            check_link_target(name, member.linkname)
            self.links.append((name, member))
            self.link_names.add(name)
        elif member.islnk():
            self.ensure_dir(parent, name)
            self.hard_link(member, name)
        else:
            raise UnsafeArchiveError(
                f"{name}: {_kind(member)} refused (only files, folders and links are extracted)"
            )

    def write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> None:
        if self.max_bytes is not None and self.result.bytes + member.size > self.max_bytes:
            raise UnsafeArchiveError(
                f"{name}: the archive holds more than {self.max_bytes} bytes; extraction stopped"
            )
        source = tar.extractfile(member)
        assert source is not None
        digest = hashlib.sha256()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path(name), flags, 0o600)
        except (FileExistsError, IsADirectoryError):
            raise UnsafeArchiveError(f"{name}: something is already there; refused") from None
        try:
            with os.fdopen(fd, "wb", closefd=False) as out:
                while chunk := source.read(BLOCK_SIZE):
                    digest.update(chunk)
                    out.write(chunk)
            self._apply_meta(fd, member, is_dir=False)
        finally:
            os.close(fd)
        self.result.files[name] = ExtractedFile(member.size, digest.hexdigest())
        self.result.bytes += member.size

    def hard_link(self, member: tarfile.TarInfo, name: str) -> None:
        try:
            target = clean_name(member.linkname)
        except UnsafeArchiveError:
            target = ""
        linked = self.result.files.get(target) if target else None
        if linked is None:
            raise UnsafeArchiveError(
                f"{name}: hard link to {member.linkname}, which is not a file extracted "
                "before it; refused"
            )
        os.link(self.path(target), self.path(name), follow_symlinks=False)
        self.result.files[name] = linked

    def _external(self, name: str, target: str) -> None:
        if not self.skip_external_links:
            raise UnsafeArchiveError(f"{name}: link pointing outside the target ({target}) refused")
        self.result.external_links[name] = target

    def make_links(self) -> None:
        try:
            self._create_links()
        finally:
            # Even when a link is refused half-way, none already made may stay leading out.
            escaped = self._remove_links_leading_out()
        for name, target in escaped:
            self._external(name, target)

    def _create_links(self) -> None:
        for name, member in self.links:
            target = member.linkname
            joined = os.path.normpath(os.path.join(os.path.dirname(name), target))
            if os.path.isabs(target) or joined == ".." or joined.startswith("../"):
                self._external(name, target)
                continue
            parent = name.rsplit("/", 1)[0] if "/" in name else ""
            self.ensure_dir(parent, name)
            try:
                os.symlink(target, self.path(name))
            except FileExistsError:
                raise UnsafeArchiveError(f"{name}: something is already there; refused") from None
            if self.preserve_owner:
                with contextlib.suppress(OSError):
                    os.lchown(self.path(name), member.uid, member.gid)
            self.result.symlinks[name] = target

    def _remove_links_leading_out(self) -> list[tuple[str, str]]:
        """A chain of links that each look inside can still resolve outside: check them all."""
        escaped = []
        for name, target in list(self.result.symlinks.items()):
            if not _inside(self.root, os.path.realpath(self.path(name))):
                os.unlink(self.path(name))
                del self.result.symlinks[name]
                escaped.append((name, target))
        return escaped

    def finish_dirs(self) -> None:
        rows = self.db.execute(
            "SELECT name, mode, mtime, uid, gid FROM dir_meta ORDER BY depth DESC, rowid"
        )
        for raw_name, mode, mtime, uid, gid in rows:
            name = decode_text(raw_name)
            member = tarfile.TarInfo(name)
            member.mode, member.mtime, member.uid, member.gid = mode, mtime, uid, gid
            fd = os.open(self.path(name), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                self._apply_meta(fd, member, is_dir=True)
            finally:
                os.close(fd)

    def _apply_meta(self, fd: int, member: tarfile.TarInfo, is_dir: bool) -> None:
        if self.preserve_owner:
            with contextlib.suppress(OSError):
                os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, member.mode & 0o777)
        with contextlib.suppress(OSError, OverflowError, ValueError):
            os.utime(fd, (member.mtime, member.mtime))


def _kind(member: tarfile.TarInfo) -> str:
    if member.ischr() or member.isblk():
        return "device"
    if member.isfifo():
        return "FIFO"
    return f"member type {member.type!r}"


def extract_stream(
    stream: BinaryIO,
    dest: Path,
    *,
    skip_external_links: bool = False,
    max_bytes: int | None = None,
    preserve_owner: bool = False,
) -> Extraction:
    """Extract the uncompressed tar read from `stream` into `dest` (new or empty)."""
    extractor = _Extractor(dest, skip_external_links, max_bytes, preserve_owner)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            while (member := tar.next()) is not None:
                extractor.add(tar, member)
                tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every header; we need none
        extractor.make_links()
        extractor.finish_dirs()
    except OSError as exc:
        if exc.errno not in _UNUSABLE_NAME:
            raise  # disk full, permissions: the caller's to report
        raise UnsafeArchiveError(
            f"a member cannot be created here ({exc.strerror}): {_shorten(str(exc.filename))}"
        ) from None
    return extractor.result


@contextlib.contextmanager
def open_archive(path: Path) -> Iterator[BinaryIO]:
    """The uncompressed stream of a .tar.gz / .tar.zst file."""
    compression = sniff_compression(path)
    with open(path, "rb") as raw:
        yield open_decompressed(io.BufferedReader(raw, BLOCK_SIZE), compression)


def extract_archive(
    path: Path,
    dest: Path,
    *,
    skip_external_links: bool = False,
    max_bytes: int | None = None,
    preserve_owner: bool = False,
) -> Extraction:
    """Extract a compressed tar file; damage or an unsafe member is a VerifyError."""
    try:
        with open_archive(path) as stream:
            return extract_stream(
                stream,
                dest,
                skip_external_links=skip_external_links,
                max_bytes=max_bytes,
                preserve_owner=preserve_owner,
            )
    except (EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError) as exc:
        raise VerifyError(f"{path.name}: damaged or truncated archive ({exc})") from None
    except tarfile.TarError as exc:
        raise VerifyError(f"{path.name}: not a readable tar archive ({exc})") from None


def refuse_unsafe_members(path: Path) -> int:
    """Read every header of a compressed tar and refuse it if any member is unsafe.

    A pass that writes nothing, for callers that must refuse "before anything is
    written" (restore-all): absolute names, `..`, devices and other special files, hard
    links to outside names, and symbolic links whose target leaves the archive's tree.
    The extraction still applies every check again. Returns the number of members.
    """
    count = 0
    try:
        with open_archive(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            while (member := tar.next()) is not None:
                count += 1
                name = clean_name(member.name)
                if member.issym():
                    target = member.linkname
                    check_link_target(name, target)
                    joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
                    if target.startswith("/") or joined == ".." or joined.startswith("../"):
                        raise UnsafeArchiveError(
                            f"{name}: link pointing out of the archive ({target}) refused"
                        )
                elif member.islnk():
                    clean_name(member.linkname)
                elif not (member.isfile() or member.isdir()):
                    raise UnsafeArchiveError(
                        f"{name}: {_kind(member)} refused (only files, folders and links are extracted)"
                    )
                tar.members.clear()  # type: ignore[attr-defined]
    except (EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError) as exc:
        raise VerifyError(f"{path.name}: damaged or truncated archive ({exc})") from None
    except tarfile.TarError as exc:
        raise VerifyError(f"{path.name}: not a readable tar archive ({exc})") from None
    return count


def extract_safely(archive: Path, dest: Path, *, preserve_owner: bool = False) -> list[str]:
    """Extract `archive` into `dest`, refusing every unsafe member; the names extracted.

    Links pointing out of `dest` are refused here (SPEC.md, Restore); callers that
    must keep such links of their own backups use `extract_archive(...,
    skip_external_links=True)` and read `Extraction.external_links`.
    """
    extraction = extract_archive(archive, dest, preserve_owner=preserve_owner)
    return sorted({*extraction.files, *extraction.dirs, *extraction.symlinks})
