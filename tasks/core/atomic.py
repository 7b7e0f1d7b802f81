"""Safe writes: temporary name, fsync, rename, fsync of the folder.

No partial file ever carries a final name, even when the process is killed: the data
goes to a hidden `.NAME.partial-*` file first, which no backup pattern matches, and
the rename is the commit. New files are 0600; folders this tool creates are 0700.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

PARTIAL_MARKER = ".partial-"
FILE_MODE = 0o600
DIR_MODE = 0o700
# The errors that mean "the folder is full", whatever file system or quota says it.
OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (0700) if missing; an existing folder keeps its mode."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.chmod(path, DIR_MODE)
    return path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def partial_path(final: Path) -> Path:
    return final.with_name(f".{final.name}{PARTIAL_MARKER}{os.getpid()}-{secrets.token_hex(4)}")


def is_partial(name: str) -> bool:
    return name.startswith(".") and PARTIAL_MARKER in name


@contextlib.contextmanager
def atomic_writer(
    final: Path, overwrite: bool = False, on_open: Callable[[Path], None] | None = None
) -> Iterator[BinaryIO]:
    """Yield a binary file; on clean exit it becomes `final`, on error it vanishes.
    `on_open` gets the temporary file's path once it exists (a reader may follow it)."""
    tmp = partial_path(final)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    handle = os.fdopen(fd, "wb", buffering=1 << 20)
    try:
        if on_open is not None:
            on_open(tmp)
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        if not overwrite and final.exists():
            raise FileExistsError(f"{final} already exists")
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        handle.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(final: Path, text: str) -> None:
    with atomic_writer(final, overwrite=True) as out:
        out.write(text.encode("utf-8"))


def remove_stale_partials_of(final: Path) -> None:
    """Delete `final`'s own partial files left by killed writers. Call only while
    holding a lock that every writer of `final` holds."""
    prefix = f".{final.name}{PARTIAL_MARKER}"
    with contextlib.suppress(FileNotFoundError):
        for entry in final.parent.iterdir():
            if entry.name.startswith(prefix):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()


def remove_stale_partials(folder: Path) -> list[Path]:
    """Delete partial files left by killed runs. Call only while holding the folder lock."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if is_partial(entry.name) and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def exchange_paths(first: Path, second: Path) -> bool:
    """Swap two existing entries in one step (renameat2 RENAME_EXCHANGE); False if the
    file system or kernel cannot, so the caller falls back to two renames.

    With two renames a live path is briefly missing; a process killed in between leaves
    the application without its database or uploads folder. An exchange never does.
    """
    import ctypes
    import errno

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    done = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(first))


def same_entry(path: Path, inode: int | None) -> bool:
    """Whether `path` is the entry whose inode number was recorded (without following links)."""
    try:
        return inode is not None and os.lstat(path).st_ino == inode
    except FileNotFoundError:
        return False
