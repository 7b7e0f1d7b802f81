"""A local (or mounted) folder as a Destination."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.storage.base import Destination

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem


def local_destination(text: str, app_root: Path | None) -> Destination:
    path = Path(os.path.expanduser(text))
    if not path.is_absolute():
        path = (app_root or Path.cwd()) / path
    path = Path(os.path.normpath(path))

    def make() -> AbstractFileSystem:
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem()

    return Destination("file", str(path), str(path), make, "rename")
