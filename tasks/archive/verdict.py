"""One verdict on a full backup's archive, for test-restore and restore-all alike.

SPEC.md (Restore): test-restore and restore-all reach the same verdict on the same
archive. Both extract it with the same safe extractor and the same link policy,
`ManifestLinks`: the symbolic links created are exactly those MANIFEST.json records,
each with its recorded target wherever that points (absolute, leading out, dangling —
a link is restored as the link it was, never followed), and any other link is refused
before a single link is made. Both then judge what was extracted with
`archive_problems`: one top folder named as the manifest says; every manifest entry
present as recorded (files by size and sha256, hard links as one inode with their
first name, folders, links by target); the database artifact intact; nothing the
manifest does not list; the manifest the last member (the commit marker). The two jobs
only word the problems differently: test-restore in its check table, restore-all in
its one error line.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from tasks.archive.extracted import WITHHELD, Extraction, LinkRule
from tasks.archive.manifest.model import MANIFEST_JSON, MANIFEST_TXT, FileEntry, Manifest
from tasks.archive.manifest.read import read_manifest
from tasks.archive.scan import MANIFEST_BYTES_PER_MEMBER, MAX_MANIFEST_BYTES, PLAIN_MANIFEST_BYTES
from tasks.core.errors import BackupError, VerifyError


def manifest_size_limit(members: int) -> int:
    """The largest MANIFEST.json believed for an archive of `members` members (a bomb guard)."""
    return min(max(PLAIN_MANIFEST_BYTES, members * MANIFEST_BYTES_PER_MEMBER), MAX_MANIFEST_BYTES)


def is_manifest_member(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and parts[1] == MANIFEST_JSON


def read_extracted_manifest(extraction: Extraction, member: str) -> Manifest:
    """MANIFEST.json as extracted (never through a link), read entry by entry onto disk."""
    path = extraction.dest / member
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise VerifyError(f"{MANIFEST_JSON} was not extracted: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise VerifyError(f"{MANIFEST_JSON} is not a regular file")
        return read_manifest(handle)


class ManifestLinks:
    """The link policy of a full backup: a link is created only as MANIFEST.json records it.

    The manifest is the archive's last member, so links (made last anyway) are judged
    once it has been read: from the stream in restore-all's header pass, or from the
    extracted file. Without a readable manifest no link is made: the header pass
    refuses them, the extraction withholds them (the archive is refused for its
    manifest either way).
    """

    def __init__(self) -> None:
        self.member: str | None = None  # "<top>/MANIFEST.json"
        self.manifest: Manifest | None = None
        self.problem: str | None = None  # why there is no manifest to judge by
        self.too_large = False  # a bomb posing as the manifest: never read

    def wants(self, name: str, size: int, members_seen: int) -> bool:
        if not is_manifest_member(name):
            return False
        if self.member is not None:
            self.problem = f"{MANIFEST_JSON} appears in two top folders"
            return False
        self.member = name
        if size > manifest_size_limit(members_seen):
            self.problem = f"{MANIFEST_JSON} is implausibly large"
            self.too_large = True
            return False
        return True

    def read(self, name: str, content: BinaryIO) -> None:
        try:
            self.manifest = read_manifest(content)
        except BackupError as exc:
            self.problem = str(exc)

    def rule(self, extraction: Extraction | None) -> LinkRule:
        if (
            extraction is not None
            and self.member is not None
            and self.manifest is None
            and self.problem is None
        ):
            try:
                self.manifest = read_extracted_manifest(extraction, self.member)
            except BackupError as exc:
                self.problem = str(exc)
        manifest, member = self.manifest, self.member
        if self.problem is not None or manifest is None or member is None:
            # Nothing vouches for any link. The header pass refuses the archive here,
            # before anything is written; the extraction makes none of them and leaves
            # the refusal to the manifest check, which says what is wrong with it.
            if extraction is not None:
                return lambda name, target: WITHHELD
            why = self.problem or f"the archive has no {MANIFEST_JSON}"
            return lambda name, target: f"{name}: link not recorded ({why}); refused"
        top = member.split("/", 1)[0]
        return lambda name, target: link_problem(manifest, top, name, target)

    def close(self) -> None:
        if self.manifest is not None:
            self.manifest.entries.close()


def link_problem(manifest: Manifest, top: str, name: str, target: str) -> str | None:
    """None when the archive's link `name -> target` is the one the manifest records."""
    rel = name[len(top) + 1 :] if name.startswith(top + "/") else None
    recorded = manifest.entries.get(rel) if rel else None
    if recorded is None or recorded.type != "symlink":
        return f"{rel or name}: link not recorded in {MANIFEST_JSON}; refused"
    if recorded.target != target:
        return (
            f"{rel}: link to {target!r} in the archive, {MANIFEST_JSON} records "
            f"{recorded.target!r}; refused"
        )
    return None


# -- the verdict ---------------------------------------------------------------------------

# How each job words a problem: test-restore ("check") in its table, restore-all
# ("restore") in its error line; the same problems either way.
_WORDING = {
    "tops": (
        "the archive should hold one folder {recorded}/, it holds: {found}",
        "not a full backup (expected one top folder {recorded}/, found {found})",
    ),
    "file missing": ("{path}: file missing", "{path} missing"),
    "size": (
        "{path}: {found} bytes, manifest says {recorded}",
        "{path} has {found} bytes, the manifest says {recorded}",
    ),
    "sha256": ("{path}: sha256 differs from the manifest", "{path} does not match its sha256"),
    "folder missing": ("{path}: folder missing", "{path}/ missing"),
    "link missing": ("{path}: link missing", "{path} is not the recorded link"),
    "link target": (
        "{path}: link points to {found!r}, manifest says {recorded!r}",
        "{path} is not the recorded link (it points to {found!r}, the manifest says {recorded!r})",
    ),
    "unrecorded hard link": (
        "{path}: a hard link of {found} in the archive, the manifest records a file of its own",
        "{path}: a hard link of {found} in the archive, the manifest records a file of its own",
    ),
    "not a hard link": (
        "{path}: not a hard link of {recorded}, as the manifest records",
        "{path}: not a hard link of {recorded}, as the manifest records",
    ),
    "database missing": ("{path}: database artifact missing", "{path} missing"),
    "database differs": ("{path}: differs from the manifest", "{path} does not match its sha256"),
    "unlisted": (
        "{path}: in the archive, not in the manifest",
        "{path} is not listed in the manifest",
    ),
    "not last": (
        "the manifest is not the last member: the backup did not finish",
        "the manifest is not the last member: the backup did not finish",
    ),
}


@dataclass(frozen=True)
class Problem:
    """One way the extracted archive differs from its manifest."""

    kind: str
    path: str = ""
    found: object = None
    recorded: object = None

    def text(self, wording: str = "check") -> str:
        template = _WORDING[self.kind][0 if wording == "check" else 1]
        return template.format(path=self.path, found=self.found, recorded=self.recorded)


def entry_problem(entry: FileEntry, extraction: Extraction, top: str) -> Problem | None:
    """What differs between one manifest entry and what was extracted, or None."""
    name = f"{top}/{entry.path}"
    if entry.type == "dir":
        return None if name in extraction.dirs else Problem("folder missing", entry.path)
    if entry.type == "symlink":
        target = extraction.link_target(name)
        if target is None:
            return Problem("link missing", entry.path)
        if target != entry.target:
            return Problem("link target", entry.path, target, entry.target)
        return None
    found = extraction.files.get(name)
    if found is None:
        return Problem("file missing", entry.path)
    if found.size != entry.size:
        return Problem("size", entry.path, found.size, entry.size)
    if found.sha256 != entry.sha256:
        return Problem("sha256", entry.path)
    if entry.hardlink is None:
        if found.hardlink is not None:
            first = found.hardlink.removeprefix(top + "/")
            return Problem("unrecorded hard link", entry.path, first)
        return None
    first_file = extraction.files.get(f"{top}/{entry.hardlink}")
    if found.hardlink is None or first_file is None or first_file.inode != found.inode:
        return Problem("not a hard link", entry.path, recorded=entry.hardlink)
    return None


def manifest_is_last(last_members: list[str]) -> bool:
    names = {name.rsplit("/", 1)[-1] for name in last_members}
    return len(last_members) == 2 and names == {MANIFEST_JSON, MANIFEST_TXT}


def _extracted_names(extraction: Extraction) -> Iterator[str]:
    yield from extraction.files
    yield from extraction.dirs  # on disk, already in name order
    yield from sorted(extraction.symlinks)
    yield from sorted(extraction.external_links)


def archive_problems(extraction: Extraction, manifest: Manifest) -> Iterator[Problem]:
    """Every way the extracted archive differs from its manifest (none: it is restorable)."""
    tops = extraction.top_folders
    if tops != {manifest.name}:
        found = ", ".join(sorted(tops)[:3]) + (", …" if len(tops) > 3 else "")
        yield Problem("tops", found=found or "nothing", recorded=manifest.name)
        return
    top = manifest.name
    for entry in manifest.entries.entries():
        problem = entry_problem(entry, extraction, top)
        if problem is not None:
            yield problem
    special = {top, f"{top}/{MANIFEST_JSON}", f"{top}/{MANIFEST_TXT}", f"{top}/database"}
    if manifest.database is not None:
        artifact = f"{top}/{manifest.database.artifact}"
        special.add(artifact)
        db_file = extraction.files.get(artifact)
        if db_file is None:
            yield Problem("database missing", manifest.database.artifact)
        elif (db_file.size, db_file.sha256) != (manifest.database.size, manifest.database.sha256):
            yield Problem("database differs", manifest.database.artifact)
    for name in _extracted_names(extraction):
        rel = name.removeprefix(top + "/")
        if name not in special and (rel == name or rel not in manifest.entries):
            yield Problem("unlisted", rel)
    if not manifest_is_last(extraction.last_members):
        yield Problem("not last")

