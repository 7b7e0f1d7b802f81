"""The header pass: refuse an unsafe archive before anything is written (restore-all)."""

from __future__ import annotations

import gzip
import posixpath
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO, cast

import zstandard

from tasks.archive.extracted import LinkPolicy
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
)
from tasks.archive.safe_extract import open_archive
from tasks.core.errors import VerifyError


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
                elif (
                    member.isfile() and links is not None and links.wants(name, member.size, count)
                ):
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
