"""Bringing a remote backup back: download, verify against its sidecar, decrypt."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.core.atomic import ensure_private_dir
from tasks.core.errors import ConfigError, DestinationError, VerifyError
from tasks.core.naming import SIDECAR_SUFFIX
from tasks.offsite.encryption import AGE_SUFFIX, decrypt_file, identity_from_settings
from tasks.offsite.remote import (
    backup_name_of,
    parse_sidecar_text,
    policy_from_settings,
    read_remote_meta,
    read_remote_text,
    remote_call,
    staging_dir,
    staging_path,
)
from tasks.storage.destination import open_destination, split_remote_url
from tasks.stream.checksum import sha256_file, write_sidecar

if TYPE_CHECKING:
    from tasks.core.settings import Settings


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
            lambda: read_remote_text(dest, remote_name + SIDECAR_SUFFIX),
            policy,
        )
        meta, _ = remote_call(
            dest, f"meta of {where}", lambda: read_remote_meta(dest, remote_name), policy
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


def read_backup_meta(url: str, settings: Settings) -> dict[str, Any]:
    """A remote backup's whole `.meta.json` (tables, row counts): for an encrypted copy the
    sealed `REMOTE.meta.json.age`, decrypted in a private temporary folder; otherwise the
    readable `REMOTE.meta.json`. {} when neither is there."""
    folder, remote_name = split_remote_url(url)
    dest = open_destination(settings, folder)
    policy = policy_from_settings(settings)
    where = dest.url(remote_name)
    meta, _ = remote_call(
        dest, f"meta of {where}", lambda: read_remote_meta(dest, remote_name), policy
    )
    sealed_name = (meta.get("offsite") or {}).get("sealed_meta")
    if not sealed_name:
        return meta
    identity = identity_from_settings(settings)
    with tempfile.TemporaryDirectory(prefix="chatbot-backup-meta-") as scratch:
        sealed = Path(scratch) / "meta.age"
        plain = Path(scratch) / "meta.json"
        remote_call(dest, f"sealed meta of {where}", lambda: dest.get(sealed_name, sealed), policy)
        decrypt_file(identity, sealed, plain)
        try:
            data = json.loads(plain.read_text())
        except ValueError:
            raise VerifyError(f"{where}: its sealed meta is not JSON") from None
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def fetched_backup(url: str, settings: Settings) -> Iterator[Path]:
    """`fetch_backup` into a private folder that is removed afterwards."""
    folder = staging_path(staging_dir(settings.backups), "fetch")
    try:
        yield fetch_backup(url, settings, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
