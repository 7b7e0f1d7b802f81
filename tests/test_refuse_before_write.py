"""restore-all refuses a hostile archive before it writes a single byte, staging included."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tasks.core.errors import VerifyError
from tasks.restore.archive import stage_archive
from tests.test_restore_all import EVIL, evil_archive


def _good_files_first(add):  # type: ignore[no-untyped-def]
    """Ordinary members before the hostile one: a streaming extractor would write them."""

    def both(tar: tarfile.TarFile) -> None:
        for n in range(3):
            data = b"ordinary content\n" * 100
            info = tarfile.TarInfo(f"full_backup_20250101_000000/uploads/file{n}.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add(tar)

    return both


@pytest.mark.parametrize("case", sorted(EVIL))
def test_nothing_is_written_before_the_refusal(tmp_path: Path, case: str) -> None:
    archive = evil_archive(tmp_path / "full_backup_20250101_000000.tar.gz", _good_files_first(EVIL[case]))
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(VerifyError, match="refused"):
        stage_archive(archive, staging)
    assert list(staging.iterdir()) == []
