"""WAL file names, positions and timelines: what PostgreSQL archives, and in which order.

Owns the four kinds of file `archive_command` hands over — segments, `.partial`
segments (the last one of the old timeline, left by a promotion), `.backup` history
files (written by pg_basebackup), timeline `.history` files — the LSN arithmetic, the
timeline history format, and the question recovery planning, retention and the gap
check all ask: which segment, on which timeline, comes next on the way from a base
backup's start to a later point. Pure: no file is read here.

Recovery reads a segment from the newest timeline of its history whose start lies at or
before that segment (PostgreSQL's XLogFileReadAnyTLI); the segment holding a switch
point therefore comes from the child timeline. `path_segment` follows that rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

WalKind = Literal["segment", "partial", "backup", "history"]

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024

_SEGMENT = re.compile(r"^(?P<tli>[0-9A-F]{8})(?P<log>[0-9A-F]{8})(?P<seg>[0-9A-F]{8})$")
_PARTIAL = re.compile(r"^(?P<tli>[0-9A-F]{8})(?P<log>[0-9A-F]{8})(?P<seg>[0-9A-F]{8})\.partial$")
_BACKUP = re.compile(
    r"^(?P<tli>[0-9A-F]{8})(?P<log>[0-9A-F]{8})(?P<seg>[0-9A-F]{8})\.(?P<off>[0-9A-F]{8})\.backup$"
)
_HISTORY = re.compile(r"^(?P<tli>[0-9A-F]{8})\.history$")
_LSN = re.compile(r"^(?P<hi>[0-9A-Fa-f]{1,8})/(?P<lo>[0-9A-Fa-f]{1,8})$")


@dataclass(frozen=True)
class WalName:
    """What a WAL file name says: its kind, timeline and (for segments) position."""

    name: str
    kind: WalKind
    timeline: int
    log: int = 0  # the "xlogid" half of the segment number (0 for history files)
    seg: int = 0  # the segment within it

    def segno(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
        """The segment number (history files: 0)."""
        return self.log * segments_per_id(segment_size) + self.seg

    @property
    def segment(self) -> str:
        """The 24-character segment name this file belongs to ('' for history files)."""
        return self.name[:24] if self.kind != "history" else ""


def parse_wal_name(name: str) -> WalName | None:
    """The parsed name, or None when `name` is nothing PostgreSQL archives."""
    for kind, pattern in (
        ("segment", _SEGMENT),
        ("partial", _PARTIAL),
        ("backup", _BACKUP),
    ):
        match = pattern.match(name)
        if match:
            return WalName(
                name,
                kind,  # type: ignore[arg-type]
                int(match.group("tli"), 16),
                int(match.group("log"), 16),
                int(match.group("seg"), 16),
            )
    match = _HISTORY.match(name)
    if match:
        return WalName(name, "history", int(match.group("tli"), 16))
    return None


def segments_per_id(segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """How many segments one "xlogid" (4 GiB of WAL) holds."""
    if segment_size <= 0 or segment_size & (segment_size - 1):
        raise ValueError(f"WAL segment size must be a power of two, got {segment_size}")
    return 0x1_0000_0000 // segment_size


def segment_name(timeline: int, segno: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    per_id = segments_per_id(segment_size)
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


def history_name(timeline: int) -> str:
    return f"{timeline:08X}.history"


def parse_lsn(text: str) -> int:
    """`0/2000028` -> 33554472; ValueError for anything else."""
    match = _LSN.match(text.strip())
    if match is None:
        raise ValueError(f"not a WAL position (LSN): {text!r}")
    return (int(match.group("hi"), 16) << 32) | int(match.group("lo"), 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_segno(lsn: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    return lsn // segment_size


# --------------------------------------------------------------------------- timelines


@dataclass(frozen=True)
class TimelineSpan:
    """One timeline on the way to a target timeline: WAL from `begin` up to `end`."""

    timeline: int
    begin: int  # LSN where it starts (0 for the first timeline)
    end: int | None  # LSN where it was switched away from; None for the target itself


def parse_history(text: str) -> list[tuple[int, int]]:
    """A timeline history file's entries: (parent timeline, switch LSN), oldest first.

    Format (PostgreSQL's timeline.c): one `parentTLI<TAB>switchpoint<TAB>reason` line per
    ancestor; blank lines and `#` comments are skipped. Raises ValueError on anything else.
    """
    entries: list[tuple[int, int]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(None, 2)
        if len(fields) < 2 or not fields[0].isdigit():
            raise ValueError(f"not a timeline history line: {raw!r}")
        tli, switch = int(fields[0]), parse_lsn(fields[1])
        if entries and (tli <= entries[-1][0] or switch < entries[-1][1]):
            raise ValueError("timeline history entries are out of order")
        entries.append((tli, switch))
    return entries


def timeline_path(target: int, history: list[tuple[int, int]]) -> list[TimelineSpan]:
    """The spans that lead to `target`, oldest first, from its history entries."""
    spans: list[TimelineSpan] = []
    begin = 0
    for tli, switch in history:
        if tli >= target:
            raise ValueError(f"timeline {target}'s history names a later timeline {tli}")
        spans.append(TimelineSpan(tli, begin, switch))
        begin = switch
    spans.append(TimelineSpan(target, begin, None))
    return spans


def span_of(path: list[TimelineSpan], timeline: int) -> TimelineSpan | None:
    return next((s for s in path if s.timeline == timeline), None)


def base_fits_path(path: list[TimelineSpan], timeline: int, start_lsn: int, end_lsn: int) -> bool:
    """Whether a base backup taken on `timeline` between these positions leads to the
    path's target: its timeline is on the path and the backup ended before that timeline
    was switched away from."""
    span = span_of(path, timeline)
    if span is None or start_lsn < span.begin:
        return False
    return span.end is None or end_lsn <= span.end


def path_timeline(
    path: list[TimelineSpan], segno: int, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> int:
    """The timeline recovery reads segment `segno` from, following `path`."""
    chosen = path[0].timeline
    for span in path:
        if lsn_segno(span.begin, segment_size) <= segno:
            chosen = span.timeline
    return chosen


def path_segment(
    path: list[TimelineSpan], segno: int, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> str:
    """The segment file recovery asks for at `segno`, following `path`."""
    return segment_name(path_timeline(path, segno, segment_size), segno, segment_size)
