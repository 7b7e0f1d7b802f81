"""A full backup made ready to restore: extracted into staging and proven by its manifest,
and, after the swap, the live tree proven to be what was staged.

The archive's headers are read first (nothing written) and refused if any member is
unsafe or any link is not the one MANIFEST.json records; then it is extracted into a
hidden staging folder beside the live data and judged by `tasks.archive.verdict` —
the same extraction and the same verdict as test-restore's. Only a staged tree that
passed is ever swapped in; once the renames are done, `prove_restored_tree` checks each
live path against the manifest and the staged entry it was (same inode, type, size,
link target, hard-link partner), before the restore may call itself done.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tasks.archive.extracted import Extraction
from tasks.archive.manifest.model import MANIFEST_JSON, FileEntry, Manifest
from tasks.archive.verdict import ManifestLinks, Problem, archive_problems
from tasks.core.atomic import DIR_MODE
from tasks.core.errors import RestoreError, VerifyError
from tasks.core.naming import timestamp
from tasks.restore.files import Swap
from tasks.restore.markers import STAGING_PREFIX
from tasks.stream.compress import BLOCK_SIZE

SHOWN_PROBLEMS = 5


@dataclass(frozen=True)
class StagedArchive:
    staging: Path  # the staging folder; deleted when the restore ends
    root: Path  # staging/full_backup_YYYYMMDD_HHMMSS
    manifest: Manifest
    database: Path | None  # root/database/<artifact>, verified against the manifest
    files: int  # regular files verified
    extraction: Extraction | None = None  # what was written (sizes, hashes, inodes)


def new_staging_dir(beside: Path) -> Path:
    """A fresh hidden 0700 folder next to `beside` (so on the same filesystem)."""
    parent = beside.parent
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / f"{STAGING_PREFIX}{timestamp(datetime.now(UTC))}-{secrets.token_hex(4)}"
    path.mkdir(mode=DIR_MODE)
    return path


def discard_staging(staging: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(staging)


def stage_archive(archive: Path, staging: Path) -> StagedArchive:
    """Extract `archive` into `staging` and verify it against its manifest.

    Unsafe members (absolute paths, `..`, paths through links, devices, hard links to
    anything but an earlier file) and links the manifest does not record are refused by
    a header pass before anything is written; the extraction checks them all again.
    """
    from tasks.archive.header_pass import refuse_unsafe_members
    from tasks.archive.safe_extract import extract_archive

    header = ManifestLinks()
    try:
        refuse_unsafe_members(archive, links=header)  # before a byte is written, even here
    finally:
        header.close()
    if header.too_large:  # a bomb posing as the manifest is refused before it is written
        raise VerifyError(f"{archive.name}: {MANIFEST_JSON} is implausibly large")
    links = ManifestLinks()
    extraction = extract_archive(
        archive, staging, preserve_owner=os.geteuid() == 0, links=links
    )
    tops = extraction.top_folders
    if len(tops) != 1:
        links.close()
        raise VerifyError(
            f"{archive.name}: not a full backup (expected one top folder, found {len(tops)})"
        )
    manifest = links.manifest
    if manifest is None:
        if links.member is None:
            raise VerifyError(
                f"{archive.name}: no MANIFEST.json — not a full backup of chatbot-backup"
            )
        raise VerifyError(links.problem or f"{archive.name}: {MANIFEST_JSON} cannot be read")
    refuse_problems(archive_problems(extraction, manifest))
    root = staging / manifest.name
    database = root / manifest.database.artifact if manifest.database is not None else None
    files = manifest.entries.count(kind="file")
    return StagedArchive(staging, root, manifest, database, files, extraction)


def refuse_problems(problems: Iterable[Problem]) -> None:
    """VerifyError naming the first few problems (and how many more), if there are any."""
    shown: list[str] = []
    count = 0
    for problem in problems:
        count += 1
        if len(shown) < SHOWN_PROBLEMS:
            shown.append(problem.text("restore"))
    if count:
        more = f"; and {count - len(shown)} more" if count > len(shown) else ""
        raise VerifyError(f"the archive does not match its MANIFEST.json: {'; '.join(shown)}{more}")


# -- after the swap: the live tree is what the manifest recorded --------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(BLOCK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _live_path(swaps: dict[str, Swap], rel: str) -> tuple[Swap, Path] | None:
    """The swap that brought `rel` (a manifest path) in, and where `rel` now lives."""
    parts = rel.split("/")
    for depth in range(len(parts), 0, -1):
        swap = swaps.get("/".join(parts[:depth]))
        if swap is not None:
            return swap, swap.target.joinpath(*parts[depth:])
    return None


def _live_problem(
    entry: FileEntry,
    live: Path,
    staged: StagedArchive,
    renamed: bool,
    swaps: dict[str, Swap],
) -> str | None:
    """How the live path differs from the manifest entry (and from the staged entry)."""
    try:
        info = os.lstat(live)
    except FileNotFoundError:
        return f"{entry.path}: missing after the swap"
    if entry.type == "dir":
        return None if stat.S_ISDIR(info.st_mode) else f"{entry.path}: not a folder after the swap"
    if entry.type == "symlink":
        if not stat.S_ISLNK(info.st_mode) or os.readlink(live) != entry.target:
            return f"{entry.path}: not the recorded link after the swap"
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size != entry.size:
        return f"{entry.path}: not the recorded file after the swap"
    if renamed:
        # The staged file was hashed as it was extracted; the live one must be that file.
        extraction = staged.extraction
        written = extraction.files.get(f"{staged.manifest.name}/{entry.path}") if extraction else None
        if written is None or written.inode != info.st_ino:
            return f"{entry.path}: not the file that was staged and checked"
    elif _sha256(live) != entry.sha256:  # copied across filesystems: read it again
        return f"{entry.path}: the copy does not match its sha256"
    first = entry.hardlink
    placed = _live_path(swaps, first) if first is not None else None
    if placed is not None:  # both names restored: one inode, as recorded
        try:
            partner = os.lstat(placed[1])
        except FileNotFoundError:
            return f"{entry.path}: its hard-link partner {first} is missing after the swap"
        # (Names on two filesystems now, one of them copied over, cannot share an inode.)
        if partner.st_dev == info.st_dev and partner.st_ino != info.st_ino:
            return f"{entry.path}: no longer a hard link of {first} after the swap"
    return None


def prove_restored_tree(staged: StagedArchive, swaps: list[Swap]) -> None:
    """After the renames: every manifest entry that was swapped in is, live, what was staged.

    Cheap: one lstat per entry. A file renamed in from staging must be the very inode
    the extraction wrote and hashed; one copied in from another filesystem is hashed
    again. Folders, links (by target) and hard links (one inode with their first name)
    are checked as recorded. RestoreError naming the first few differences.
    """
    by_label = {swap.label: swap for swap in swaps if swap.incoming is not None}
    problems: list[str] = []
    count = 0
    for entry in _entries_swapped(staged.manifest, by_label):
        placed = _live_path(by_label, entry.path)
        if placed is None:
            continue
        swap, live = placed
        renamed = swap.incoming == staged.root / swap.label
        problem = _live_problem(entry, live, staged, renamed, by_label)
        if problem is not None:
            count += 1
            if len(problems) < SHOWN_PROBLEMS:
                problems.append(problem)
    if count:
        more = f"; and {count - len(problems)} more" if count > len(problems) else ""
        raise RestoreError(
            f"the restored tree is not what MANIFEST.json records: {'; '.join(problems)}{more}"
        )


def _entries_swapped(manifest: Manifest, by_label: dict[str, Swap]) -> Iterator[FileEntry]:
    sections = {label.split("/", 1)[0] for label in by_label}
    for section in sorted(sections):
        yield from manifest.entries.entries(section=section)

