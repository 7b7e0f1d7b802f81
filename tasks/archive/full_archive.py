"""The tar stream of a full backup: database, uploads, config, data, then the manifest.

Layout (SPEC.md, Backup files): one top folder `full_backup_YYYYMMDD_HHMMSS/` with
`database/`, `uploads/`, `config/`, `data/`, and `MANIFEST.txt` + `MANIFEST.json` as the
last members — the manifest is written once everything else is in, so an archive that
has one is complete.

Every file is read once: hashed while it is copied into the stream. What operators'
folders hold is handled, not crashed on: links are stored as links (never followed),
empty files and folders are kept, a file that vanishes is noted in `skipped`, one that
changes while it is read is stored as read and marked `changed`. A file that cannot be
read is an error naming it, unless `skip_unreadable` is set.

Hard links stay hard links: the first name of an inode met is stored with its content,
every later name as a tar hard-link member pointing to it (so `tar -xzf` recreates the
link too), recorded in the manifest with that first name as its `target`. Pre-restore
snapshots lying in the folders (SPEC: never archived) are left out without a note.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import socket
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from tasks.archive.file_tree import TreeEntry, walk_tree
from tasks.archive.full_content import (
    SECTIONS,
    SUMMARY_NOTES,
    ArchiveContent,
    ArchiveSummary,
    DatabaseMember,
)
from tasks.archive.manifest.entry_store import (
    EntryStore,
    encode_text,
    open_scratch_database,
    scratch_space_error,
    scratch_writes,
)
from tasks.archive.manifest.model import (
    MANIFEST_JSON,
    MANIFEST_TXT,
    DatabaseEntry,
    FileEntry,
    Manifest,
)
from tasks.archive.manifest.write import write_manifest_json, write_manifest_text
from tasks.archive.tar_stream import TarStreamWriter
from tasks.core.atomic import PARTIAL_MARKER, is_partial
from tasks.core.errors import SourceError
from tasks.core.naming import is_pre_restore_snapshot


@lru_cache(maxsize=256)
def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@lru_cache(maxsize=256)
def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def _info(
    name: str, kind: bytes, st: os.stat_result | None, mode: int | None = None
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    if st is not None:
        info.mode = stat.S_IMODE(st.st_mode)
        info.mtime = int(st.st_mtime)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname, info.gname = _user(st.st_uid), _group(st.st_gid)
    else:
        info.mode = 0o700
        info.mtime = int(time.time())
    if mode is not None:
        info.mode = mode
    return info


class FirstNames:
    """(device, inode) -> the first name archived for it, of files with several names.

    On disk like the entries: a tree of hard-linked files (a deduplicated upload store)
    may have as many as it has files.
    """

    def __init__(self) -> None:
        self._db = open_scratch_database()
        self._db.execute(
            "CREATE TABLE first_names (dev INTEGER, ino INTEGER, rel BLOB NOT NULL,"
            " PRIMARY KEY (dev, ino)) WITHOUT ROWID"
        )

    def get(self, st: os.stat_result) -> str | None:
        row = self._db.execute(
            "SELECT rel FROM first_names WHERE dev = ? AND ino = ?", (st.st_dev, st.st_ino)
        ).fetchone()
        return None if row is None else bytes(row[0]).decode("utf-8", "surrogatepass")

    def add(self, st: os.stat_result, rel: str) -> None:
        with scratch_writes():
            self._db.execute(
                "INSERT OR IGNORE INTO first_names (dev, ino, rel) VALUES (?, ?, ?)",
                (st.st_dev, st.st_ino, encode_text(rel)),
            )

    def close(self) -> None:
        self._db.close()


class FullArchiveBuilder:
    """Writes one full backup into `out` (the uncompressed tar stream)."""

    def __init__(self, out: BinaryIO, content: ArchiveContent) -> None:
        self.content = content
        self.tar = TarStreamWriter(out)
        self.entries = EntryStore()  # on disk: memory stays flat however many files
        self.first_names = FirstNames()
        self.summary_sections: dict[str, list[int]] = {s: [0, 0] for s in SECTIONS}

    # -- members ----------------------------------------------------------------------
    def _member(self, rel: str) -> str:
        return f"{self.content.top}/{rel}"

    def _skip(self, rel: str, reason: str) -> None:
        self.entries.add_skipped(rel, reason)

    def _unreadable(self, rel: str, path: str | Path, exc: OSError) -> None:
        reason = f"cannot read: {exc.strerror or exc}"
        if not self.content.skip_unreadable:
            raise SourceError(
                f"cannot read {path}: {exc.strerror or exc} — fix its permissions, or set "
                "BACKUP_SKIP_UNREADABLE=true to back up without it"
            ) from None
        self._skip(rel, reason)

    def add_dir(self, rel: str, st: os.stat_result | None) -> None:
        info = _info(self._member(rel), tarfile.DIRTYPE, st)
        self.tar.add_header(info)
        if rel.split("/", 1)[0] in SECTIONS:
            self.entries.add(FileEntry(path=rel, type="dir", mode=info.mode))

    def add_symlink(self, rel: str, path: str | Path, st: os.stat_result) -> None:
        try:
            target = os.readlink(path)
        except FileNotFoundError:
            self._skip(rel, "vanished while the backup ran")
            return
        except OSError as exc:  # EINVAL: replaced by something that is not a link
            self._skip(rel, f"changed while the backup ran ({exc.strerror})")
            return
        info = _info(self._member(rel), tarfile.SYMTYPE, st)
        info.linkname = target
        self.tar.add_header(info)
        self.entries.add(FileEntry(path=rel, type="symlink", target=target, mode=info.mode))

    def add_file(self, rel: str, path: str | Path, follow: bool = False) -> None:
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: never hang on a FIFO
        if not follow:
            flags |= os.O_NOFOLLOW
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            self._skip(rel, "vanished while the backup ran")
            return
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # it became a link after it was listed
                self._skip(rel, "changed into a link while the backup ran")
                return
            self._unreadable(rel, path, exc)
            return
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                self._skip(rel, "changed into something that is not a file while the backup ran")
                return
            if before.st_nlink > 1 and self._add_hard_link(rel, before):
                return
            info = _info(self._member(rel), tarfile.REGTYPE, before)
            info.size = before.st_size
            copied = self.tar.add_fd(info, fd)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if copied.error is not None:
            # The header is out, so the member stays (zero-padded); say so, or fail.
            self._unreadable(rel, path, copied.error)
        changed = (
            copied.short
            or copied.longer
            or copied.error is not None
            or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns)
        )
        self.entries.add(
            FileEntry(
                path=rel,
                type="file",
                size=info.size,
                sha256=copied.sha256,
                mode=info.mode,
                changed=changed,
            )
        )
        if before.st_nlink > 1 and copied.error is None:
            self.first_names.add(before, rel)  # later names of this inode link to this one
        self._count(rel, info.size)

    def _add_hard_link(self, rel: str, st: os.stat_result) -> bool:
        """Store `rel` as a hard link to the first name of its inode, if one was stored."""
        first = self.first_names.get(st)
        stored = self.entries.get(first) if first is not None else None
        if first is None or stored is None:
            return False
        info = _info(self._member(rel), tarfile.LNKTYPE, st)
        info.linkname = self._member(first)
        self.tar.add_header(info)
        self.entries.add(
            FileEntry(
                path=rel,
                type="file",
                size=stored.size,
                sha256=stored.sha256,
                mode=info.mode,
                changed=stored.changed,
                target=first,
            )
        )
        self._count(rel, 0)  # a second name: no more bytes
        return True

    def _count(self, rel: str, size: int) -> None:
        section = rel.split("/", 1)[0]
        if section in self.summary_sections:
            self.summary_sections[section][0] += 1
            self.summary_sections[section][1] += size

    # -- sections ---------------------------------------------------------------------
    def add_tree(self, section: str, root: Path | None, exclude: frozenset[Path]) -> None:
        """Archive the folder `root` as `section/`, or note why it is not there."""
        if root is None:
            self.add_dir(section, None)
            return

        def on_error(path: str, rel: str, exc: OSError) -> None:
            where = f"{section}/{rel}" if rel else section
            if isinstance(exc, FileNotFoundError):
                if rel:
                    self._skip(where, "vanished while the backup ran")
                else:
                    self.add_dir(section, None)
                    self._skip(where, f"{path} does not exist")
            else:
                self._unreadable(where, path, exc)

        excluded = {str(path) for path in exclude}
        for entry in walk_tree(root, set(exclude), on_error):
            if entry.kind != "dir" and _staged_beside_an_excluded_file(entry.path, excluded):
                continue
            self._add_entry(section, entry)

    def _add_entry(self, section: str, entry: TreeEntry) -> None:
        if entry.kind != "dir" and is_pre_restore_snapshot(entry.rel.rsplit("/", 1)[-1]):
            return  # SPEC: pre-restore snapshots are never archived (they are not data)
        rel = f"{section}/{entry.rel}" if entry.rel else section
        if entry.kind == "dir":
            self.add_dir(rel, entry.stat)
        elif entry.kind == "file":
            self.add_file(rel, entry.path)
        elif entry.kind == "symlink":
            self.add_symlink(rel, entry.path, entry.stat)
        else:
            kind = _special_kind(entry.stat.st_mode)
            self._skip(rel, f"not a regular file, folder or link ({kind})")

    def add_config(self, files: tuple[Path, ...]) -> None:
        """Configured files keep their base names under config/; a missing one is noted."""
        self.add_dir("config", None)
        for path in files:
            rel = f"config/{path.name}"
            if not os.path.lexists(path):
                self._skip(rel, f"{path} does not exist")
                continue
            if path.is_dir():
                self.add_tree(rel, path, frozenset())
            else:
                # The operator named this file: a link here is followed to its content.
                self.add_file(rel, path, follow=True)

    def add_database(self, member: DatabaseMember) -> None:
        self.add_dir("database", None)
        with open(member.path, "rb") as handle:
            info = _info(self._member(f"database/{member.name}"), tarfile.REGTYPE, None, 0o600)
            info.size = member.size
            copied = self.tar.add_fd(info, handle.fileno())
        if copied.short or copied.longer or copied.sha256 != member.sha256:
            raise SourceError(f"the database artifact {member.name} changed while it was archived")

    # -- the whole archive ------------------------------------------------------------
    def build(self) -> ArchiveSummary:
        try:
            return self._build()
        finally:
            self.entries.close()
            self.first_names.close()

    def _build(self) -> ArchiveSummary:
        c = self.content
        self.tar.add_header(_info(c.top, tarfile.DIRTYPE, None))
        self.add_database(c.database)
        self.add_tree("uploads", c.uploads, frozenset())
        self.add_config(c.config_files)
        self.add_tree("data", c.data, c.data_exclude)
        manifest = Manifest(
            name=c.top,
            created_at=c.created_at.isoformat(),
            tier=c.tier,
            host=socket.gethostname(),
            db_type=c.db_type,
            database=DatabaseEntry(
                artifact=f"database/{c.database.name}",
                size=c.database.size,
                sha256=c.database.sha256,
                tables=dict(c.database.tables),
                privileges=c.database.privileges,
            ),
            entries=self.entries,
        )
        # Last, as the commit marker: text for people, then JSON for programs.
        self._add_spooled(MANIFEST_TXT, lambda out: write_manifest_text(manifest, out))
        self._add_spooled(MANIFEST_JSON, lambda out: write_manifest_json(manifest, out))
        self.tar.close()
        entries = self.entries
        return ArchiveSummary(
            name=c.top,
            tables=dict(c.database.tables),
            files=entries.count(kind="file"),
            bytes=entries.total_size(),
            sections=self.summary_sections,
            changed=list(islice(entries.changed(), SUMMARY_NOTES)),
            changed_count=entries.changed_count(),
            skipped=list(islice(entries.skipped(), SUMMARY_NOTES)),
            skipped_count=entries.skipped_count(),
        )

    def _add_spooled(self, rel: str, write: Callable[[BinaryIO], None]) -> None:
        """A member written by `write` into a temporary file first: tar needs its size up front."""
        with tempfile.TemporaryFile(prefix="chatbot-manifest-") as spool:
            try:
                with scratch_writes():
                    write(spool)
                    spool.flush()
            except OSError as exc:  # TMPDIR, not the backup folder: say which
                raise scratch_space_error(exc.strerror or exc) from None
            info = _info(self._member(rel), tarfile.REGTYPE, None, 0o600)
            info.size = spool.tell()
            os.lseek(spool.fileno(), 0, os.SEEK_SET)
            copied = self.tar.add_fd(info, spool.fileno())
        if copied.short or copied.longer or copied.error is not None:
            raise SourceError(f"{rel} could not be written whole: {copied.error or 'size changed'}")


def _staged_beside_an_excluded_file(path: str, excluded: set[str]) -> bool:
    """Whether `path` is the staged copy `.NAME.partial-PID-HEX` that a restore writes
    beside a file never archived raw (the SQLite database) and a killed one leaves: not
    data, and restore-all's pre-restore copy took it in while the restore ran. Only beside
    that file: elsewhere a name like it is the operator's."""
    folder, _, name = path.rpartition("/")
    if not is_partial(name):
        return False
    beside = f"{folder}/{name[1:].split(PARTIAL_MARKER, 1)[0]}"
    return beside in excluded or os.path.realpath(beside) in excluded


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"
