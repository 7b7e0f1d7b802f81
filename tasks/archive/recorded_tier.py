"""The tier a full backup's own MANIFEST.json records: for a backup that lost its `.meta.json`.

The catalog reads a backup's tier from the small `NAME.meta.json` sidecar. A full backup
copied back from off-site (where only the file and its `.sha256` travel) or moved by hand
has none, yet its MANIFEST.json still says which tier made it. The manifest is the last
member of the archive, so reading it means inflating the whole file: rotation asks this
only for a meta-less full backup it would otherwise delete (tasks.retention.rotate).
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import BinaryIO, cast

from tasks.archive.manifest.model import MANIFEST_JSON
from tasks.archive.manifest.read import read_manifest
from tasks.archive.scan import member_name, scan_stream
from tasks.core.errors import VerifyError
from tasks.stream.compress import sniff_compression


def recorded_tier(path: Path) -> str | None:
    """The `tier` field of MANIFEST.json in the full backup at `path`, read in one pass
    over the archive; None when it holds no MANIFEST.json (a backup made by the guide's
    shell scripts carries no tier marker). VerifyError when the archive or its manifest
    cannot be read: damaged, truncated, malformed."""
    tiers: list[str] = []

    def visit(tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = member_name(member).split("/")
        if len(parts) != 2 or parts[1] != MANIFEST_JSON or not member.isfile():
            return
        if tiers:
            raise VerifyError(f"{path.name}: {MANIFEST_JSON} appears twice")
        content = tar.extractfile(member)
        if content is None:
            raise VerifyError(f"{path.name}: {MANIFEST_JSON} cannot be read")
        manifest = read_manifest(cast(BinaryIO, content))
        manifest.entries.close()
        tiers.append(manifest.tier)

    try:
        compression = sniff_compression(path)
        with open(path, "rb") as raw:
            scan_stream(raw, path, compression, visit)
    except OSError as exc:
        raise VerifyError(f"{path.name}: cannot read ({exc.strerror or exc})") from None
    return tiers[0] if tiers else None
