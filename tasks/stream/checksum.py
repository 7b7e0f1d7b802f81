"""sha256 sidecars in `sha256sum` format, so `sha256sum -c NAME.sha256` verifies a backup."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tasks.core.atomic import write_text_atomic
from tasks.core.errors import VerifyError
from tasks.core.naming import sidecar_name
from tasks.stream.compress import BLOCK_SIZE


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(BLOCK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def write_sidecar(artifact: Path, sha256: str) -> Path:
    sidecar = artifact.with_name(sidecar_name(artifact.name))
    write_text_atomic(sidecar, f"{sha256}  {artifact.name}\n")
    return sidecar


def read_sidecar(artifact: Path) -> str | None:
    """The sha256 the sidecar records for `artifact`, or None when there is no sidecar."""
    sidecar = artifact.with_name(sidecar_name(artifact.name))
    if not sidecar.is_file():
        return None
    for line in sidecar.read_text(errors="replace").splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[1].lstrip("*") == artifact.name:
            digest = parts[0].lower()
            if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
                return digest
    raise VerifyError(f"{sidecar.name}: not a sha256sum line for {artifact.name}")
