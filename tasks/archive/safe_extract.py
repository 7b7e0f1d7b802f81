"""Extracting a tar archive without letting any member land outside the target folder.

Refused, with the member named: absolute paths, `..` anywhere in a path, devices,
FIFOs and other special files, hard links to anything but a file extracted before them,
a member whose path goes through a link (or whose folder is not a real folder), names
too long to create, and the same name twice (`MemberRules`, shared by the header pass
and the extraction, so both refuse the same archives).

Symbolic links are decided once everything else is in, by a `LinkRule`: a full backup's
rule creates exactly the links its manifest records, with the recorded target wherever
it points (absolute, leading out, dangling) and refuses every other one. Without a rule,
links pointing out of the target are refused, or, with `skip_external_links`, recorded
and not created.

Writes never go through a link: every link is created after all files and folders,
files are opened with O_NOFOLLOW|O_EXCL, no member may lie below a link, and (without a
rule) a final pass resolves every created link and removes any that reaches out (a chain
of inside-looking links can). Each file is hashed while it is written, and its inode
noted, so checking it against a manifest needs no second read. Folder modes are applied
last, deepest first, so a read-only folder still gets its content; setuid, setgid and
sticky bits are dropped.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import zstandard

from tasks.archive.manifest.entry_store import (
    decode_text,
    encode_text,
    open_scratch_database,
    scratch_writes,
)
from tasks.core.errors import VerifyError
from tasks.stream.compress import BLOCK_SIZE, open_decompressed, sniff_compression


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
    inode: int = 0  # of the file written (a hard link: its target's)
    hardlink: str | None = None  # a hard-link member: the earlier member it links to


class ExtractedFiles:
    """name -> ExtractedFile for every file written, kept on disk (a temporary SQLite
    database): an archive of a million files costs no more memory than one of ten."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        with scratch_writes():
            self._db.execute(
                "CREATE TABLE files (name BLOB PRIMARY KEY, size INTEGER, sha256 TEXT,"
                " inode INTEGER, hardlink BLOB) WITHOUT ROWID"
            )
        self._count = 0

    def __setitem__(self, name: str, value: ExtractedFile) -> None:
        hardlink = None if value.hardlink is None else encode_text(value.hardlink)
        with scratch_writes():
            self._db.execute(
                "INSERT INTO files (name, size, sha256, inode, hardlink) VALUES (?, ?, ?, ?, ?)",
                (encode_text(name), value.size, value.sha256, value.inode, hardlink),
            )
        self._count += 1

    def get(self, name: str) -> ExtractedFile | None:
        row = self._db.execute(
            "SELECT size, sha256, inode, hardlink FROM files WHERE name = ?",
            (encode_text(name),),
        ).fetchone()
        if row is None:
            return None
        size, sha256, inode, hardlink = row
        return ExtractedFile(size, sha256, inode, None if hardlink is None else decode_text(hardlink))

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
        rows = self._db.execute("SELECT name, size, sha256, inode, hardlink FROM files")
        for name, size, sha256, inode, hardlink in rows:
            link = None if hardlink is None else decode_text(hardlink)
            yield decode_text(name), ExtractedFile(size, sha256, inode, link)


class NameSet:
    """A set of names kept on disk, in a table of its own (folders: one per upload is common)."""

    def __init__(self, db: sqlite3.Connection, table: str) -> None:
        self._db = db
        self._table = table
        with scratch_writes():
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
    external_links: dict[str, str] = field(default_factory=dict)  # not created (withheld)
    bytes: int = 0
    members: int = 0
    last_members: list[str] = field(default_factory=list)  # the last two member names
    top_folders: set[str] = field(default_factory=set)  # the first few names at the top

    def note_member(self, name: str) -> None:
        self.members += 1
        self.last_members = [*self.last_members[-1:], name]
        if len(self.top_folders) <= 3:  # enough to tell one from several, and name some
            self.top_folders.add(name.split("/", 1)[0])

    def link_target(self, name: str) -> str | None:
        return self.symlinks.get(name, self.external_links.get(name))


class Withheld:
    """A link verdict: not created and not refused here (recorded in `external_links`);
    the caller refuses the archive on other grounds (a full backup without a manifest)."""


WITHHELD = Withheld()

# (member name, link target) -> None: create the link exactly so; WITHHELD: leave it
# out; a string: why the link, and so the archive, is refused.
LinkRule = Callable[[str, str], "str | Withheld | None"]


class LinkPolicy(Protocol):
    """Decides an archive's symbolic links from what the archive itself says.

    The header pass offers it the content of regular file members it asks for (a full
    backup's MANIFEST.json); the extraction lets it read what was extracted. Either way
    `rule` then judges every link, before any link is created.
    """

    def wants(self, name: str, size: int, members_seen: int) -> bool:
        """Shown every regular file member (name, size, members so far): whether the
        header pass is to pass its content to `read` (the extraction reads nothing)."""
        ...

    def read(self, name: str, content: BinaryIO) -> None:
        """Header pass: the content of a member it wanted (read it now or never)."""
        ...

    def rule(self, extraction: Extraction | None) -> LinkRule:
        """The rule: from what the header pass read (None), or from the extracted tree."""
        ...


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


def _parent(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else ""


class MemberRules:
    """What an archive's member names may be, member after member (all names on disk).

    One name, one member (a folder may repeat); nothing below a link or below a file; a
    hard link only to a file that came before it. The header pass and the extraction
    both ask here, so they refuse exactly the same archives.
    """

    FILE, DIR_MEMBER, FOLDER, LINK = range(4)  # FILE: files and hard links

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        with scratch_writes():
            # One table (scratch space costs a page per table), one lookup per name.
            db.execute(
                "CREATE TABLE member_names (name BLOB, kind INTEGER, PRIMARY KEY (name, kind))"
                " WITHOUT ROWID"
            )
        self._last_folder = ""

    def _kinds(self, name: str) -> set[int]:
        rows = self._db.execute(
            "SELECT kind FROM member_names WHERE name = ?", (encode_text(name),)
        )
        return {kind for (kind,) in rows}

    def _note(self, name: str, kind: int) -> None:
        with scratch_writes():
            self._db.execute(
                "INSERT OR IGNORE INTO member_names (name, kind) VALUES (?, ?)",
                (encode_text(name), kind),
            )

    def admit(self, member: tarfile.TarInfo, name: str) -> None:
        """Refuse `member` (named `name`, already cleaned) if it breaks a rule; note it."""
        kinds = self._kinds(name)
        twice = self.LINK in kinds or self.FILE in kinds
        if twice or (self.DIR_MEMBER in kinds and not member.isdir()):
            raise UnsafeArchiveError(f"{name}: appears twice in the archive; refused")
        if member.isdir():
            self._folders(name, name, known=self.FOLDER in kinds)
            self._note(name, self.DIR_MEMBER)
            return
        if self.FOLDER in kinds:
            if member.issym():
                raise UnsafeArchiveError(
                    f"{name}: a link where other members lie below (a path through a link) refused"
                )
            raise UnsafeArchiveError(f"{name}: something is already there; refused")
        self._folders(_parent(name), name)
        if member.issym():
            self._note(name, self.LINK)
        elif member.isfile():
            self._note(name, self.FILE)
        elif member.islnk():
            target = _hard_link_target(member)
            if self.FILE not in self._kinds(target):
                raise UnsafeArchiveError(
                    f"{name}: hard link to {member.linkname}, which is not a file extracted "
                    "before it; refused"
                )
            self._note(name, self.FILE)
        else:
            raise UnsafeArchiveError(
                f"{name}: {_kind(member)} refused (only files, folders and links are extracted)"
            )

    def _folders(self, folder: str, member: str, known: bool = False) -> None:
        """`folder` and its parents are folders: none may be a link or a file."""
        if folder == self._last_folder or not folder or known:
            self._last_folder = folder
            return
        parts = folder.split("/")
        new: list[str] = []
        for depth in range(len(parts), 0, -1):
            prefix = "/".join(parts[:depth])
            kinds = self._kinds(prefix)
            if self.FOLDER in kinds:
                break  # it and its parents were checked when it was added
            if self.LINK in kinds:
                raise UnsafeArchiveError(f"{member}: a path through a link ({prefix}) refused")
            if self.FILE in kinds:
                raise UnsafeArchiveError(f"{member}: {prefix} is in the way and is not a folder")
            new.append(prefix)
        for prefix in new:
            self._note(prefix, self.FOLDER)
        self._last_folder = folder


def _hard_link_target(member: tarfile.TarInfo) -> str:
    try:
        target = clean_name(member.linkname)
    except UnsafeArchiveError:
        target = ""
    if not target:
        raise UnsafeArchiveError(
            f"{member.name}: hard link to {member.linkname}, which leads out of the archive; "
            "refused"
        )
    return target


class _Extractor:
    def __init__(
        self,
        dest: Path,
        skip_external_links: bool,
        max_bytes: int | None,
        preserve_owner: bool,
        links: LinkPolicy | None = None,
    ) -> None:
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.links = links
        self.root = os.path.realpath(dest)
        self.result, self.db = new_extraction(Path(self.root))
        self.rules = MemberRules(self.db)
        self.skip_external_links = skip_external_links
        self.max_bytes = max_bytes
        self.preserve_owner = preserve_owner
        # Folders known to be real (made or checked here), on disk like the rest; the
        # last one is remembered, as the files of one folder come one after another.
        self.real_dirs = NameSet(self.db, "real_dirs")
        self.real_dirs.add("")  # the target itself
        self.last_real_dir = ""
        with scratch_writes():
            # Folder modes and times, applied last (deepest first) so content can be written.
            self.db.execute(
                "CREATE TABLE dir_meta (name BLOB, depth INTEGER, mode INTEGER, mtime INTEGER,"
                " uid INTEGER, gid INTEGER)"
            )
            # Links, made last (in archive order) once the rule that judges them is known.
            self.db.execute(
                "CREATE TABLE links (name BLOB NOT NULL, target BLOB NOT NULL, uid INTEGER,"
                " gid INTEGER)"
            )

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
        self.rules.admit(member, name)  # twice, through a link, hard link targets, kinds
        self.result.note_member(name)
        if member.isfile() and self.links is not None:
            self.links.wants(name, member.size, self.result.members)  # it reads later
        parent = _parent(name)
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
            with scratch_writes():
                self.db.execute(
                    "INSERT INTO links (name, target, uid, gid) VALUES (?, ?, ?, ?)",
                    (encode_text(name), encode_text(member.linkname), member.uid, member.gid),
                )
        elif member.islnk():
            self.ensure_dir(parent, name)
            self.hard_link(member, name)

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
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        self.result.files[name] = ExtractedFile(member.size, digest.hexdigest(), inode)
        self.result.bytes += member.size

    def hard_link(self, member: tarfile.TarInfo, name: str) -> None:
        target = _hard_link_target(member)
        linked = self.result.files.get(target)
        if linked is None:
            raise UnsafeArchiveError(
                f"{name}: hard link to {member.linkname}, which is not a file extracted "
                "before it; refused"
            )
        try:
            os.link(self.path(target), self.path(name), follow_symlinks=False)
        except FileExistsError:
            raise UnsafeArchiveError(f"{name}: something is already there; refused") from None
        self.result.files[name] = ExtractedFile(linked.size, linked.sha256, linked.inode, target)

    def _external(self, name: str, target: str) -> None:
        if not self.skip_external_links:
            raise UnsafeArchiveError(f"{name}: link pointing outside the target ({target}) refused")
        self.result.external_links[name] = target

    def pending_links(self) -> Iterator[tuple[str, str, int, int]]:
        rows = self.db.execute("SELECT name, target, uid, gid FROM links ORDER BY rowid")
        for name, target, uid, gid in rows.fetchall():
            yield decode_text(name), decode_text(target), uid, gid

    def make_links(self, rule: LinkRule | None) -> None:
        """Create the links: each as `rule` allows it, or (no rule) only those staying inside."""
        if rule is not None:
            for name, target, uid, gid in self.pending_links():
                verdict = rule(name, target)
                if isinstance(verdict, Withheld):
                    self.result.external_links[name] = target
                elif verdict is not None:
                    raise UnsafeArchiveError(verdict)
                else:
                    self._symlink(name, target, uid, gid)
            return
        try:
            self._create_inside_links()
        finally:
            # Even when a link is refused half-way, none already made may stay leading out.
            escaped = self._remove_links_leading_out()
        for name, target in escaped:
            self._external(name, target)

    def _create_inside_links(self) -> None:
        for name, target, uid, gid in self.pending_links():
            joined = os.path.normpath(os.path.join(os.path.dirname(name), target))
            if os.path.isabs(target) or joined == ".." or joined.startswith("../"):
                self._external(name, target)
                continue
            self._symlink(name, target, uid, gid)

    def _symlink(self, name: str, target: str, uid: int, gid: int) -> None:
        """The link, exactly as recorded; what it points to is never looked at or followed."""
        self.ensure_dir(_parent(name), name)
        try:
            os.symlink(target, self.path(name))
        except FileExistsError:
            raise UnsafeArchiveError(f"{name}: something is already there; refused") from None
        if self.preserve_owner:
            with contextlib.suppress(OSError):
                os.lchown(self.path(name), uid, gid)
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
    links: LinkPolicy | None = None,
) -> Extraction:
    """Extract the uncompressed tar read from `stream` into `dest` (new or empty)."""
    extractor = _Extractor(dest, skip_external_links, max_bytes, preserve_owner, links)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            while (member := tar.next()) is not None:
                extractor.add(tar, member)
                tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every header; we need none
        extractor.make_links(links.rule(extractor.result) if links is not None else None)
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
    links: LinkPolicy | None = None,
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
                links=links,
            )
    except (EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError) as exc:
        raise VerifyError(f"{path.name}: damaged or truncated archive ({exc})") from None
    except tarfile.TarError as exc:
        raise VerifyError(f"{path.name}: not a readable tar archive ({exc})") from None


def _leads_out(name: str, target: str) -> bool:
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    return target.startswith("/") or joined == ".." or joined.startswith("../")


def refuse_unsafe_members(path: Path, links: LinkPolicy | None = None) -> int:
    """Read every header of a compressed tar and refuse it if any member is unsafe.

    A pass that writes nothing, for callers that must refuse "before anything is
    written" (restore-all): every rule of `MemberRules` (absolute names, `..`, special
    files, a name twice, a path through a link, hard links to anything but an earlier
    file), and links: judged by `links` once the whole archive was read, or (without a
    policy) refused when their target leaves the archive's tree. The extraction applies
    every check again. Returns the number of members.
    """
    count = 0
    db = open_scratch_database()
    try:
        rules = MemberRules(db)
        with scratch_writes():
            db.execute("CREATE TABLE links (name BLOB NOT NULL, target BLOB NOT NULL)")
        with open_archive(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            while (member := tar.next()) is not None:
                count += 1
                name = clean_name(member.name)
                if not name and member.isdir():
                    continue
                if not name:
                    raise UnsafeArchiveError(f"{member.name!r}: a member without a name refused")
                rules.admit(member, name)
                if member.issym():
                    target = member.linkname
                    check_link_target(name, target)
                    if links is None and _leads_out(name, target):
                        raise UnsafeArchiveError(
                            f"{name}: link pointing out of the archive ({target}) refused"
                        )
                    with scratch_writes():
                        db.execute(
                            "INSERT INTO links (name, target) VALUES (?, ?)",
                            (encode_text(name), encode_text(target)),
                        )
                elif member.isfile() and links is not None and links.wants(name, member.size, count):
                    content = tar.extractfile(member)
                    assert content is not None
                    links.read(name, cast(BinaryIO, content))
                tar.members.clear()  # type: ignore[attr-defined]
        if links is not None:
            rule = links.rule(None)
            for raw_name, raw_target in db.execute("SELECT name, target FROM links ORDER BY rowid"):
                verdict = rule(decode_text(raw_name), decode_text(raw_target))
                if isinstance(verdict, str):
                    raise UnsafeArchiveError(verdict)
    except (EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError) as exc:
        raise VerifyError(f"{path.name}: damaged or truncated archive ({exc})") from None
    except tarfile.TarError as exc:
        raise VerifyError(f"{path.name}: not a readable tar archive ({exc})") from None
    finally:
        db.close()
    return count
