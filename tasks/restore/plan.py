"""restore-all's plan: which live paths the staged backup replaces, and what it restored.

Uploads, configuration files and application data, each from its archive folder; never
the live database file, its snapshots, the backup folder or the staging folder (those
are restored on their own, or are not ours to touch). Plain functions over the settings
and the staged archive: the flow calls them, the crash test calls them without Prefect.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from tasks.archive.manifest.model import Manifest
from tasks.core.errors import RestoreError
from tasks.core.settings import Settings
from tasks.restore.archive import StagedArchive
from tasks.restore.files import Swap, SwapPlan, find_pre_restore_snapshots, normal, plan_tree
from tasks.restore.sqlite import SNAPSHOT_MARKER, companions, live_db_file


def through_link(path: Path, variable: str) -> Path:
    """Where a configured path's content lives: the path, or what it links to.

    backup-all reads a linked UPLOADS_DIR, APP_DATA_DIR or configuration file through
    its link, so restore-all writes there too and the link itself stays as it is. A
    link to nothing is refused before anything changes: there is no store to restore.
    """
    if not path.is_symlink():
        return path
    real = Path(os.path.realpath(path))
    if not os.path.lexists(real):
        raise RestoreError(
            f"{variable}: {path} is a link to {os.readlink(path)}, which does not exist; "
            "create the folder or file it points to (or remove the link) and run again — "
            "nothing was changed"
        )
    return real


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
    uploads = through_link(settings.uploads, "UPLOADS_DIR")
    found += find_pre_restore_snapshots(
        through_link(settings.app_data, "APP_DATA_DIR"),
        exclude=[settings.backups, staging, settings.uploads, uploads],
    )
    found += find_pre_restore_snapshots(uploads, exclude=[settings.backups, staging])
    return found


def unkeepable_entries(folder: Path, exclude: list[Path]) -> list[Path]:
    """FIFOs, sockets and devices below `folder` (links not followed): backup-all skips
    them, so neither a backup nor the pre-restore copy holds them, and a restore that
    removed them would destroy them. They stay where they are, like snapshots."""
    skip = {normal(p) for p in exclude}
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if normal(here / d) not in skip]
        for name in filenames:
            with contextlib.suppress(FileNotFoundError):
                mode = os.lstat(here / name).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                    found.append(here / name)
    return found


def _kind(path: Path) -> str:
    mode = os.lstat(path).st_mode
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


def protected_paths(
    settings: Settings, staging: Path, staged_db: Path | None, snapshots: list[Path]
) -> list[Path]:
    """What a data-folder swap must never move: restored on its own, or not ours to touch."""
    db = settings.db_path
    live_db = live_db_file(db)  # a linked database's target may lie inside data/ too
    configs = settings.config_paths
    return [
        db,
        *companions(db),
        live_db,
        *companions(live_db),
        *snapshots,
        settings.uploads,
        through_link(settings.uploads, "UPLOADS_DIR"),  # a link's target inside data/ too
        settings.backups,
        *configs,
        # (not through_link: a dangling config link the backup lacks must not block this)
        *(Path(os.path.realpath(path)) for path in configs),
        staging,
        *([staged_db] if staged_db is not None else []),
    ]


def _inside(path: Path, folder: Path) -> bool:
    return normal(folder) in normal(path).parents


def plan_file_swaps(
    settings: Settings, staged: StagedArchive, staged_db: Path | None
) -> tuple[SwapPlan, list[str]]:
    """Uploads, configuration files and application data, each from its archive folder.

    A linked UPLOADS_DIR, APP_DATA_DIR or configuration file is restored through its
    link: the link stays, its target takes the backup's content (a folder entry by
    entry, so the folder itself — perhaps a mount point — stays). FIFOs, sockets and
    devices stay where they are (no backup holds them); the notes say so.
    """
    root = staged.root
    plan = SwapPlan()
    notes: list[str] = []
    snapshots = live_snapshots(settings, staged.staging)
    uploads = through_link(settings.uploads, "UPLOADS_DIR")
    app_data = through_link(settings.app_data, "APP_DATA_DIR")
    in_uploads = [p for p in snapshots if _inside(p, uploads)]
    kept_uploads = unkeepable_entries(uploads, [settings.backups, staged.staging])
    kept_data = unkeepable_entries(
        app_data, [settings.backups, staged.staging, settings.uploads, uploads]
    )
    if (root / "uploads").is_dir() and not (root / "uploads").is_symlink():
        if uploads != settings.uploads:
            notes.append(f"uploads: UPLOADS_DIR is a link to {uploads}; kept, restored into it")
        keep = in_uploads + kept_uploads
        if keep or uploads != settings.uploads:  # entry by entry, around what stays
            planned = plan_tree(uploads, root / "uploads", keep, "uploads")
            plan.swaps += planned.swaps
            notes += planned.skipped
        else:
            plan.swaps.append(Swap(uploads, root / "uploads", "uploads"))
    else:
        notes.append("uploads: not in the backup; live uploads kept")
    config_dir = root / "config"
    wanted = {path.name for path in settings.config_paths}
    for path in settings.config_paths:
        incoming = config_dir / path.name
        if incoming.exists() or incoming.is_symlink():  # a file, or a folder named in CONFIG_FILES
            live = through_link(path, "CONFIG_FILES")
            if live != path:
                notes.append(
                    f"config/{path.name}: {path} is a link to {live}; kept, restored into it"
                )
            plan.swaps.append(Swap(live, incoming, f"config/{path.name}"))
        else:
            notes.append(f"config/{path.name}: not in the backup; live file kept")
    if config_dir.is_dir():
        notes += [
            f"config/{extra.name}: in the backup but not in CONFIG_FILES; not restored"
            for extra in sorted(config_dir.iterdir())
            if extra.name not in wanted
        ]
    if (root / "data").is_dir() and not (root / "data").is_symlink():
        if app_data != settings.app_data:
            notes.append(f"data: APP_DATA_DIR is a link to {app_data}; kept, restored into it")
        data = plan_tree(
            app_data,
            root / "data",
            [*protected_paths(settings, staged.staging, staged_db, snapshots), *kept_data],
            "data",
        )
        plan.swaps += data.swaps
        notes += [n for n in data.skipped if not _is_uploads_link_note(n, settings, root / "data")]
    else:
        notes.append("data: not in the backup; live application data kept")
    kept = [
        *(_label("uploads", uploads, p) for p in kept_uploads),
        *(_label("data", app_data, p) for p in kept_data),
    ]
    if kept:
        kinds = sorted({_kind(p) for p in [*kept_uploads, *kept_data]})
        shown = ", ".join(sorted(kept)[:5]) + (
            f" and {len(kept) - 5} more" if len(kept) > 5 else ""
        )
        notes.append(
            f"kept in place: {len(kept)} entries no backup can hold ({', '.join(kinds)}): {shown}"
        )
    return plan, notes


def _label(section: str, folder: Path, path: Path) -> str:
    return f"{section}/{path.relative_to(folder).as_posix()}"


def _is_uploads_link_note(note: str, settings: Settings, staged_data: Path) -> bool:
    """data/'s note on the UPLOADS_DIR link it holds, when the backup recorded that very
    link: it is kept as recorded, and the uploads note says where they were restored."""
    link = normal(settings.uploads)
    if not settings.uploads.is_symlink() or link.parent != normal(settings.app_data):
        return False
    recorded = staged_data / link.name
    if not recorded.is_symlink() or os.readlink(recorded) != os.readlink(link):
        return False  # the note that the live link was kept stands
    return note.startswith(f"data/{link.name}: ")


def set_id_note(staged: StagedArchive) -> list[str]:
    """What the extraction did not restore of the recorded modes (tasks/archive/safe_extract.py)."""
    extraction = staged.extraction
    if extraction is None or not extraction.set_id_dropped:
        return []
    count = extraction.set_id_dropped
    names = [name.split("/", 1)[-1] for name in extraction.set_id_names]
    more = f" and {count - len(names)} more" if count > len(names) else ""
    return [
        f"setuid/setgid not restored on {count} file{'s' if count != 1 else ''} "
        f"({', '.join(names)}{more}): a restore never creates set-id programs; set them "
        "again by hand if they are meant"
    ]


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
