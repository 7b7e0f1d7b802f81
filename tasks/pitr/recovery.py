"""Point-in-time recovery: the plan (which base, which WAL), then the data directory.

Plan, before anything is written (pure over the catalogs):
- the newest finished base backup that ended before the target time T — none: T is
  before the oldest base, ConfigError (exit 3);
- the timeline recovery will follow (`recovery_target_timeline = 'latest'`: the newest
  timeline whose history file is archived, probed upwards from the base's) and its
  history; a base that is not on that history is passed over for an older one;
- T must not be after the newest archived WAL on that path (ConfigError, exit 3);
- every segment from the base's start up to the first one PostgreSQL wrote at or after
  T must be archived and committed: a gap is a VerifyError (exit 6) naming the segment
  and the last time that can still be reached.

Lay out, into an empty or new folder only (never the live cluster's): the base is
extracted and checked file by file against its manifest in one pass
(`tasks.pitr.base_manifest`), then `recovery.signal` and the recovery settings are
added — `restore_command` calling wal-fetch, `recovery_target_time`,
`recovery_target_action = 'promote'`, `recovery_target_timeline = 'latest'` — to
`postgresql.auto.conf` (the file `ALTER SYSTEM` owns, so it exists on every layout,
including Debian's where postgresql.conf lives in /etc). Any failure empties the folder
again.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tasks.core.atomic import write_text_atomic
from tasks.core.errors import ConfigError, DestinationError, VerifyError
from tasks.pitr.base_catalog import BaseRecord
from tasks.pitr.base_manifest import read_base_archive
from tasks.pitr.commands import conf_literal
from tasks.pitr.pgserver import Owner
from tasks.pitr.segments import (
    TimelineSpan,
    base_fits_path,
    format_lsn,
    lsn_segno,
    path_segment,
    path_timeline,
    timeline_path,
)
from tasks.pitr.wal_catalog import ArchivedWal, newest_timeline

AUTO_CONF = "postgresql.auto.conf"
SIGNAL = "recovery.signal"
_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")


def parse_target_time(text: str) -> datetime:
    """`YYYY-MM-DD HH:MM[:SS[.ffffff]]` in UTC, or ISO 8601 with an offset; ConfigError."""
    value = text.strip().replace("T", " ")
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    # `date +%N` gives nanoseconds; PostgreSQL and Python keep microseconds.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    moment: datetime | None = None
    with contextlib.suppress(ValueError):
        moment = datetime.fromisoformat(value)
    if moment is None:
        for pattern in _FORMATS:
            with contextlib.suppress(ValueError):
                moment = datetime.strptime(value, pattern)
                break
    if moment is None:
        raise ConfigError(
            f"--target-time: {text!r} is not a time; give UTC as 'YYYY-MM-DD HH:MM[:SS]' "
            "(or ISO 8601 with an offset)"
        )
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def show_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class RecoveryPlan:
    target: datetime
    base: BaseRecord
    target_timeline: int
    path: list[TimelineSpan]
    segments: list[str]  # what recovery reads, from the base's start to past T
    newest_wal_at: datetime  # the newest archived WAL on the path


def plan_recovery(
    target: datetime,
    bases: list[BaseRecord],
    archive: dict[str, ArchivedWal],
    histories: dict[int, list[tuple[int, int]]],
) -> RecoveryPlan:
    """Choose the base and check the WAL that gets recovery to `target` (see module doc)."""
    if not bases:
        raise ConfigError(
            "no finished base backup in BACKUP_DIR: run `chatbot-backup base-backup` first "
            "(point-in-time recovery starts from a base backup)"
        )
    earlier = sorted((b for b in bases if b.end_time < target), key=lambda b: b.end_time)
    if not earlier:
        oldest = min(bases, key=lambda b: b.end_time)
        raise ConfigError(
            f"--target-time {show_time(target)} is before the oldest base backup "
            f"({oldest.name}, finished {show_time(oldest.end_time)}); the earliest time this "
            "archive can recover to is just after that"
        )
    passed_over: list[str] = []
    for base in reversed(earlier):
        timeline = newest_timeline(base.timeline, archive)
        try:
            path = timeline_path(timeline, histories.get(timeline, []))
        except ValueError as exc:
            raise VerifyError(f"timeline {timeline}'s history file: {exc}") from None
        if not base_fits_path(path, base.timeline, base.start_lsn, base.end_lsn):
            passed_over.append(f"{base.name} (timeline {base.timeline})")
            continue
        newest = _newest_on_path(path, archive, base.segment_size)
        if newest is None or target > newest:
            seen = f"written {show_time(newest)}" if newest else "none archived yet"
            raise ConfigError(
                f"--target-time {show_time(target)} is after the newest archived WAL "
                f"(timeline {timeline}: {seen}); recovery cannot get there. Wait for the "
                "next segment to be archived (or run SELECT pg_switch_wal() on the server), "
                "or choose an earlier time"
            )
        segments = _walk(path, archive, base, target)
        return RecoveryPlan(target, base, timeline, path, segments, newest)
    raise ConfigError(
        f"no base backup before {show_time(target)} lies on the history of timeline "
        f"{newest_timeline(earlier[-1].timeline, archive)}, which recovery would follow: "
        + ", ".join(passed_over)
    )


def _newest_on_path(
    path: list[TimelineSpan], archive: dict[str, ArchivedWal], segment_size: int
) -> datetime | None:
    newest: datetime | None = None
    for entry in archive.values():
        if entry.wal.kind != "segment" or not entry.committed:
            continue
        if path_timeline(path, entry.wal.segno(segment_size), segment_size) != entry.wal.timeline:
            continue  # a branch recovery does not follow
        if newest is None or entry.written_at > newest:
            newest = entry.written_at
    return newest


def _walk(
    path: list[TimelineSpan], archive: dict[str, ArchivedWal], base: BaseRecord, target: datetime
) -> list[str]:
    size = base.segment_size
    segno = lsn_segno(base.start_lsn, size)
    needed: list[str] = []
    reached: datetime | None = None
    while True:
        name = path_segment(path, segno, size)
        entry = archive.get(name)
        if entry is None or not entry.committed:
            last = f"up to {show_time(reached)}" if reached else "not even the base's start"
            raise VerifyError(
                f"WAL gap: segment {name} is missing from the archive (position "
                f"{format_lsn(segno * size)}), so recovery from {base.name} stops there — "
                f"it can reach {last}, not {show_time(target)}. Restore the segment (e.g. from "
                "an off-site copy) or choose an earlier --target-time"
            )
        needed.append(name)
        reached = entry.written_at if reached is None else max(reached, entry.written_at)
        if entry.written_at >= target:
            return needed
        segno += 1


# --------------------------------------------------------------------------- lay out


@dataclass(frozen=True)
class LaidOut:
    data_dir: Path
    base: str
    files: int
    content_bytes: int
    restore_command: str
    seconds: float


def recovery_settings(plan: RecoveryPlan, restore_command: str, now: datetime) -> str:
    target = plan.target.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    return (
        f"\n# chatbot-backup pitr-restore ({show_time(now)}): recover to {show_time(plan.target)}"
        f"\n# from {plan.base.name}, following timeline {plan.target_timeline}. Once the"
        "\n# recovered cluster is in service these lines can go (ALTER SYSTEM RESET ...).\n"
        f"restore_command = {conf_literal(restore_command)}\n"
        f"recovery_target_time = {conf_literal(target)}\n"
        "recovery_target_action = 'promote'\n"
        "recovery_target_timeline = 'latest'\n"
    )


def check_target_dir(data_dir: Path, live_data_dir: Path | None) -> None:
    """Only an empty or new folder, never the live cluster's: ConfigError before writing."""
    target = Path(os.path.realpath(data_dir))
    if live_data_dir is not None:
        live = Path(os.path.realpath(live_data_dir))
        if target == live or live in target.parents or target in live.parents:
            raise ConfigError(
                f"--data-dir {data_dir} is {'inside ' if target != live else ''}the live "
                f"cluster's data directory ({live}); pitr-restore never touches it — give a "
                "new folder"
            )
    if data_dir.exists() or data_dir.is_symlink():
        if not data_dir.is_dir():
            raise ConfigError(f"--data-dir {data_dir} exists and is not a folder")
        if any(os.scandir(data_dir)):
            raise ConfigError(
                f"--data-dir {data_dir} is not empty; pitr-restore writes only into an empty "
                "or new folder (nothing was changed)"
            )
    elif not data_dir.parent.is_dir():
        raise ConfigError(f"--data-dir {data_dir}: its parent folder does not exist")


def lay_out(
    plan: RecoveryPlan,
    data_dir: Path,
    restore_command: str,
    owner: Owner | None,
    now: datetime,
) -> LaidOut:
    """Extract the base (checked) into `data_dir` and add the recovery settings."""
    started = time.monotonic()
    created = not data_dir.exists()
    if created:
        os.mkdir(data_dir, 0o700)
    try:
        if owner is not None:
            os.chown(data_dir, *owner)
        os.chmod(data_dir, 0o700)
        contents = read_base_archive(
            plan.base.path, plan.base.sha256, extract_to=data_dir, owner=owner
        )
        auto_conf = data_dir / AUTO_CONF
        existing = auto_conf.read_text() if auto_conf.is_file() else ""
        write_text_atomic(auto_conf, existing + recovery_settings(plan, restore_command, now))
        write_text_atomic(data_dir / SIGNAL, "")
        if owner is not None:
            for name in (AUTO_CONF, SIGNAL):
                os.chown(data_dir / name, *owner)
    except BaseException as exc:
        empty_folder(data_dir, remove=created)
        if isinstance(exc, OSError):
            raise DestinationError(
                f"cannot write the data directory {data_dir} ({exc.strerror or exc}); "
                "it was emptied again"
            ) from None
        raise
    return LaidOut(
        data_dir, plan.base.name, contents.files, contents.content_bytes, restore_command,
        time.monotonic() - started,
    )  # fmt: skip


def empty_folder(folder: Path, remove: bool) -> None:
    """Remove everything a failed lay-out wrote (and the folder, if it made it)."""
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        if remove:
            with contextlib.suppress(OSError):
                folder.rmdir()
