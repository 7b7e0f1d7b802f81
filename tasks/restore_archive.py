"""A full backup made ready to restore: extracted into staging and proven by its manifest.

The archive is extracted (safely: no member may land outside the staging folder) into a
hidden staging folder beside the live data, then every file is checked against
`MANIFEST.json` — presence, type, size and sha256 — and a file the manifest does not
list is refused too. Only a staged tree that passed all of this is ever swapped in.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path

from tasks.archive_scan import (
    MANIFEST_BYTES_PER_MEMBER,
    MAX_MANIFEST_BYTES,
    PLAIN_MANIFEST_BYTES,
)
from tasks.atomic import DIR_MODE
from tasks.compress import BLOCK_SIZE
from tasks.errors import VerifyError
from tasks.manifest import MANIFEST_JSON, MANIFEST_TXT, Manifest
from tasks.manifest_read import read_manifest
from tasks.naming import timestamp
from tasks.restore_files import STAGING_PREFIX

# The sha256 the extraction computed while writing a staged file ("uploads/a.png"), if any.
WrittenHash = Callable[[str], "str | None"]


@dataclass(frozen=True)
class StagedArchive:
    staging: Path  # the staging folder; deleted when the restore ends
    root: Path  # staging/full_backup_YYYYMMDD_HHMMSS
    manifest: Manifest
    database: Path | None  # root/database/<artifact>, verified against the manifest
    files: int  # regular files verified


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

    Unsafe members (absolute paths, `..`, links pointing out, devices) are refused by a
    header pass before anything is written; the extraction checks them all again.
    """
    from tasks.safe_extract import extract_archive, refuse_unsafe_members

    refuse_unsafe_members(archive)  # refuse before a single byte is written, even in staging
    extraction = extract_archive(archive, staging, preserve_owner=os.geteuid() == 0)
    tops: set[str] = set()
    names = 0
    for name in chain(extraction.files, extraction.dirs, extraction.symlinks):
        if name:
            names += 1
            tops.add(name.split("/", 1)[0])
    if len(tops) != 1:
        raise VerifyError(
            f"{archive.name}: not a full backup (expected one top folder, found {len(tops)})"
        )
    top = tops.pop()
    root = staging / top
    manifest_path = root / MANIFEST_JSON
    if manifest_path.is_symlink() or not manifest_path.is_file():
        raise VerifyError(f"{archive.name}: no MANIFEST.json — not a full backup of chatbot-backup")
    limit = max(PLAIN_MANIFEST_BYTES, names * MANIFEST_BYTES_PER_MEMBER)
    if manifest_path.stat().st_size > min(limit, MAX_MANIFEST_BYTES):
        # A bomb posing as the manifest is refused before it is read.
        raise VerifyError(f"{archive.name}: MANIFEST.json is implausibly large")
    with open(manifest_path, "rb") as handle:
        manifest = read_manifest(handle)

    def written(rel: str) -> str | None:
        done = extraction.files.get(f"{top}/{rel}")
        return None if done is None else done.sha256

    database, files = verify_staged_tree(root, manifest, written)
    return StagedArchive(staging, root, manifest, database, files)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(BLOCK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _check_file(
    root: Path, rel: str, size: int, sha256: str | None, written: WrittenHash
) -> str | None:
    path = root / rel
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return f"{rel} missing"
    if not stat.S_ISREG(info.st_mode):
        return f"{rel} is not a regular file"
    if info.st_size != size:
        return f"{rel} has {info.st_size} bytes, the manifest says {size}"
    # The extraction hashed each file as it wrote it; anything else is read again.
    if sha256 is not None and (written(rel) or _sha256(path)) != sha256:
        return f"{rel} does not match its sha256"
    return None


def _not_hashed(rel: str) -> str | None:
    return None


def verify_staged_tree(
    root: Path, manifest: Manifest, written: WrittenHash = _not_hashed
) -> tuple[Path | None, int]:
    """Every entry of the manifest present and intact; nothing unlisted. VerifyError else."""
    problems: list[str] = []
    shown = 5
    count = 0

    def problem(text: str | None) -> None:
        nonlocal count
        if text is not None:
            count += 1
            if len(problems) < shown:
                problems.append(text)

    database = None
    artifact = None
    if manifest.database is not None:
        entry = manifest.database
        artifact = entry.artifact
        problem(_check_file(root, entry.artifact, entry.size, entry.sha256, written))
        database = root / entry.artifact
    files = 0
    for item in manifest.entries.entries():
        path = root / item.path
        if item.type == "file":
            files += 1
            problem(_check_file(root, item.path, item.size, item.sha256, written))
        elif item.type == "dir":
            if path.is_symlink() or not path.is_dir():
                problem(f"{item.path}/ missing")
        elif item.type == "symlink":
            if not path.is_symlink() or os.readlink(path) != item.target:
                problem(f"{item.path} is not the recorded link")
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            if rel in (MANIFEST_JSON, MANIFEST_TXT, artifact):
                continue
            listed = manifest.entries.get(rel)
            if listed is None or listed.type not in ("file", "symlink"):
                problem(f"{rel} is not listed in the manifest")
    if count:
        more = f"; and {count - shown} more" if count > shown else ""
        raise VerifyError(f"the archive does not match its MANIFEST.json: {'; '.join(problems)}{more}")
    return database, files
