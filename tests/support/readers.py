"""One-call forms of product readers, for tests (the product streams or checks in phases)."""

from __future__ import annotations

from pathlib import Path

from tasks.archive.manifest.model import Manifest
from tasks.archive.manifest.write import _json_bytes, json_pieces
from tasks.archive.safe_extract import extract_archive
from tasks.core.errors import VerifyError
from tasks.storage.base import Destination
from tasks.storage.local import local_destination as _local
from tasks.stream.checksum import read_sidecar, sha256_file


def verify_sidecar(artifact: Path) -> str | None:
    """Check `artifact` against its sidecar; returns the verified digest, None if no sidecar."""
    expected = read_sidecar(artifact)
    if expected is None:
        return None
    actual = sha256_file(artifact)
    if actual != expected:
        raise VerifyError(
            f"{artifact.name}: sha256 does not match its sidecar "
            f"(expected {expected[:12]}…, found {actual[:12]}…) — the file is corrupt"
        )
    return actual


def extract_safely(archive: Path, dest: Path, *, preserve_owner: bool = False) -> list[str]:
    """Extract `archive` into `dest`, refusing every unsafe member; the names extracted.

    Links pointing out of `dest` are refused here; full backups are extracted with their
    manifest's `LinkPolicy` instead (`tasks.archive.verdict`), which creates exactly the
    links the manifest records.
    """
    extraction = extract_archive(archive, dest, preserve_owner=preserve_owner)
    return sorted({*extraction.files, *extraction.dirs, *extraction.symlinks})


def local_destination(folder: Path) -> Destination:
    """The local backup folder as a Destination (the same class, over LocalFileSystem)."""
    return _local(str(folder), None)


def manifest_json_bytes(manifest: Manifest) -> bytes:
    """The whole MANIFEST.json in memory (small manifests and tests)."""
    return _json_bytes("".join(json_pieces(manifest)))
