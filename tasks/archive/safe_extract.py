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
last, deepest first, so a read-only folder still gets its content. A folder keeps its
sticky and setgid bits (they only narrow who may delete, and which group new files get);
a file's setuid and setgid bits are dropped, and counted in `Extraction.set_id_dropped`
for the restore's summary: restoring an archive must never create a set-id program
(one that runs with its owner's rights, root's when a restore runs as root).

The names' rules are `tasks.archive.member_rules`; what was written, and the link policy,
`tasks.archive.extracted`; the pass that refuses before writing, `tasks.archive.header_pass`.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import os
import sqlite3
import stat
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import zstandard

from tasks.archive.extracted import (
    ExtractedFile,
    ExtractedFiles,
    Extraction,
    LinkPolicy,
    LinkRule,
    NameSet,
    Withheld,
)
from tasks.archive.manifest.entry_store import (
    decode_text,
    encode_text,
    open_scratch_database,
    scratch_writes,
)
from tasks.archive.member_rules import (
    MemberRules,
    UnsafeArchiveError,
    check_link_target,
    clean_name,
    hard_link_target,
    parent_of,
    shorten,
)
from tasks.core.errors import VerifyError
from tasks.stream.compress import BLOCK_SIZE, open_decompressed, sniff_compression
from tasks.stream.read_ahead import read_ahead

# What the filesystem says of a name it cannot hold (a backstop for the checks above).
_UNUSABLE_NAME = (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL)


def new_extraction(dest: Path) -> tuple[Extraction, sqlite3.Connection]:
    """An empty record of an extraction into `dest`, and the scratch database behind it."""
    db = open_scratch_database()
    return Extraction(dest=dest, files=ExtractedFiles(db), dirs=NameSet(db, "dirs")), db


def _inside(dest: str, path: str) -> bool:
    return path == dest or path.startswith(dest + os.sep)


SHOWN_SET_ID = 5  # names kept for the summary; the count is whole


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
        parent = parent_of(name)
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
        target = hard_link_target(member)
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
        self.ensure_dir(parent_of(name), name)
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
        keep = 0o777 | (stat.S_ISVTX | stat.S_ISGID if is_dir else 0)
        if member.mode & (stat.S_ISUID | stat.S_ISGID) & ~keep:
            self.result.set_id_dropped += 1
            if len(self.result.set_id_names) < SHOWN_SET_ID:
                self.result.set_id_names.append(member.name)
        os.fchmod(fd, member.mode & keep)
        with contextlib.suppress(OSError, OverflowError, ValueError):
            os.utime(fd, (member.mtime, member.mtime))


@contextlib.contextmanager
def _creating() -> Iterator[None]:
    """A name the filesystem cannot hold is the archive's problem; other OS errors
    (disk full, permissions) are the caller's to report."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _UNUSABLE_NAME:
            raise
        raise UnsafeArchiveError(
            f"a member cannot be created here ({exc.strerror}): {shorten(str(exc.filename))}"
        ) from None


class MemberExtraction:
    """An extraction fed one member at a time by a caller that walks the tar stream
    itself (test-restore's one read: the archive scan extracts on its way past).
    Each `add` must come before the stream moves to the next header; `finish` makes
    the links and folder modes once every member is in."""

    def __init__(
        self,
        dest: Path,
        *,
        skip_external_links: bool = False,
        max_bytes: int | None = None,
        preserve_owner: bool = False,
        links: LinkPolicy | None = None,
    ) -> None:
        self._links = links
        self._extractor = _Extractor(dest, skip_external_links, max_bytes, preserve_owner, links)

    @property
    def result(self) -> Extraction:
        return self._extractor.result

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        with _creating():
            self._extractor.add(tar, member)

    def finish(self) -> Extraction:
        with _creating():
            rule = self._links.rule(self.result) if self._links is not None else None
            self._extractor.make_links(rule)
            self._extractor.finish_dirs()
        return self.result


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
    extraction = MemberExtraction(
        dest,
        skip_external_links=skip_external_links,
        max_bytes=max_bytes,
        preserve_owner=preserve_owner,
        links=links,
    )
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        while (member := tar.next()) is not None:
            extraction.add(tar, member)
            tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every header; we need none
    return extraction.finish()


@contextlib.contextmanager
def open_archive(path: Path) -> Iterator[BinaryIO]:
    """The uncompressed stream of a .tar.gz / .tar.zst file."""
    compression = sniff_compression(path)
    with open(path, "rb") as raw:
        # inflated in a thread of its own while this one writes the files (issue 18)
        stream = read_ahead(open_decompressed(io.BufferedReader(raw, BLOCK_SIZE), compression))
        try:
            yield stream
        finally:
            stream.close()


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
