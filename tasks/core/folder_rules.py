"""Folder rules: what the tool writes never overlaps what it backs up or restores.

BACKUP_DIR (with its `reports/` and `metrics/` folders), METRICS_FILE and WAL_ARCHIVE_DIR
are written by the tool; UPLOADS_DIR, APP_DATA_DIR, every CONFIG_FILES path and the
SQLite ADMIN_DB_PATH are read by every backup and replaced by every restore. When the two
overlap, the tool eats its own output: each full backup holds all the earlier ones (2 →
4 → 8 MB), and restore-all, swapping in the uploads or data folder from the archive,
replaces the backup folder with the copy inside the archive — every later backup gone.

So the rule is checked once, when settings load (before any Prefect run, lock or write),
and every job refuses the same layout with the same message: a written folder inside,
equal to or above a folder that is backed up is a configuration error (exit 3). Paths are
compared after resolving symbolic links and `..`, so a folder reached through a link is
the same folder. A backed-up path that is a file (a config file, the database) can only
be equal to a written folder or lie inside one; "inside a file" cannot happen. METRICS_FILE
is one file too: it may sit in any folder that is not backed up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tasks.core.errors import ConfigError


class Settings(Protocol):
    """The paths the rule compares, as `tasks.core.settings.Settings` has them (a protocol,
    so that settings, which checks the rule when it loads, is not imported back)."""

    @property
    def backups(self) -> Path: ...
    @property
    def wal_archive(self) -> Path: ...
    @property
    def metrics_file(self) -> Path | None: ...
    @property
    def metrics_path(self) -> Path: ...
    @property
    def uploads(self) -> Path: ...
    @property
    def app_data(self) -> Path: ...
    @property
    def config_paths(self) -> list[Path]: ...
    @property
    def db_type(self) -> str: ...
    @property
    def db_path(self) -> Path: ...


@dataclass(frozen=True)
class NamedPath:
    """A configured path and the variable an operator sets to move it."""

    variable: str
    path: Path
    is_file: bool = False  # compared as one file, never as a folder holding others

    @property
    def real(self) -> Path:
        return Path(os.path.realpath(self.path))


def written_paths(settings: Settings) -> list[NamedPath]:
    """Where the tool writes: the backup folder and what lives beside the backups."""
    backups = settings.backups
    paths = [
        NamedPath("BACKUP_DIR", backups),
        NamedPath("BACKUP_DIR (its reports/ folder)", backups / "reports"),
        NamedPath("BACKUP_DIR (its metrics/ folder)", backups / "metrics"),
        NamedPath("WAL_ARCHIVE_DIR", settings.wal_archive),
    ]
    if settings.metrics_file is not None:
        paths.append(NamedPath("METRICS_FILE", settings.metrics_path, is_file=True))
    return paths


def backed_up_paths(settings: Settings) -> list[NamedPath]:
    """What every backup reads and every restore replaces."""
    paths = [
        NamedPath("UPLOADS_DIR", settings.uploads),
        NamedPath("APP_DATA_DIR", settings.app_data),
        *[
            NamedPath("CONFIG_FILES", path, is_file=not path.is_dir())
            for path in settings.config_paths
        ],
    ]
    if settings.db_type == "sqlite":
        paths.append(NamedPath("ADMIN_DB_PATH", settings.db_path, is_file=True))
    return paths


def overlap(written: NamedPath, backed_up: NamedPath) -> str | None:
    """How `written` overlaps `backed_up` ('is', 'is inside', 'contains'), or None."""
    mine, theirs = written.real, backed_up.real
    if mine == theirs:
        return "is"
    if not backed_up.is_file and theirs in mine.parents:
        return "is inside"
    if not written.is_file and mine in theirs.parents:
        return "contains"
    return None


def folder_conflict(written: list[NamedPath], backed_up: list[NamedPath]) -> str | None:
    """The plainest overlap as one line for the operator (the same path before one inside
    the other, before one holding the other), or None when the layout is sound."""
    found = [
        (_RANK[how], index, ours, how, theirs)
        for index, (ours, theirs) in enumerate((o, t) for o in written for t in backed_up)
        if (how := overlap(ours, theirs)) is not None
    ]
    if not found:
        return None
    _, _, ours, how, theirs = min(found, key=lambda item: (item[0], item[1]))
    return _message(ours, how, theirs)


_RANK = {"is": 0, "is inside": 1, "contains": 2}


def folder_problem(settings: Settings) -> str | None:
    """What is wrong with the settings' folders, as one line; None when they are sound."""
    return folder_conflict(written_paths(settings), backed_up_paths(settings))


def check_folder_rules(settings: Settings) -> None:
    """Raise ConfigError (exit 3) when a written folder overlaps a backed-up one."""
    problem = folder_problem(settings)
    if problem is not None:
        raise ConfigError(problem)


def _message(ours: NamedPath, how: str, theirs: NamedPath) -> str:
    variable = ours.variable.split(" ", 1)[0]
    what = "a file" if ours.is_file else "a folder"
    advice = {
        "is": f"set {variable} to {what} of its own, outside {theirs.variable}",
        "is inside": f"set {variable} to {what} outside {theirs.variable}",
        "contains": (
            f"set {variable} to a folder that does not hold {theirs.variable}, "
            f"or move {theirs.variable} out of it"
        ),
    }[how]
    relation = {"is": "is the same path as", "is inside": "lies inside", "contains": "contains"}
    return (
        f"{_shown(ours)} {relation[how]} {_shown(theirs)}: backups would copy the tool's own "
        f"files and restores would replace them; {advice}"
    )


def _shown(named: NamedPath) -> str:
    text = f"{named.variable} {named.path}"
    return text if named.real == named.path else f"{text} (really {named.real})"
