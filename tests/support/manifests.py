"""Reading a MANIFEST.json from bytes in one call, for tests (the product streams it)."""

from __future__ import annotations

import io

from tasks.archive.manifest.model import Manifest
from tasks.archive.manifest.read import read_manifest


def parse_manifest(data: bytes | str) -> Manifest:
    """A validated Manifest from MANIFEST.json bytes; VerifyError for anything malformed."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return read_manifest(io.BytesIO(raw))
