"""File trees for round-trip tests: what a tree holds, as comparable facts, and archive edits.

`tree_facts` walks a folder with bytes paths (names need not be UTF-8) and never follows
a link; it records, per path, the type, the permission bits, the size and sha256 of
files, the target of links, and which files are one inode (hard links), so that two
trees compare equal only when a restore brought every one of these back.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

Facts = dict[bytes, tuple[object, ...]]


def _sha256(path: bytes) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def tree_facts(root: Path | bytes, skip: Callable[[bytes], bool] = lambda rel: False) -> Facts:
    """rel path (bytes) -> facts, for everything below `root` (not `root` itself).

    A file's last fact is the sorted tuple of every name of its inode in the tree when
    it has more than one (hard links), else None: equal trees have equal tuples.
    """
    top = os.fsencode(root)
    facts: Facts = {}
    names: dict[tuple[int, int], list[bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, top)
            if skip(rel):
                if name in dirnames:
                    dirnames.remove(name)
                continue
            info = os.lstat(path)
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                facts[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                facts[rel] = ("dir", oct(mode))
            elif stat.S_ISREG(info.st_mode):
                names.setdefault((info.st_dev, info.st_ino), []).append(rel)
                facts[rel] = ("file", oct(mode), info.st_size, _sha256(path))
            else:
                facts[rel] = ("other", oct(info.st_mode))
    for group in names.values():
        linked = tuple(sorted(group)) if len(group) > 1 else None
        for rel in group:
            facts[rel] = (*facts[rel], linked)
    return facts


def renamed(facts: Facts, rename: Callable[[bytes], bytes | None]) -> Facts:
    """The same facts with every path (and hard-link partner) renamed; None drops a path."""
    out: Facts = {}
    for rel, fact in facts.items():
        new = rename(rel)
        if new is None:
            continue
        if fact[0] == "file" and fact[-1] is not None:
            partners = tuple(sorted(n for n in (rename(p) for p in fact[-1]) if n is not None))  # type: ignore[attr-defined]
            fact = (*fact[:-1], partners)
        out[new] = fact
    return out


# What every run rewrites in BACKUP_DIR: the lock file and the metrics.
NOT_DATA = {b".chatbot-backup.lock", b"metrics"}


def installation_state(root: Path, backups: Path) -> Facts:
    """Everything under the application root and the backup folder, hard links included."""
    state = {b"app/" + k: v for k, v in tree_facts(root).items()}
    if backups.exists():
        ours = tree_facts(backups, skip=lambda rel: rel.split(b"/", 1)[0] in NOT_DATA)
        state.update({b"backups/" + k: v for k, v in ours.items()})
    return state


def rewrite_members(
    source: Path,
    target: Path,
    edit: Callable[[tarfile.TarInfo, bytes | None], list[tuple[tarfile.TarInfo, bytes | None]]],
) -> Path:
    """Copy a .tar.gz member by member (order kept); `edit` may drop, change or add members.

    `edit(member, data)` returns the members to write in its place (data None: no body).
    """
    with (
        tarfile.open(source, "r:gz") as src,
        tarfile.open(target, "w:gz", format=tarfile.PAX_FORMAT) as dst,
    ):
        for member in src:
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            for info, body in edit(member, data):
                if body is not None:
                    info.size = len(body)
                    dst.addfile(info, io.BytesIO(body))
                else:
                    dst.addfile(info)
    return target


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    return info
