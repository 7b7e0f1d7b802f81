"""wal-push to the off-site destinations (WAL_PUSH_OFFSITE=true), through the storage layer.

Each destination of OFFSITE_DESTINATION (comma-separated) gets the archived file under
its `wal/` folder — `s3://bucket/prefix/wal/000000010000000000000003.gz` — by the same
verified copy every backup gets (`tasks.offsite.copy.copy_backup`: an identical copy is not
sent again, the upload is read back and compared, its sidecar is written last, and it is
age-encrypted when BACKUP_ENCRYPTION_RECIPIENTS is set). The local archive copy is made
first and stays; a destination that fails makes the push fail, so PostgreSQL keeps the
segment and pushes it again (the local copy is then found identical, and only the
missing off-site copies are made).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.core.atomic import ensure_private_dir
from tasks.core.errors import BackupError, ConfigError, DestinationError, VerifyError
from tasks.core.naming import COMPRESSION_SUFFIX, SIDECAR_SUFFIX
from tasks.core.redact import redact
from tasks.offsite.copy import OffsiteCopy, copy_backup
from tasks.offsite.encryption import (
    AGE_SUFFIX,
    decrypt_file,
    encryption_from_settings,
    identity_from_settings,
)
from tasks.offsite.remote import (
    parse_sidecar_text,
    policy_from_settings,
    remote_call,
    staging_dir,
    staging_path,
)
from tasks.offsite.remote import read_remote_meta as _read_remote_meta
from tasks.offsite.remote import read_remote_text as _read_remote_text
from tasks.pitr.archive import FetchResult, WalMissingError, fetch_wal
from tasks.storage.destination import Destination, open_destination
from tasks.stream.checksum import sha256_file

if TYPE_CHECKING:
    from tasks.core.settings import Settings

WAL_FOLDER = "wal"
# PostgreSQL retries a failed archive_command by itself; a push should not hold the
# archiver for the backups' whole five-minute retry window.
WAL_RETRY_WINDOW_SECONDS = 60.0


def destination_texts(settings: Settings) -> list[str]:
    texts = [t.strip() for t in (settings.offsite_destination or "").split(",") if t.strip()]
    if not texts:
        raise ConfigError("WAL_PUSH_OFFSITE=true needs OFFSITE_DESTINATION")
    return texts


def wal_destination(settings: Settings, text: str) -> Destination:
    """The `wal/` folder of one off-site destination."""
    return open_destination(settings, text.rstrip("/") + "/" + WAL_FOLDER)


def push_offsite(settings: Settings, archived: Path) -> list[OffsiteCopy]:
    """Copy one archived WAL file (and its sidecar) to every off-site destination."""
    destinations = [wal_destination(settings, text) for text in destination_texts(settings)]
    encryption = encryption_from_settings(settings)
    policy = policy_from_settings(settings)
    policy = replace(policy, window_seconds=min(policy.window_seconds, WAL_RETRY_WINDOW_SECONDS))
    staging = staging_dir(archived.parent)
    copies: list[OffsiteCopy] = []
    failures: list[str] = []
    for dest in destinations:
        try:
            copies.append(
                copy_backup(dest, archived, policy=policy, staging=staging, encryption=encryption)
            )
        except BackupError as exc:
            failures.append(f"{dest.display}: {redact(str(exc))}")
    if failures:
        raise DestinationError(
            f"off-site copy of {archived.name} failed ({'; '.join(failures)}); the local "
            "archive copy is kept and PostgreSQL will push the file again"
        )
    return copies


def fetch_offsite(settings: Settings, name: str, dest: Path, local_archive: Path) -> FetchResult:
    """wal-fetch's fallback when the local archive lacks `name`: the first off-site
    destination that holds it. The download is checked against the remote sidecar (and,
    encrypted, decrypted and checked against the sha256 recorded at upload), then restored
    by the same `fetch_wal` as a local copy: `dest` appears only once it is verified.
    WalMissingError when no destination has it."""
    policy = policy_from_settings(settings)
    policy = replace(policy, window_seconds=min(policy.window_seconds, WAL_RETRY_WINDOW_SECONDS))
    staging = staging_path(staging_dir(local_archive), "fetch")
    looked: list[str] = []
    try:
        for text in destination_texts(settings):
            remote = wal_destination(settings, text)
            for suffix in COMPRESSION_SUFFIX.values():
                for remote_name in (name + suffix, name + suffix + AGE_SUFFIX):
                    found, _ = remote_call(
                        remote,
                        f"stat of {remote_name}",
                        lambda r=remote, n=remote_name: r.stat(n),  # type: ignore[misc]
                        policy,
                    )
                    if found is None:
                        continue
                    ensure_private_dir(staging)
                    local = _download(settings, remote, remote_name, staging / (name + suffix))
                    return fetch_wal(name, local.parent, dest)
            looked.append(remote.display)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    raise WalMissingError(
        f"{name} is not in the WAL archive {local_archive} nor off-site ({', '.join(looked)})"
    )


def _download(settings: Settings, remote: Destination, remote_name: str, target: Path) -> Path:
    """One archived WAL file from `remote` into `target`, verified, with its sidecar."""
    policy = policy_from_settings(settings)
    where = remote.url(remote_name)
    encrypted = remote_name.endswith(AGE_SUFFIX)
    downloaded = target.with_name(remote_name)
    remote_call(remote, f"download of {where}", lambda: remote.get(remote_name, downloaded), policy)
    sidecar, _ = remote_call(
        remote, f"sidecar of {where}", lambda: _read_remote_text(remote, remote_name + SIDECAR_SUFFIX),
        policy,
    )  # fmt: skip
    expected = parse_sidecar_text(sidecar, remote_name) if sidecar is not None else None
    if expected is None:
        raise VerifyError(f"{where}: no sha256 sidecar off-site; not restored")
    if sha256_file(downloaded) != expected:
        raise VerifyError(f"{where}: the downloaded copy does not match its sidecar")
    if encrypted:
        decrypt_file(identity_from_settings(settings), downloaded, target)
        meta, _ = remote_call(
            remote, f"meta of {where}", lambda: _read_remote_meta(remote, remote_name), policy
        )
        expected = str((meta.get("offsite") or {}).get("source_sha256") or "")
        if sha256_file(target) != expected:
            raise VerifyError(f"{where}: the decrypted copy does not match the one uploaded")
    target.with_name(target.name + SIDECAR_SUFFIX).write_text(f"{expected}  {target.name}\n")
    return target
