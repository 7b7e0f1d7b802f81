"""Carry out a retention plan: delete the planned backups and their sidecars."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tasks.catalog import list_backups
from tasks.retention import RetentionPolicy, plan


@dataclass
class RotationResult:
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)


def rotate(
    folder: Path, policy: RetentionPolicy, now: datetime, dry_run: bool = False
) -> RotationResult:
    decided = plan(list_backups(folder), policy, now)
    result = RotationResult(
        kept=[b.path.name for b in decided.keep],
        removed=[b.path.name for b in decided.remove],
        reasons=decided.reasons,
    )
    if not dry_run:
        for backup in decided.remove:
            for path in [backup.path, *backup.companions()]:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    return result
