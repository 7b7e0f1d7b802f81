"""Backups at a Destination: copy one there (verified), list them, prune, verify, fetch.

Layout at the destination folder, for a backup NAME:
- `NAME` (or `NAME.age` when client-side encryption is on): the data;
- `REMOTE.meta.json`: the local `.meta.json` (tier, kind, ...) plus an `offsite` record
  (the local backup's sha256 and size, the remote bytes' sha256 and size, encryption);
- `REMOTE.sha256`: `sha256sum` format for the remote bytes, written LAST, after the
  remote copy was read back and matched: it is the commit marker. A data object without
  it is an unfinished copy — never counted as a backup, uploaded again by the next sync.

Every network step runs through `tasks.core.backoff.retry_call` with the destination's
`is_transient`; the connection is dropped and remade between attempts.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tasks.catalog.records import BackupRecord, read_meta
from tasks.core.atomic import ensure_private_dir
from tasks.core.backoff import RetriesExhausted, RetryPolicy, retry_call
from tasks.core.errors import BackupError, ConfigError, DestinationError, SourceError, VerifyError
from tasks.core.naming import (
    META_SUFFIX,
    SIDECAR_SUFFIX,
    BackupName,
    parse_backup_name,
)
from tasks.core.redact import redact
from tasks.core.tiers import DEFAULT_TIER, TIERS
from tasks.offsite.encryption import (
    AGE_SUFFIX,
    AgeEncryption,
    decrypt_file,
    encrypt_file,
    identity_from_settings,
)
from tasks.retention.plan import RetentionPolicy, plan
from tasks.storage.destination import Destination, open_destination, split_remote_url
from tasks.stream.checksum import read_sidecar, sha256_file, write_sidecar

if TYPE_CHECKING:
    from tasks.core.settings import Settings

T = TypeVar("T")
Log = Callable[[str], None]

STAGING_DIR = ".offsite-staging"
# A hidden partial left by a killed upload (local and SSH destinations) is removed by
# a later prune once it is clearly abandoned.
STALE_PARTIAL_AGE = timedelta(hours=24)


# --------------------------------------------------------------------------- names


def remote_name_for(name: str, encrypted: bool) -> str:
    return name + AGE_SUFFIX if encrypted else name


def backup_name_of(remote_name: str) -> BackupName | None:
    """The backup a remote data object holds (`NAME` or `NAME.age`), or None."""
    plain = remote_name[: -len(AGE_SUFFIX)] if remote_name.endswith(AGE_SUFFIX) else remote_name
    return parse_backup_name(plain)


def _sidecar_line(sha256: str, name: str) -> bytes:
    return f"{sha256}  {name}\n".encode()


def parse_sidecar_text(text: str, name: str) -> str | None:
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[1].lstrip("*") == name:
            digest = parts[0].lower()
            if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
                return digest
    return None


# --------------------------------------------------------------------------- retries


def policy_from_settings(settings: Settings) -> RetryPolicy:
    window = float(settings.offsite_retry_seconds)
    return RetryPolicy(window_seconds=window, first_delay=min(1.0, window / 4), max_delay=30.0)


def describe_error(exc: BaseException, dest: Destination) -> str:
    """One line for the operator, without secrets."""
    if isinstance(exc, RetriesExhausted):
        return (
            f"gave up after {exc.attempts} attempts over {exc.seconds:.0f} s "
            f"({describe_error(exc.last, dest)})"
        )
    if isinstance(exc, BackupError):
        return redact(str(exc))
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and dest.commit == "direct":
        noun = "container" if dest.scheme == "az" else "bucket"
        bucket = dest.options.get("bucket", "?")
        text = f"{noun} {bucket!r} or object not found — does the {noun} exist? ({text})"
    elif isinstance(exc, PermissionError):
        text = f"access denied — check the credentials and their permissions ({text})"
    return redact(f"{type(exc).__name__}: {text}"[:400])


def remote_call(
    dest: Destination,
    what: str,
    operation: Callable[[], T],
    policy: RetryPolicy,
    log: Log | None = None,
) -> tuple[T, int]:
    """Run one network step with retries; any failure becomes a DestinationError."""

    def before_retry(attempt: int, delay: float, exc: BaseException) -> None:
        dest.reset()  # a dropped SSH connection or a dead pool is not reused
        if log is not None:
            log(
                f"{what}: attempt {attempt} failed ({describe_error(exc, dest)}); "
                f"retrying in {delay:.0f} s"
            )

    try:
        return retry_call(operation, policy, dest.is_transient, before_retry)
    except BackupError:
        raise
    except RetriesExhausted as exc:
        raise DestinationError(f"{what}: {describe_error(exc, dest)}", transient=True) from exc
    except Exception as exc:
        raise DestinationError(f"{what}: {describe_error(exc, dest)}") from exc


# --------------------------------------------------------------------------- staging


def staging_dir(backups: Path) -> Path:
    """`BACKUP_DIR/.offsite-staging` (0700): encrypted copies wait here while they upload.

    Next to the backups because that disk has room for them (a tmpfs /tmp may not).
    Files of runs that are no longer alive are removed on the way.
    """
    ensure_private_dir(backups)
    folder = ensure_private_dir(backups / STAGING_DIR)
    for entry in folder.iterdir():
        pid_text = entry.name.split("-", 1)[0]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            with contextlib.suppress(OSError):
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staging_path(folder: Path, name: str) -> Path:
    return folder / f"{os.getpid()}-{secrets.token_hex(4)}-{name}"


# --------------------------------------------------------------------------- copy


@dataclass(frozen=True)
class OffsiteCopy:
    """One backup at the destination, verified."""

    name: str  # the local backup's name
    remote_name: str  # NAME or NAME.age
    url: str  # display form, no secrets
    size: int  # bytes at the destination
    sha256: str  # of the bytes at the destination
    source_sha256: str  # of the local backup
    uploaded: bool  # False: an identical verified copy was already there
    encrypted: bool
    attempts: int
    seconds: float


def _read_remote_text(dest: Destination, name: str) -> str | None:
    try:
        return dest.read_bytes(name).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None


def _read_remote_meta(dest: Destination, remote_name: str) -> dict[str, Any]:
    text = _read_remote_text(dest, remote_name + META_SUFFIX)
    if text is None:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def read_remote_meta(dest: Destination, remote_name: str) -> dict[str, Any]:
    """A remote backup's `NAME.meta.json` (tier, table row counts, ...); {} when absent."""
    return _read_remote_meta(dest, remote_name)


def _existing_copy(
    dest: Destination, local: Path, remote_name: str, source_sha256: str, encrypted: bool
) -> tuple[str, int] | None:
    """(sha256, size) of a finished remote copy of exactly this backup, else None."""
    sidecar = _read_remote_text(dest, remote_name + SIDECAR_SUFFIX)
    if sidecar is None:
        return None
    recorded = parse_sidecar_text(sidecar, remote_name)
    size = dest.stat(remote_name)
    if recorded is None or size is None:
        return None
    if not encrypted:
        same = recorded == source_sha256 and size == local.stat().st_size
        return (recorded, size) if same else None
    record = _read_remote_meta(dest, remote_name).get("offsite") or {}
    same = (
        record.get("source_sha256") == source_sha256
        and record.get("sha256") == recorded
        and record.get("size") == size
    )
    return (recorded, size) if same else None


def copy_backup(
    dest: Destination,
    local: Path,
    *,
    policy: RetryPolicy,
    staging: Path,
    encryption: AgeEncryption | None = None,
    known_sha256: str | None = None,
    log: Log | None = None,
    progress: Callable[[int], None] | None = None,
) -> OffsiteCopy:
    """Copy the backup `local` (and its sidecars) to `dest`, verified; skip an identical copy.

    Raises DestinationError when the destination cannot be written or read back,
    VerifyError when the local file does not match its sidecar or the remote copy does
    not match what was sent.
    """
    started = time.monotonic()
    if not local.is_file():
        raise SourceError(f"{local}: no such backup file (removed by rotation?)")
    encrypted = encryption is not None
    remote_name = remote_name_for(local.name, encrypted)
    where = dest.url(remote_name)
    # The sidecar's word is enough to find an identical copy (a sync then reads no
    # backup); a backup without one (made by the guide's scripts) is hashed instead.
    claimed = known_sha256 or read_sidecar(local)
    hashed = sha256_file(local) if claimed is None else None
    claimed = claimed or hashed
    assert claimed is not None
    existing, attempts = remote_call(
        dest,
        f"off-site check of {where}",
        lambda: _existing_copy(dest, local, remote_name, claimed, encrypted),
        policy,
        log,
    )
    if existing is not None:
        return OffsiteCopy(
            local.name, remote_name, where, existing[1], existing[0], claimed,
            False, encrypted, attempts, time.monotonic() - started,
        )  # fmt: skip

    # Hash what will really be sent: a backup that rotted on the local disk is not
    # shipped off-site as if it were good.
    source_sha256 = hashed or sha256_file(local)
    if claimed != source_sha256:
        raise VerifyError(
            f"{local.name}: the local file does not match its sha256 sidecar — it is "
            "damaged; not copied off-site"
        )
    source_size = local.stat().st_size
    upload = local
    cleanup: Path | None = None
    try:
        if encryption is not None:
            cleanup = upload = staging_path(staging, remote_name)
            encrypt_file(encryption, local, upload)
        sent_sha256 = sha256_file(upload) if upload != local else source_sha256
        sent_size = upload.stat().st_size
        _, tries = remote_call(
            dest,
            f"off-site upload of {local.name} to {where}",
            lambda: dest.put(upload, remote_name, progress),
            policy,
            log,
        )
        attempts += tries
        (found_sha256, found_size), tries = remote_call(
            dest,
            f"off-site read-back of {where}",
            lambda: dest.sha256(remote_name),
            policy,
            log,
        )
        attempts += tries
        if (found_sha256, found_size) != (sent_sha256, sent_size):
            raise VerifyError(
                f"off-site copy {where} does not match what was sent "
                f"(sha256 {found_sha256[:12]}…, {found_size} bytes; expected "
                f"{sent_sha256[:12]}…, {sent_size} bytes) — it is not marked finished"
            )
        meta = read_meta(local)
        meta["offsite"] = {
            "source_name": local.name,
            "source_sha256": source_sha256,
            "source_size": source_size,
            "sha256": sent_sha256,
            "size": sent_size,
            "encryption": "age" if encrypted else None,
            "uploaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "uploaded_from": socket.gethostname(),
        }
        meta_bytes = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
        _, tries = remote_call(
            dest,
            f"off-site sidecars of {where}",
            lambda: _commit_sidecars(dest, remote_name, meta_bytes, sent_sha256),
            policy,
            log,
        )
        attempts += tries
    finally:
        if cleanup is not None:
            cleanup.unlink(missing_ok=True)
    return OffsiteCopy(
        local.name, remote_name, where, sent_size, sent_sha256, source_sha256,
        True, encrypted, attempts, time.monotonic() - started,
    )  # fmt: skip


def _commit_sidecars(dest: Destination, remote_name: str, meta: bytes, sha256: str) -> None:
    dest.put_bytes(remote_name + META_SUFFIX, meta)
    dest.put_bytes(remote_name + SIDECAR_SUFFIX, _sidecar_line(sha256, remote_name))  # last


# --------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class RemoteBackup:
    """A backup data object at the destination."""

    remote_name: str
    name: BackupName
    size: int
    committed: bool  # its sidecar is there
    tier: str
    tier_marked: bool
    modified: datetime | None

    @property
    def encrypted(self) -> bool:
        return self.remote_name.endswith(AGE_SUFFIX)

    def record(self) -> BackupRecord:
        """As a BackupRecord for `tasks.retention.plan` (its path is the bare remote name).

        An unfinished copy has size 0 there: it never counts as one of the newest kept.
        """
        return BackupRecord(
            path=Path(self.remote_name),
            name=self.name,
            tier=self.tier,
            size=self.size if self.committed else 0,
            tier_marked=self.tier_marked,
        )


def remote_catalog(dest: Destination, with_tiers: bool = True) -> list[RemoteBackup]:
    """Our backups at `dest` (names by our patterns only), oldest first."""
    entries = dest.list()
    names = {e.name for e in entries}
    out = []
    for entry in entries:
        parsed = backup_name_of(entry.name)
        if parsed is None:
            continue
        committed = entry.name + SIDECAR_SUFFIX in names
        tier: Any = None
        if with_tiers and entry.name + META_SUFFIX in names:
            tier = _read_remote_meta(dest, entry.name).get("tier")
        marked = isinstance(tier, str) and tier in TIERS
        out.append(
            RemoteBackup(
                entry.name,
                parsed,
                entry.size,
                committed,
                tier if marked else DEFAULT_TIER[parsed.kind],
                marked,
                entry.modified,
            )
        )
    out.sort(key=lambda b: (b.name.created_at, b.remote_name))
    return out


# --------------------------------------------------------------------------- prune


@dataclass
class RemotePrune:
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    cleaned: list[str] = field(default_factory=list)  # abandoned partials, orphan sidecars


def prune_remote(
    dest: Destination, retention_days: int, now: datetime, dry_run: bool = False
) -> RemotePrune:
    """Off-site retention under the local rules (tasks.retention.plan), per kind and tier.

    Only names of our patterns are touched; the newest 3 finished copies of each kind
    and tier stay whatever their age.
    """
    entries = dest.list()
    backups = remote_catalog(dest)
    result = RemotePrune()
    groups = sorted({(b.name.kind, b.tier) for b in backups})
    records = [b.record() for b in backups]
    for kind, tier in groups:
        decided = plan(records, RetentionPolicy(kind, tier, retention_days), now)
        result.kept += [r.path.name for r in decided.keep]
        result.removed += [r.path.name for r in decided.remove]
        result.reasons.update(decided.reasons)
    if not dry_run:
        for name in result.removed:
            # Sidecar first: from that moment the copy is unfinished, whatever happens next.
            for part in (name + SIDECAR_SUFFIX, name, name + META_SUFFIX):
                dest.delete(part)
    data_names = {b.remote_name for b in backups} - set(result.removed)
    for entry in entries:
        if _abandoned(entry.name, entry.modified, data_names, now):
            result.cleaned.append(entry.name)
            if not dry_run:
                dest.delete(entry.name)
    return result


def _abandoned(name: str, modified: datetime | None, data: set[str], now: datetime) -> bool:
    if Destination.is_partial(name):
        base = name[1:].split(".partial-", 1)[0]
        old = modified is not None and now - modified > STALE_PARTIAL_AGE
        return old and (backup_name_of(base) is not None or _sidecar_base(base) is not None)
    owner = _sidecar_base(name)
    return owner is not None and owner not in data


def _sidecar_base(name: str) -> str | None:
    """`NAME.sha256` / `NAME.meta.json` of one of our backup names -> NAME."""
    for suffix in (SIDECAR_SUFFIX, META_SUFFIX):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            return base if backup_name_of(base) is not None else None
    return None


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class RemoteCheck:
    remote_name: str
    status: str  # ok / mismatch / unfinished / archived
    detail: str


def verify_copy(dest: Destination, backup: RemoteBackup) -> RemoteCheck:
    """Read a remote copy back and compare it with its sidecar."""
    name = backup.remote_name
    if not backup.committed:
        return RemoteCheck(name, "unfinished", "no sidecar: the upload never finished")
    storage = str(dest.info(name).get("StorageClass") or "").upper()
    if storage in ("GLACIER", "DEEP_ARCHIVE"):
        return RemoteCheck(name, "archived", f"in {storage}: not readable, size checked only")
    expected = parse_sidecar_text(_read_remote_text(dest, name + SIDECAR_SUFFIX) or "", name)
    found, size = dest.sha256(name)
    if expected is None:
        return RemoteCheck(name, "mismatch", "its sidecar is not a sha256sum line for it")
    if found != expected:
        return RemoteCheck(
            name,
            "mismatch",
            f"sha256 {found[:12]}… does not match its sidecar {expected[:12]}… — "
            "the copy was altered or damaged",
        )
    return RemoteCheck(name, "ok", f"{size} bytes, sha256 matches")


# --------------------------------------------------------------------------- fetch


def fetch_backup(url: str, settings: Settings, into: Path | None = None) -> Path:
    """Download `url` (a backup at any destination), verify, decrypt; returns the local file.

    The file lands as `into/NAME` (the backup's own name, `.age` removed) with a fresh
    sha256 sidecar beside it, so the restore flows verify it like any local backup.
    `into` defaults to a new private folder under `BACKUP_DIR/.offsite-staging`; the
    caller removes the file (or uses `fetched_backup`).
    """
    folder, remote_name = split_remote_url(url)
    parsed = backup_name_of(remote_name)
    if parsed is None:
        raise ConfigError(f"{remote_name}: not a backup name (admin_*, full_backup_*)")
    dest = open_destination(settings, folder)
    encrypted = remote_name.endswith(AGE_SUFFIX)
    identity = identity_from_settings(settings) if encrypted else None
    policy = policy_from_settings(settings)
    if into is None:
        into = staging_path(staging_dir(settings.backups), "fetch")
    ensure_private_dir(into)
    target = into / parsed.name
    if target.exists():
        raise DestinationError(f"{target} already exists; not overwritten")
    where = dest.url(remote_name)
    downloaded = into / (remote_name if encrypted else parsed.name)
    remote_call(dest, f"download of {where}", lambda: dest.get(remote_name, downloaded), policy)
    try:
        sidecar, _ = remote_call(
            dest,
            f"sidecar of {where}",
            lambda: _read_remote_text(dest, remote_name + SIDECAR_SUFFIX),
            policy,
        )
        meta, _ = remote_call(
            dest, f"meta of {where}", lambda: _read_remote_meta(dest, remote_name), policy
        )
        got = sha256_file(downloaded)
        expected = parse_sidecar_text(sidecar, remote_name) if sidecar is not None else None
        if expected is not None and got != expected:
            raise VerifyError(
                f"{where}: the downloaded copy does not match its sidecar "
                f"(expected {expected[:12]}…, found {got[:12]}…)"
            )
        if identity is not None:
            decrypt_file(identity, downloaded, target)
            downloaded.unlink()
            got = sha256_file(target)
        source_sha256 = (meta.get("offsite") or {}).get("source_sha256")
        if source_sha256 and got != source_sha256:
            raise VerifyError(
                f"{where}: the restored bytes do not match the backup that was uploaded "
                f"(expected {source_sha256[:12]}…, found {got[:12]}…)"
            )
        write_sidecar(target, got)
    except BaseException:
        downloaded.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        raise
    return target


@contextlib.contextmanager
def fetched_backup(url: str, settings: Settings) -> Iterator[Path]:
    """`fetch_backup` into a private folder that is removed afterwards."""
    folder = staging_path(staging_dir(settings.backups), "fetch")
    try:
        yield fetch_backup(url, settings, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
