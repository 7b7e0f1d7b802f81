"""glibc's malloc, told to keep the memory of the 1 MiB blocks our streams pass around.

Every stream here moves 1 MiB blocks between threads (the read-ahead, the restore's
inflate, the parallel gzip members). With glibc's defaults each such block can be a
fresh `mmap` (or come from a thread arena trimmed back right after): its pages are
faulted in again, zeroed by the kernel, for every block. Measured (issue 18, 2 GB /
10,000-file chat-log archive, `/usr/bin/time -v`): test-restore took 1.84 million minor
page faults and 25 s of system time; with the two thresholds below, 28,500 faults and
7.4 s, 40.9 s → 22.3 s wall; backup-all 536,000-610,000 → 37,500 faults, peak memory
unchanged (153 MB; 153-158 at the defaults). A trim threshold of 32 MB did no better.

The CLI sets it first thing (flows/cli.py): set only when the first stream starts,
restore-all of the same tree (snapshot, extraction) still took 853,000-865,000 faults; set
at the start, 38,500-44,000, 31.9 → 27.8 s, peak 165 → 171 MB (one run each; backup-all
and test-restore unchanged). A deployment's run gets it at its first stream.

So: allocations up to `MMAP_THRESHOLD` come from the heap, and up to `TRIM_THRESHOLD`
of freed memory stays mapped for the next block. Both fixed values also turn off
glibc's own sliding threshold. An operator's own MALLOC_* or GLIBC_TUNABLES setting
wins: then nothing is changed. Not glibc (musl, macOS): nothing to do.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import cast

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 4 << 20  # a few blocks: never one mmap per block
TRIM_THRESHOLD = 8 << 20  # freed memory kept mapped: the blocks in flight, with room
_OPERATOR_SETTINGS = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_ARENA_MAX",
)

_done = False
_shared = False


def keep_block_memory() -> bool:
    """Tune the allocator once per process, before the first blocks; True if it was."""
    global _done
    if _done:
        return False
    _done = True
    if not _tunable():
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    # mallopt returns 1 on success; musl's is a stub that returns 0.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def share_one_arena() -> bool:
    """Threads started from now on allocate from the arenas there are, so the freed
    blocks' memory is kept once, not once per thread (each glibc arena keeps up to
    `TRIM_THRESHOLD`). Called by the CLI first thing, for every job, and at the start of
    a deployment's backup or restore run (Prefect's threads keep the arenas they have).
    Measured (2 GB / 10,000-file chat-log tree, 2026-12-02): backup-all with the read-back
    that follows the writer (a thread more), A B A B, peak 155-161 → 144 MiB, wall and
    CPU the same; db-backup (500 MB) the same; restore-all (its extraction, then the
    pre-restore copy's write and read-back in one process), peak 158-162 → 145-148 MiB
    (four and five runs), wall 28.4-30.5 → 27.3-30.4 s; test-restore 126-127 MiB and
    8.3-9.4 s both ways.
    (An earlier run with `MALLOC_ARENA_MAX=1` in the environment had made test-restore
    30-50 % slower: an operator's setting turns off `keep_block_memory` too, and the page
    faults came back — 810,000 against 28,600 — not the arena's lock.)
    Once per process; True if it was set."""
    global _shared
    if _shared or not _tunable():
        return False
    _shared = True
    mallopt = _mallopt()
    return mallopt is not None and bool(mallopt(M_ARENA_MAX, 1))


def _tunable() -> bool:
    """glibc on Linux, and no allocator setting of the operator's."""
    if not sys.platform.startswith("linux"):
        return False
    if any(name in os.environ for name in _OPERATOR_SETTINGS):
        return False
    return "glibc.malloc." not in os.environ.get("GLIBC_TUNABLES", "")


def _mallopt() -> Callable[[int, int], int] | None:
    import ctypes  # here: wal-push, one small segment, never gets this far

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return cast(Callable[[int, int], int], mallopt)
