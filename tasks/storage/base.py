"""The storage interface: `Destination`, a folder on an fsspec filesystem.

`Destination` is put / open / list / stat / delete / sha256, plus `is_transient(exc)`,
over any fsspec filesystem; one module per backend (tasks.storage.local, s3, gcs, azure,
ssh) makes the filesystem and its options, and tasks.storage.destination turns
`OFFSITE_DESTINATION` into one. It knows nothing of backups; `tasks.offsite` builds the
backup-aware helpers on top of it.

A half-finished upload never carries its final name:
- local folders and SSH servers ("rename" commit): the data goes to a hidden
  `.NAME.partial-*` name first and is renamed when complete (POSIX rename over SFTP);
- object stores ("direct" commit): S3 multipart uploads, GCS resumable uploads and Azure
  block lists only create the object when they are completed, so the data goes straight
  to its final key (a copy-and-delete "rename" would double the transfer). Callers
  write a small marker object last (`tasks.offsite.copy` writes the sha256 sidecar) so that a
  completed data object whose run died before verification is still seen as unfinished.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from tasks.storage import parts
from tasks.storage.throttle import Throttle
from tasks.storage.transient import is_transient as classify_transient

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

Scheme = Literal["s3", "gs", "az", "ssh", "file"]


Commit = Literal["rename", "direct"]


PART_SIZE = parts.PART_SIZE


READ_CHUNK = 8 * 2**20


MIN_PART = 5 * 2**20  # S3's smallest multipart part (GCS and Azure take any)


PARTIAL_MARKER = ".partial-"


@dataclass(frozen=True)
class RemoteEntry:
    """A file directly under the destination folder."""

    name: str
    size: int
    modified: datetime | None = None


class _ProgressCallback:
    """Adapts fsspec's callback protocol to `progress(bytes_done)`."""

    def __new__(cls, progress: Callable[[int], None]) -> Any:
        from fsspec.callbacks import Callback

        class _Callback(Callback):
            def call(self, *args: Any, **kwargs: Any) -> None:
                progress(int(self.value or 0))

        return _Callback()


class Destination:
    """A folder on a filesystem: where backups are put, listed, read back and deleted."""

    def __init__(
        self,
        scheme: Scheme,
        root: str,
        display: str,
        make_fs: Callable[[], AbstractFileSystem],
        commit: Commit,
        put_options: Mapping[str, Any] | None = None,
        read_options: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.scheme = scheme
        self.root = root.rstrip("/") or "/"
        self.display = display
        self.commit = commit
        self.options = dict(options or {})  # backend facts, e.g. bucket, storage_class
        self._make_fs = make_fs
        self._put_options = dict(put_options or {})
        self._read_options = dict(read_options or {})
        self._fs: AbstractFileSystem | None = None
        self._root_ready = False
        # Set by tasks.storage.destination from the settings:
        self.lock: tuple[str, int] | None = None  # S3 Object Lock (mode, days) on every write
        self.bandwidth: float | None = None  # upload cap, bytes per second
        self.source_text: str | None = None  # the OFFSITE_DESTINATION entry it was made from

    def __repr__(self) -> str:
        return f"Destination({self.display!r})"

    def __str__(self) -> str:
        return self.display

    # -- connection ---------------------------------------------------------------
    @property
    def fs(self) -> AbstractFileSystem:
        """The filesystem, connected on first use (an SSH filesystem connects here)."""
        if self._fs is None:
            self._fs = self._make_fs()
        return self._fs

    def reset(self) -> None:
        """Drop the connection so the next call makes a new one (after a transient error)."""
        self._fs = None
        self._root_ready = False

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        return classify_transient(exc)

    # -- paths ----------------------------------------------------------------------
    def path(self, name: str) -> str:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"not a plain file name: {name!r}")
        return f"{self.root.rstrip('/')}/{name}"

    def url(self, name: str) -> str:
        """Display form of a file at this destination, e.g. `s3://bucket/prefix/NAME`."""
        sep = "" if self.display.endswith(("/", ":")) else "/"
        return f"{self.display}{sep}{name}"

    @staticmethod
    def partial_name(name: str) -> str:
        return f".{name}{PARTIAL_MARKER}{os.getpid()}-{secrets.token_hex(4)}"

    @staticmethod
    def is_partial(name: str) -> bool:
        return name.startswith(".") and PARTIAL_MARKER in name

    def ensure_root(self) -> None:
        """Create the destination folder on local disks and SSH servers if it is missing.

        Only the last component is created: when its parent is missing too (a NAS share
        that is not mounted, a typo), writing to the local disk underneath instead would
        silently defeat the off-site copy. Buckets and containers are never created.
        """
        if self._root_ready or self.commit != "rename":
            self._root_ready = True
            return
        fs = self.fs
        if not fs.isdir(self.root):
            # A relative SSH path (user@host:backups) lives in the login's home folder.
            parent = posixpath.dirname(self.root.rstrip("/")) or "."
            if not fs.isdir(parent):
                raise FileNotFoundError(
                    f"{parent} does not exist (is the share mounted? create it first)"
                )
            with contextlib.suppress(FileExistsError):
                fs.mkdir(self.root, create_parents=False)
            if self.scheme == "file":
                os.chmod(self.root, 0o700)
        self._root_ready = True

    # -- immutability ---------------------------------------------------------------
    def write_options(self) -> dict[str, Any]:
        """Extra arguments of every object written: the Object Lock retention, on S3."""
        if self.lock is None or self.scheme != "s3":
            return {}
        from tasks.storage.s3 import lock_kwargs

        return lock_kwargs(*self.lock)

    def locked_until(self, name: str) -> datetime | None:
        """When the Object Lock retention of `name` ends (None: not locked, or not S3)."""
        if self.scheme != "s3":
            return None
        from tasks.storage.s3 import head_object

        try:
            head = head_object(self.fs, self.path(name))
        except FileNotFoundError:
            return None
        until = head.get("ObjectLockRetainUntilDate")
        if not isinstance(until, datetime):
            return None
        return until if until.tzinfo else until.replace(tzinfo=UTC)

    # -- the interface ------------------------------------------------------------
    def put(self, local: Path, name: str, progress: Callable[[int], None] | None = None) -> None:
        """Upload `local` as `name`, streamed; the final name appears only when complete."""
        self.ensure_root()
        callback = _ProgressCallback(progress) if progress is not None else None
        extra = {"callback": callback} if callback is not None else {}
        if self.commit == "direct" and self.bandwidth is not None:
            self._put_throttled(local, self.path(name), progress)
        elif self.commit == "direct":
            path = self.path(name)
            self.fs.put_file(str(local), path, **self._put_options, **self.write_options(), **extra)
        else:
            self._put_renamed(local, name, progress, extra)
        if progress is not None:  # SDKs report unevenly (Azure skips the last block)
            progress(local.stat().st_size)

    def _put_renamed(
        self,
        local: Path,
        name: str,
        progress: Callable[[int], None] | None,
        extra: Mapping[str, Any],
    ) -> None:
        partial = self.path(self.partial_name(name))
        try:
            if self.scheme == "file":
                self._copy_local(local, partial, progress)
            elif self.bandwidth is not None:
                self._put_throttled(local, partial, progress)
            else:
                self.fs.put_file(str(local), partial, **self._put_options, **extra)
            self._commit(partial, self.path(name))
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.rm_file(partial)
            raise

    def get(self, name: str, local: Path) -> None:
        """Download `name` to `local`, streamed; `local` appears only when complete (0600)."""
        partial = local.with_name(self.partial_name(local.name))
        try:
            self.fs.get_file(self.path(name), str(partial))
            os.chmod(partial, 0o600)
            os.replace(partial, local)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def put_bytes(self, name: str, data: bytes) -> None:
        """Write a small file (a sidecar) under the same all-or-nothing rule."""
        self.ensure_root()
        if self.commit == "direct":
            self.fs.pipe_file(self.path(name), data, **self.write_options())
            return
        partial = self.path(self.partial_name(name))
        try:
            self.fs.pipe_file(partial, data)
            self._commit(partial, self.path(name))
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.rm_file(partial)
            raise

    def _copy_local(
        self, local: Path, partial: str, progress: Callable[[int], None] | None
    ) -> None:
        # fsspec's local put_file is a bare shutil.copyfile: no progress reports.
        throttle = Throttle(self.bandwidth) if self.bandwidth is not None else None
        size = throttle.chunk if throttle is not None else READ_CHUNK
        done = 0
        with open(local, "rb") as src, self.fs.open(partial, "wb") as dst:
            while chunk := src.read(size):
                dst.write(chunk)
                done += len(chunk)
                if throttle is not None:
                    throttle.sent(len(chunk))
                if progress is not None:
                    progress(done)

    def _put_throttled(
        self, local: Path, path: str, progress: Callable[[int], None] | None
    ) -> None:
        """An upload under OFFSITE_BANDWIDTH_LIMIT: streamed through a Throttle.

        Object stores still upload in parts (multipart, resumable, blocks), and an
        object appears only when the stream is closed.
        """
        assert self.bandwidth is not None
        throttle = Throttle(self.bandwidth)
        # The smallest part S3 accepts: parts go out while the stream is throttled, so
        # only the last one is sent at close, outside the throttle's reckoning.
        options: dict[str, Any] = {"block_size": MIN_PART} if self.commit == "direct" else {}
        done = 0
        dst = self.fs.open(path, "wb", **options, **self.write_options())
        try:
            with open(local, "rb") as src:
                while chunk := src.read(throttle.chunk):
                    dst.write(chunk)
                    done += len(chunk)
                    throttle.sent(len(chunk))
                    if progress is not None:
                        progress(done)
        except BaseException:
            # Closing would publish what was sent so far: abort the upload instead.
            with contextlib.suppress(Exception):
                dst.discard()
            raise
        dst.close()

    def _commit(self, partial: str, final: str) -> None:
        if self.scheme == "file":
            # A local or mounted folder gets the same care as BACKUP_DIR (tasks.core.atomic).
            os.chmod(partial, 0o600)
            fd = os.open(partial, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(partial, final)
            dir_fd = os.open(os.path.dirname(final) or ".", os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            return
        self.fs.mv(partial, final)  # sshfs: posix-rename@openssh.com, atomic, replaces

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        """Read `name` as a stream (FileNotFoundError when it is not there)."""
        with self.fs.open(self.path(name), "rb", **self._read_options) as handle:
            yield handle

    def list(self) -> list[RemoteEntry]:
        """Files directly under the folder (none when the folder does not exist yet)."""
        fs = self.fs
        with contextlib.suppress(Exception):
            fs.invalidate_cache(self.root)
        try:
            entries = fs.ls(self.root, detail=True)
        except FileNotFoundError:
            return []
        out = []
        for entry in entries:
            if entry.get("type") != "file":
                continue
            name = str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
            out.append(RemoteEntry(name, int(entry.get("size") or 0), _modified(entry)))
        return sorted(out, key=lambda e: e.name)

    def stat(self, name: str) -> int | None:
        """The size of `name`, or None when there is no such file."""
        fs = self.fs
        path = self.path(name)
        with contextlib.suppress(Exception):
            fs.invalidate_cache(path)
        try:
            info = fs.info(path)
        except FileNotFoundError:
            return None
        if info.get("type") != "file":
            return None
        return int(info.get("size") or 0)

    def info(self, name: str) -> dict[str, Any]:
        """The backend's own description of `name` (storage class, times, ...)."""
        return dict(self.fs.info(self.path(name)))

    def read_bytes(self, name: str, limit: int = 1 << 20) -> bytes:
        """A small file whole (sidecars); refuses anything larger than `limit`."""
        with self.open(name) as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"{name} is larger than {limit} bytes")
        return bytes(data)

    def delete(self, name: str) -> None:
        """Remove `name`; a file that is already gone is fine."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(name))

    def sha256(self, name: str) -> tuple[str, int]:
        """(sha256 hex, size) of `name`, read as a stream."""
        digest = hashlib.sha256()
        size = 0
        with self.open(name) as handle:
            while chunk := handle.read(READ_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size


def _modified(entry: Mapping[str, Any]) -> datetime | None:
    for key in ("LastModified", "last_modified", "updated", "mtime", "time"):
        value = entry.get(key)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None
