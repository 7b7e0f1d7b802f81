"""restore-all's plan: which live paths the staged backup replaces, and what it restored.

Uploads, configuration files and application data, each from its archive folder; never
the live database file, its snapshots, the backup folder or the staging folder (those
are restored on their own, or are not ours to touch). Plain functions over the settings
and the staged archive: the flow calls them, the crash test calls them without Prefect.
"""

from __future__ import annotations

import os
from pathlib import Path

from tasks.archive.manifest.model import Manifest
from tasks.core.settings import Settings
from tasks.restore.archive import StagedArchive
from tasks.restore.files import Swap, SwapPlan, find_pre_restore_snapshots, normal, plan_tree
from tasks.restore.sqlite import SNAPSHOT_MARKER, companions


def live_snapshots(settings: Settings, staging: Path) -> list[Path]:
    """Pre-restore snapshots in the restored folders (beside the database, or anywhere):
    in no backup, yet not live-only files to remove — they stay where they are."""
    db = settings.db_path
    beside_db = (
        [p for p in db.parent.iterdir() if p.name.startswith(db.name + SNAPSHOT_MARKER)]
        if db.parent.is_dir()
        else []
    )
    found = [*beside_db]
    found += find_pre_restore_snapshots(
        settings.app_data, exclude=[settings.backups, staging, settings.uploads]
    )
    found += find_pre_restore_snapshots(settings.uploads, exclude=[settings.backups, staging])
    return found


def protected_paths(
    settings: Settings, staging: Path, staged_db: Path | None, snapshots: list[Path]
) -> list[Path]:
    """What a data-folder swap must never move: restored on its own, or not ours to touch."""
    db = settings.db_path
    return [
        db,
        *companions(db),
        *snapshots,
        settings.uploads,
        settings.backups,
        *settings.config_paths,
        staging,
        *([staged_db] if staged_db is not None else []),
    ]


def _inside(path: Path, folder: Path) -> bool:
    return normal(folder) in normal(path).parents


def plan_file_swaps(
    settings: Settings, staged: StagedArchive, staged_db: Path | None
) -> tuple[SwapPlan, list[str]]:
    """Uploads, configuration files and application data, each from its archive folder."""
    root = staged.root
    plan = SwapPlan()
    notes: list[str] = []
    snapshots = live_snapshots(settings, staged.staging)
    in_uploads = [p for p in snapshots if _inside(p, settings.uploads)]
    if (root / "uploads").is_dir() and not (root / "uploads").is_symlink():
        if in_uploads:  # swapped entry by entry around the snapshots, which stay
            uploads = plan_tree(settings.uploads, root / "uploads", in_uploads, "uploads")
            plan.swaps += uploads.swaps
            notes += uploads.skipped
        else:
            plan.swaps.append(Swap(settings.uploads, root / "uploads", "uploads"))
    else:
        notes.append("uploads: not in the backup; live uploads kept")
    config_dir = root / "config"
    wanted = {path.name for path in settings.config_paths}
    for path in settings.config_paths:
        incoming = config_dir / path.name
        if incoming.exists() or incoming.is_symlink():  # a file, or a folder named in CONFIG_FILES
            plan.swaps.append(Swap(path, incoming, f"config/{path.name}"))
        else:
            notes.append(f"config/{path.name}: not in the backup; live file kept")
    if config_dir.is_dir():
        notes += [
            f"config/{extra.name}: in the backup but not in CONFIG_FILES; not restored"
            for extra in sorted(config_dir.iterdir())
            if extra.name not in wanted
        ]
    if (root / "data").is_dir() and not (root / "data").is_symlink():
        data = plan_tree(
            settings.app_data,
            root / "data",
            protected_paths(settings, staged.staging, staged_db, snapshots),
            "data",
        )
        plan.swaps += data.swaps
        notes += data.skipped
    else:
        notes.append("data: not in the backup; live application data kept")
    return plan, notes


def restored_parts(manifest: Manifest, swapped: list[str]) -> list[str]:
    """One short phrase per part, e.g. 'uploads (12 files)'."""
    parts = ["database"] if manifest.database is not None else []
    for section in ("uploads", "config", "data"):
        if any(label == section or label.startswith(section + "/") for label in swapped):
            count = manifest.entries.count(section=section, kind="file")
            parts.append(f"{section} ({count} files)")
    return parts


def live_only_files(plan: SwapPlan) -> int:
    """How many live files (and links) the swaps remove: under a swapped live path, with
    no counterpart at the same place in the backup. Counted before anything moves."""
    count = 0
    for swap in plan.swaps:
        target = swap.target
        if not (target.exists() or target.is_symlink()):
            continue
        if target.is_symlink() or not target.is_dir():
            gone = swap.incoming is None or not (
                swap.incoming.exists() or swap.incoming.is_symlink()
            )
            count += int(gone)
            continue
        for dirpath, dirnames, filenames in os.walk(target):
            here = Path(dirpath)
            rel = here.relative_to(target)
            links = [d for d in dirnames if (here / d).is_symlink()]
            for name in filenames + links:
                twin = swap.incoming / rel / name if swap.incoming is not None else None
                if twin is None or not (twin.exists() or twin.is_symlink()):
                    count += 1
    return count
