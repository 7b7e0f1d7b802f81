"""The rules an archive's member names must keep, shared by the header pass
(`tasks.archive.header_pass`) and the extraction (`tasks.archive.safe_extract`), so both
refuse exactly the same archives: absolute paths, `..`, names too long to create, special
files, the same name twice, a path through a link, hard links to anything but a file
extracted before them.
"""

from __future__ import annotations

import sqlite3
import tarfile

from tasks.archive.manifest.entry_store import encode_text, scratch_writes
from tasks.core.errors import VerifyError


class UnsafeArchiveError(VerifyError):
    """A member would land outside the target, or is something that is never extracted."""


# Linux limits, in bytes: a longer name can never be created, so it is refused up front
# (in the header pass too) rather than failing half-way through the extraction.
NAME_MAX = 255
PATH_MAX = 4096


def name_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def shorten(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:60]) + f"… ({len(text)} characters)"


def clean_name(raw: str) -> str:
    """The member's relative name ("a/b"), or UnsafeArchiveError if it would climb out."""
    if "\x00" in raw:
        raise UnsafeArchiveError(f"{raw!r}: NUL in a member name refused")
    if raw.startswith("/"):
        raise UnsafeArchiveError(f"{raw}: absolute path refused")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{raw}: '..' in a member name refused")
    if name_length(raw) >= PATH_MAX or any(name_length(p) > NAME_MAX for p in parts):
        raise UnsafeArchiveError(f"{shorten(raw)}: name too long to extract; refused")
    return "/".join(parts)


def check_link_target(name: str, target: str) -> None:
    """A link target the filesystem can hold (where it points is checked separately)."""
    if "\x00" in target or name_length(target) >= PATH_MAX:
        raise UnsafeArchiveError(
            f"{name}: link target {shorten(target)} cannot be created; refused"
        )


def parent_of(name: str) -> str:
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
        self._folders(parent_of(name), name)
        if member.issym():
            self._note(name, self.LINK)
        elif member.isfile():
            self._note(name, self.FILE)
        elif member.islnk():
            target = hard_link_target(member)
            if self.FILE not in self._kinds(target):
                raise UnsafeArchiveError(
                    f"{name}: hard link to {member.linkname}, which is not a file extracted "
                    "before it; refused"
                )
            self._note(name, self.FILE)
        else:
            raise UnsafeArchiveError(
                f"{name}: {member_kind(member)} refused (only files, folders and links are extracted)"
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


def hard_link_target(member: tarfile.TarInfo) -> str:
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


def member_kind(member: tarfile.TarInfo) -> str:
    if member.ischr() or member.isblk():
        return "device"
    if member.isfifo():
        return "FIFO"
    return f"member type {member.type!r}"
