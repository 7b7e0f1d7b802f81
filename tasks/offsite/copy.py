"""Copy one backup to a Destination, verified; an identical finished copy is not sent again.

The layout at the destination is described in tasks.offsite.remote. Under
OFFSITE_OBJECT_LOCK_DAYS every object written here (data, `.meta.json`, sealed meta,
`.sha256`) carries the S3 Object Lock retention (`Destination.write_options`); nothing
here deletes, so a credential without DeleteObject is enough to copy.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.catalog.records import read_meta
from tasks.core.backoff import RetryPolicy
from tasks.core.errors import SourceError, VerifyError
from tasks.core.naming import META_SUFFIX, SIDECAR_SUFFIX
from tasks.offsite.encryption import AgeEncryption, encrypt_file
from tasks.offsite.remote import (
    SEALED_META_SUFFIX,
    Log,
    parse_sidecar_text,
    read_remote_meta,
    read_remote_text,
    remote_call,
    remote_name_for,
    sidecar_line,
    staging_path,
)
from tasks.offsite.verify import read_back
from tasks.storage.destination import Destination
from tasks.stream.checksum import read_sidecar, sha256_file

# What stays readable in the `.meta.json` of an encrypted copy: what prune and the
# monitor need (its tier and kind) and the hashes of the copy. Table names, row counts
# and file lists travel only inside the sealed `.meta.json.age`.
PLAIN_META_KEYS = ("tier", "kind", "created_at", "format_version")


@dataclass(frozen=True)
class OffsiteCopy:
    """One backup at the destination, verified."""

    name: str  # the local backup's name
    remote_name: str  # NAME or NAME.age
    url: str  # display form, no secrets
    size: int  # bytes at the destination
    sha256: str  # of the bytes at the destination
    source_sha256: str  # of the local backup
    uploaded: bool  # False: an identical copy, read back, was already there
    encrypted: bool
    attempts: int
    seconds: float
    repaired: str | None = None  # what was wrong with the copy this upload replaced


def _existing_copy(
    dest: Destination, local: Path, remote_name: str, source_sha256: str, encrypted: bool
) -> tuple[tuple[str, int] | None, str | None]:
    """((sha256, size), None) for a finished remote copy of exactly this backup, proven by
    reading it back; (None, why) when its records say so but its content does not (a
    damaged copy, to be replaced); (None, None) when there is no such copy."""
    sidecar = read_remote_text(dest, remote_name + SIDECAR_SUFFIX)
    if sidecar is None:
        return None, None
    recorded = parse_sidecar_text(sidecar, remote_name)
    size = dest.stat(remote_name)
    if recorded is None or size is None:
        return None, None
    if not encrypted:
        same = recorded == source_sha256 and size == local.stat().st_size
    else:
        record = read_remote_meta(dest, remote_name).get("offsite") or {}
        same = (
            record.get("source_sha256") == source_sha256
            and record.get("sha256") == recorded
            and record.get("size") == size
        )
    if not same:
        return None, None
    # The sidecars and the size only say what was uploaded once: a copy damaged or
    # overwritten since (same size) still matches them. Only reading it back proves it
    # (the offsite-verify check). It costs a full read of each copy per sync, but
    # none of the backends keeps a checksum we could trust instead: s3fs uploads
    # without ChecksumSHA256, multipart ETags are not content hashes, and local
    # and SSH folders keep nothing. An archived (Glacier) copy cannot be read: it
    # stays counted on its size, as offsite-verify counts it.
    check = read_back(dest, remote_name, recorded)
    if check.status == "mismatch":
        return None, check.detail
    return (recorded, size), None


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
    (existing, damaged), attempts = remote_call(
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
    if damaged is not None and log is not None:
        log(f"{where}: {damaged}; uploading it again")

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
        offsite = {
            "source_name": local.name,
            "source_sha256": source_sha256,
            "source_size": source_size,
            "sha256": sent_sha256,
            "size": sent_size,
            "encryption": "age" if encrypted else None,
            "uploaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "uploaded_from": socket.gethostname(),
        }
        sealed: Path | None = None
        if encryption is not None:
            sealed = staging_path(staging, remote_name + SEALED_META_SUFFIX)
            plain = sealed.with_name(sealed.name + ".plain")
            plain.write_bytes(_json_bytes({**meta, "offsite": offsite}))
            try:
                encrypt_file(encryption, plain, sealed)
            finally:
                plain.unlink(missing_ok=True)
            offsite["sealed_meta"] = remote_name + SEALED_META_SUFFIX
            meta = {k: meta[k] for k in PLAIN_META_KEYS if k in meta}
        meta_bytes = _json_bytes({**meta, "offsite": offsite})
        sealed_bytes = sealed.read_bytes() if sealed is not None else None
        if sealed is not None:
            sealed.unlink(missing_ok=True)
        _, tries = remote_call(
            dest,
            f"off-site sidecars of {where}",
            lambda: _commit_sidecars(dest, remote_name, meta_bytes, sealed_bytes, sent_sha256),
            policy,
            log,
        )
        attempts += tries
    finally:
        if cleanup is not None:
            cleanup.unlink(missing_ok=True)
    return OffsiteCopy(
        local.name, remote_name, where, sent_size, sent_sha256, source_sha256,
        True, encrypted, attempts, time.monotonic() - started, damaged,
    )  # fmt: skip


def _json_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _commit_sidecars(
    dest: Destination, remote_name: str, meta: bytes, sealed: bytes | None, sha256: str
) -> None:
    if sealed is not None:
        dest.put_bytes(remote_name + SEALED_META_SUFFIX, sealed)
    dest.put_bytes(remote_name + META_SUFFIX, meta)
    dest.put_bytes(remote_name + SIDECAR_SUFFIX, sidecar_line(sha256, remote_name))  # last
