"""One storage abstraction: a folder on an fsspec filesystem, local or off-site.

`Destination` is put / open / list / stat / delete / sha256, plus `is_transient(exc)`,
over any fsspec filesystem: the local (or mounted) folder, S3 (s3fs), GCS (gcsfs), Azure
Blob (adlfs) and SSH servers (sshfs, SFTP over asyncssh). It knows nothing of backups;
`tasks.offsite` builds the backup-aware helpers on top of it.

A half-finished upload never carries its final name:
- local folders and SSH servers ("rename" commit): the data goes to a hidden
  `.NAME.partial-*` name first and is renamed when complete (POSIX rename over SFTP);
- object stores ("direct" commit): S3 multipart uploads, GCS resumable uploads and Azure
  block lists only create the object when they are completed, so the data goes straight
  to its final key (a copy-and-delete "rename" would double the transfer). Callers
  write a small marker object last (`tasks.offsite.copy` writes the sha256 sidecar) so that a
  completed data object whose run died before verification is still seen as unfinished.

`parse_destination` turns `OFFSITE_DESTINATION` into a Destination without touching the
network: a malformed destination or missing credentials is a ConfigError before any work
starts. Credentials are taken the way each SDK expects them (SPEC: Configuration) and
never appear in a message: the display form of a destination carries none.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from tasks.core.errors import ConfigError
from tasks.core.redact import register_secret, strip_url_password
from tasks.storage.transient import is_transient as classify_transient

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from tasks.core.settings import Settings

Scheme = Literal["s3", "gs", "az", "ssh", "file"]
Commit = Literal["rename", "direct"]

# Upload in 8 MiB parts: memory stays bounded (s3fs reads a file under two parts whole,
# gcsfs reads whole anything under 5 MiB), and parts are retried cheaply by the SDKs.
PART_SIZE = 8 * 2**20
READ_CHUNK = 8 * 2**20
PARTIAL_MARKER = ".partial-"

# S3 storage classes an upload may use. GLACIER and DEEP_ARCHIVE are left out on
# purpose: an object stored there cannot be read back, so it could not be verified;
# move copies there with the lifecycle policy (`offsite-setup`) instead.
S3_STORAGE_CLASSES = (
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "REDUCED_REDUNDANCY",
)

_SCHEME_ALIASES: dict[str, Scheme] = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gs",
    "gcs": "gs",
    "az": "az",
    "abfs": "az",
    "sftp": "ssh",
    "ssh": "ssh",
    "file": "file",
}
_URL = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<rest>.*)$")
# scp-style `[user@]host:path`: a colon before any slash (as scp and rsync decide).
_SCP = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?"
    r"(?P<host>[A-Za-z0-9][A-Za-z0-9._-]*|\[[0-9A-Fa-f:.]+\]):(?P<path>.*)$"
)
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_GCS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_AZ_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


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

    # -- the interface ------------------------------------------------------------
    def put(self, local: Path, name: str, progress: Callable[[int], None] | None = None) -> None:
        """Upload `local` as `name`, streamed; the final name appears only when complete."""
        self.ensure_root()
        callback = _ProgressCallback(progress) if progress is not None else None
        extra = {"callback": callback} if callback is not None else {}
        if self.commit == "direct":
            self.fs.put_file(str(local), self.path(name), **self._put_options, **extra)
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
            self.fs.pipe_file(self.path(name), data)
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
        done = 0
        with open(local, "rb") as src, self.fs.open(partial, "wb") as dst:
            while chunk := src.read(READ_CHUNK):
                dst.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done)

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


# --------------------------------------------------------------------------- parsing


def parse_destination(
    text: str,
    *,
    app_root: Path | None = None,
    s3_storage_class: str | None = None,
    ssh_config: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Destination:
    """Map an `OFFSITE_DESTINATION` value to a Destination; ConfigError when it cannot be.

    Nothing is connected here; credentials are only checked for presence.
    """
    env = os.environ if env is None else env
    value = (text or "").strip()
    if not value:
        raise ConfigError("OFFSITE_DESTINATION is empty")
    match = _URL.match(value)
    if match:
        scheme = _SCHEME_ALIASES.get(match.group("scheme").lower())
        rest = match.group("rest")
        if scheme is None:
            raise ConfigError(
                f"OFFSITE_DESTINATION: unsupported scheme {match.group('scheme')!r} "
                "(use s3://, gs://, az://, user@host:/path or a local path)"
            )
        if scheme == "file":
            return _local(rest, app_root)
        if scheme == "ssh":
            return _ssh_url(rest, ssh_config)
        return _object_store(scheme, rest, s3_storage_class, env)
    scp = _SCP.match(value)
    if scp and "/" not in value.split(":", 1)[0]:
        return _ssh(scp.group("user"), scp.group("host"), None, scp.group("path"), ssh_config)
    return _local(value, app_root)


def _split_bucket(scheme: str, rest: str) -> tuple[str, str]:
    if "@" in rest.split("/", 1)[0]:
        # s3://KEY:SECRET@bucket would put a secret where every log line shows it.
        register_secret(rest.split("@", 1)[0])
        raise ConfigError(
            f"OFFSITE_DESTINATION: credentials in a {scheme}:// URL are not supported; "
            "give them the way the SDK expects (see the configuration table)"
        )
    bucket, _, prefix = rest.partition("/")
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ConfigError(f"OFFSITE_DESTINATION: '.' and '..' are not allowed in {scheme}:// paths")
    return bucket, "/".join(parts)


def _object_store(
    scheme: Scheme, rest: str, storage_class: str | None, env: Mapping[str, str]
) -> Destination:
    bucket, prefix = _split_bucket(scheme, rest)
    noun = "container" if scheme == "az" else "bucket"
    pattern = {"s3": _S3_BUCKET, "gs": _GCS_BUCKET, "az": _AZ_CONTAINER}[scheme]
    if not bucket:
        raise ConfigError(f"OFFSITE_DESTINATION: {scheme}:// needs a {noun} name")
    if not pattern.match(bucket):
        limits = (
            "3-63 lowercase letters, digits and hyphens"
            if scheme == "az"
            else ("3-63 lowercase letters, digits, dots and hyphens")
        )
        raise ConfigError(f"OFFSITE_DESTINATION: {bucket!r} is not a valid {noun} name ({limits})")
    root = f"{bucket}/{prefix}" if prefix else bucket
    display = f"{scheme}://{root}"
    options: dict[str, Any] = {"bucket": bucket, "prefix": prefix}
    read_options = {"block_size": READ_CHUNK, "cache_type": "none"}
    if scheme == "s3":
        make_fs, put_options = _s3(env, storage_class)
        options["storage_class"] = _storage_class(storage_class)
    elif scheme == "gs":
        make_fs, put_options = _gcs(env)
    else:
        make_fs, put_options = _azure(env)
    return Destination(scheme, root, display, make_fs, "direct", put_options, read_options, options)


def _storage_class(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    name = value.strip().upper()
    if name not in S3_STORAGE_CLASSES:
        hint = (
            " (objects there cannot be read back to verify them; use `chatbot-backup "
            "offsite-setup` to move copies to Glacier after OFFSITE_GLACIER_DAYS)"
            if name in ("GLACIER", "DEEP_ARCHIVE")
            else ""
        )
        raise ConfigError(
            f"OFFSITE_S3_STORAGE_CLASS: must be one of {', '.join(S3_STORAGE_CLASSES)}, "
            f"got {value!r}{hint}"
        )
    return name


def _s3(
    env: Mapping[str, str], storage_class: str | None
) -> tuple[Callable[[], AbstractFileSystem], dict[str, Any]]:
    klass = _storage_class(storage_class)
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    _require_aws_credentials(env)
    register_secret(env.get("AWS_SECRET_ACCESS_KEY"))
    register_secret(env.get("AWS_SESSION_TOKEN"))
    # Keys given in `env` are passed on; otherwise botocore's own chain (profile, role).
    keys = {
        arg: env[var]
        for arg, var in (
            ("key", "AWS_ACCESS_KEY_ID"),
            ("secret", "AWS_SECRET_ACCESS_KEY"),
            ("token", "AWS_SESSION_TOKEN"),
        )
        if env.get(var)
    }

    def make() -> AbstractFileSystem:
        import s3fs

        client_kwargs: dict[str, Any] = {}
        if endpoint:
            client_kwargs["endpoint_url"] = endpoint
        if region:
            client_kwargs["region_name"] = region
        fs = s3fs.S3FileSystem(
            skip_instance_cache=True,
            use_listings_cache=False,
            max_concurrency=4,
            client_kwargs=client_kwargs,
            # A short botocore retry: the outer loop (tasks.core.backoff) owns the waiting.
            config_kwargs={
                "retries": {"max_attempts": 2, "mode": "standard"},
                "connect_timeout": 10,
                "read_timeout": 60,
            },
            s3_additional_kwargs={"StorageClass": klass} if klass else None,
            **keys,
        )
        fs.retries = 2  # s3fs' own retry loop (class default 5)
        return fs

    return make, {"chunksize": PART_SIZE}


def _require_aws_credentials(env: Mapping[str, str]) -> None:
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return
    if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_SECRET_ACCESS_KEY"):
        raise ConfigError(
            "S3 credentials incomplete: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    import botocore.session

    try:
        found = botocore.session.Session().get_credentials()
    except Exception:  # a broken profile file is as good as none
        found = None
    if found is None:
        raise ConfigError(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE, or run where an instance role is available)"
        )


def _gcs(env: Mapping[str, str]) -> tuple[Callable[[], AbstractFileSystem], dict[str, Any]]:
    emulator = env.get("STORAGE_EMULATOR_HOST")
    credentials = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    token: Any
    if emulator:
        token = "anon"
    elif credentials:
        if not os.access(credentials, os.R_OK):
            raise ConfigError(
                f"GOOGLE_APPLICATION_CREDENTIALS: cannot read {credentials} "
                "(a service-account JSON key file)"
            )
        token = credentials
    else:
        _require_google_default_credentials()
        token = None
    project = env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCLOUD_PROJECT")

    def make() -> AbstractFileSystem:
        # gcsfs reads this when it is imported; its default makes every bucket call
        # wait ~60 s on a gRPC probe for a feature (zonal buckets) we do not use.
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        import gcsfs

        kwargs: dict[str, Any] = {"skip_instance_cache": True, "token": token}
        if emulator:
            kwargs["endpoint_url"] = emulator
        if project:
            kwargs["project"] = project
        return gcsfs.GCSFileSystem(**kwargs)

    return make, {"chunksize": PART_SIZE}


def _require_google_default_credentials() -> None:
    try:
        import google.auth

        google.auth.default()
    except Exception:
        raise ConfigError(
            "no Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS to a "
            "service-account key file (or STORAGE_EMULATOR_HOST for an emulator)"
        ) from None


def _azure(env: Mapping[str, str]) -> tuple[Callable[[], AbstractFileSystem], dict[str, Any]]:
    connection = env.get("AZURE_STORAGE_CONNECTION_STRING")
    account = env.get("AZURE_STORAGE_ACCOUNT_NAME") or env.get("AZURE_STORAGE_ACCOUNT")
    key = env.get("AZURE_STORAGE_KEY")
    sas = env.get("AZURE_STORAGE_SAS_TOKEN")
    if connection:
        for part in connection.split(";"):
            name, _, value = part.partition("=")
            if name.strip().lower() in ("accountkey", "sharedaccesssignature"):
                register_secret(value.strip())
        if "accountname=" not in connection.lower() and "blobendpoint=" not in connection.lower():
            raise ConfigError(
                "AZURE_STORAGE_CONNECTION_STRING does not look like a connection string "
                "(no AccountName or BlobEndpoint)"
            )
    elif not (account and (key or sas)):
        raise ConfigError(
            "no Azure credentials: set AZURE_STORAGE_CONNECTION_STRING (or "
            "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN)"
        )

    def make() -> AbstractFileSystem:
        from adlfs import AzureBlobFileSystem

        if connection:
            fs = AzureBlobFileSystem(connection_string=connection, skip_instance_cache=True)
        else:
            fs = AzureBlobFileSystem(
                account_name=account, account_key=key, sas_token=sas, skip_instance_cache=True
            )
        fs.service_client = _tuned_azure_client(connection, account, key, sas)
        return fs

    return make, {"max_concurrency": 2}


def _tuned_azure_client(
    connection: str | None, account: str | None, key: str | None, sas: str | None
) -> Any:
    """The blob service client adlfs would make, with bounded retries and memory.

    The SDK's default retry waits 15 s, 18 s, 24 s ... on a refused connection (about 85 s
    per failed call, measured); the outer loop owns the waiting, so the SDK retries only
    briefly. Blocks of 4 MiB and single PUTs up to 8 MiB keep memory bounded (its
    defaults read up to 64 MiB whole).
    """
    from azure.storage.blob.aio import BlobServiceClient, ExponentialRetry

    tuning: dict[str, Any] = {
        "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=1),
        "max_single_put_size": PART_SIZE,
        "max_block_size": 4 * 2**20,
        "connection_timeout": 10,
    }
    if connection:
        return BlobServiceClient.from_connection_string(connection, **tuning)
    url = f"https://{account}.blob.core.windows.net"
    if key:
        return BlobServiceClient(url, credential=key, **tuning)
    token = sas or ""
    return BlobServiceClient(url + (token if token.startswith("?") else f"?{token}"), **tuning)


def _ssh_url(rest: str, ssh_config: Path | None) -> Destination:
    netloc, slash, path = rest.partition("/")
    user, _, hostport = netloc.rpartition("@")
    if ":" in user:
        register_secret(user.split(":", 1)[1])
        raise ConfigError(
            "OFFSITE_DESTINATION: passwords in sftp:// URLs are not supported; use an SSH key"
        )
    host, _, port_text = hostport.partition(":")
    port = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"OFFSITE_DESTINATION: bad SSH port {port_text!r}")
        port = int(port_text)
    return _ssh(user or None, host, port, slash + path, ssh_config)


def _ssh(
    user: str | None, host: str, port: int | None, path: str, ssh_config: Path | None
) -> Destination:
    if not host:
        raise ConfigError("OFFSITE_DESTINATION: SSH destination needs a host (user@host:/path)")
    if not path or path == "/":
        raise ConfigError(
            "OFFSITE_DESTINATION: SSH destination needs a folder after the colon (user@host:/path)"
        )
    if any(p == ".." for p in path.split("/")):
        raise ConfigError("OFFSITE_DESTINATION: '..' is not allowed in the SSH path")
    if ssh_config is not None and not os.access(ssh_config, os.R_OK):
        raise ConfigError(f"OFFSITE_SSH_CONFIG: cannot read {ssh_config}")
    host = host.strip("[]")
    display = f"{user + '@' if user else ''}{host}:{path}"

    def make() -> AbstractFileSystem:
        from sshfs import SSHFileSystem

        kwargs: dict[str, Any] = {
            "skip_instance_cache": True,
            # () = asyncssh's defaults: the user's ~/.ssh/config and ~/.ssh/known_hosts
            # (or the config's UserKnownHostsFile). sshfs would otherwise pass None,
            # which skips host key checking altogether.
            "known_hosts": (),
            "config": [str(ssh_config)] if ssh_config is not None else (),
            "connect_timeout": 15,
            "keepalive_interval": 15,
        }
        if user:
            kwargs["username"] = user
        if port:
            kwargs["port"] = port
        return SSHFileSystem(host, **kwargs)

    return Destination("ssh", path, display, make, "rename", options={"host": host})


def _local(text: str, app_root: Path | None) -> Destination:
    path = Path(os.path.expanduser(text))
    if not path.is_absolute():
        path = (app_root or Path.cwd()) / path
    path = Path(os.path.normpath(path))

    def make() -> AbstractFileSystem:
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem()

    return Destination("file", str(path), str(path), make, "rename")


# --------------------------------------------------------------------------- settings


def open_destination(settings: Settings, text: str | None = None) -> Destination:
    """The off-site destination the settings name (or `text`), checked but not connected."""
    value = text if text is not None else settings.offsite_destination
    if not value or not value.strip():
        raise ConfigError(
            "OFFSITE_DESTINATION is not set: --offsite needs s3://bucket/prefix, "
            "gs://bucket/prefix, az://container/prefix, user@host:/path or a local path"
        )
    ssh_config = settings.offsite_ssh_config
    return parse_destination(
        value,
        app_root=settings.app_root,
        s3_storage_class=settings.offsite_s3_storage_class,
        ssh_config=settings.resolve(ssh_config) if ssh_config is not None else None,
    )


def split_remote_url(url: str) -> tuple[str, str]:
    """`s3://b/p/NAME` -> (`s3://b/p`, `NAME`); the same for every destination form."""
    value = url.strip().rstrip("/")
    head, sep, name = value.rpartition("/")
    if not sep or not name or re.fullmatch(r"[a-zA-Z][a-zA-Z0-9+.-]*:/?", head):
        raise ConfigError(f"not a backup file URL: {strip_url_password(url)!r}")
    return (head or "/"), name


def is_remote_url(text: str) -> bool:
    """True for s3://, gs://, az://, sftp:// URLs and user@host:/path; False for local paths."""
    value = text.strip()
    match = _URL.match(value)
    if match:
        return _SCHEME_ALIASES.get(match.group("scheme").lower(), "file") != "file"
    scp = _SCP.match(value)
    return bool(scp) and "/" not in value.split(":", 1)[0]
