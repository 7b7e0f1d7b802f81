"""Run one command and measure it: wall time and peak memory of its whole process tree.

Two memory figures per run:

- `peak_mb`: the largest peak RSS of any single process of the tree — GNU time's `%M`,
  which is `ru_maxrss` of the waited-for children, i.e. the biggest process (for
  `pg_dump | gzip` that is pg_dump; for `chatbot-backup` the Python process). Where
  `/usr/bin/time` is missing, a fresh Python wrapper per measurement reports
  `getrusage(RUSAGE_CHILDREN).ru_maxrss` (same meaning), so peaks never accumulate
  across measurements.
- `tree_mb`: the largest *sum* of RSS over all live processes of the tree, sampled from
  /proc every `SAMPLE_SECONDS` — what the tree holds at once (shared pages are counted in
  every process that maps them, so this is an upper bound). The database server's own
  backend is not part of either tree.

Rows print as: job | ours s | theirs s | ratio | our peak MB | their peak MB, with the
sampled tree sums after them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SAMPLE_SECONDS = 0.05
GNU_TIME = "/usr/bin/time"
_PAGE = os.sysconf("SC_PAGE_SIZE")

_WRAPPER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(u.ru_maxrss, u.ru_utime, u.ru_stime, file=open(sys.argv[0] + '.rss', 'w'))
sys.exit(code)
"""


@dataclass(frozen=True)
class Measurement:
    label: str
    seconds: float
    peak_mb: float  # largest single process (ru_maxrss)
    tree_mb: float  # largest sampled sum over the live tree
    returncode: int
    cpu_seconds: float = 0.0  # user + system CPU of the waited-for tree
    stderr_tail: str = ""
    stdout_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def gnu_time_available() -> bool:
    if not os.access(GNU_TIME, os.X_OK):
        return False
    try:
        probe = subprocess.run(
            [GNU_TIME, "-f", "%M %U %S", "true"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    fields = (probe.stderr.strip().splitlines() or [""])[-1].split()
    return probe.returncode == 0 and len(fields) == 3 and fields[0].isdigit()


_USE_GNU_TIME = gnu_time_available()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree_rss_bytes(root: int) -> int:
    children = _children_map()
    total = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            pass
        stack.extend(children.get(pid, ()))
    return total


class _TreeSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self._stop_event.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def measure(
    command: str | Sequence[str],
    label: str = "",
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    check: bool = True,
) -> Measurement:
    """Run `command` (a shell string, run by bash with pipefail, or an argv) and measure it.

    Its stdout and stderr go to temporary files (their tails are kept), stdin is empty.
    """
    if isinstance(command, str):
        argv = ["bash", "-o", "pipefail", "-c", command]
        shown = command
    else:
        argv = list(command)
        shown = shlex.join(argv)
    with tempfile.TemporaryDirectory(prefix="bench-measure-") as scratch:
        report = os.path.join(scratch, "rss")
        if _USE_GNU_TIME:
            wrapped = [GNU_TIME, "-f", "%M %U %S", "-o", report, "--", *argv]
        else:
            script = os.path.join(scratch, "wrap.py")
            with open(script, "w") as handle:
                handle.write(_WRAPPER)
            report = script + ".rss"
            wrapped = [sys.executable, script, *argv]
        with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
            started = time.perf_counter()
            process = subprocess.Popen(
                wrapped,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # one process group: an interrupted run is ended whole
            )
            sampler = _TreeSampler(process.pid)
            sampler.start()
            try:
                code = process.wait()
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise
            finally:
                seconds = time.perf_counter() - started
                sampler.stop()
            stderr.seek(0)
            tail = stderr.read()[-4000:].decode("utf-8", "replace")
            stdout.seek(0, os.SEEK_END)
            stdout.seek(max(0, stdout.tell() - 4000))
            out_tail = stdout.read().decode("utf-8", "replace")
        try:
            with open(report) as handle:
                lines = [line for line in handle.read().splitlines() if line.strip()]
            fields = lines[-1].split()
            peak_kb = int(fields[0])
            cpu = float(fields[1]) + float(fields[2])
        except (OSError, ValueError, IndexError):
            peak_kb, cpu = 0, 0.0
    result = Measurement(
        label=label or shown,
        seconds=seconds,
        peak_mb=peak_kb / 1024,
        tree_mb=sampler.peak / 1024 / 1024,
        returncode=code,
        cpu_seconds=cpu,
        stderr_tail=tail,
        stdout_tail=out_tail,
    )
    if check and not result.ok:
        raise RuntimeError(f"{shown!r} failed with exit {code}:\n{tail}")
    return result


def median_of(runs: Sequence[Measurement], stat: str = "median") -> Measurement:
    """One measurement for `runs`: time and CPU by `stat` ("median" or "min"), memory max.

    On a machine shared with other work, "min" is the least disturbed run.
    """
    first = runs[0]
    pick = min if stat == "min" else statistics.median
    return Measurement(
        label=first.label,
        seconds=pick(r.seconds for r in runs),
        peak_mb=max(r.peak_mb for r in runs),
        tree_mb=max(r.tree_mb for r in runs),
        returncode=max((r.returncode for r in runs), key=abs),
        cpu_seconds=pick(r.cpu_seconds for r in runs),
        stderr_tail=first.stderr_tail,
        stdout_tail=first.stdout_tail,
    )


@dataclass(frozen=True)
class Row:
    job: str
    ours: Measurement
    theirs: Measurement


HEADER = (
    "job",
    "ours s",
    "theirs s",
    "ratio",
    "our peak MB",
    "their peak MB",
    "our tree MB",
    "their tree MB",
    "our CPU s",
    "their CPU s",
)


def format_rows(rows: Sequence[Row]) -> str:
    """A Markdown table: job | ours s | theirs s | ratio (ours/theirs) | peaks ..."""
    body = [
        (
            row.job.replace("|", "\\|"),  # a pipe in a job name must not split the cell
            f"{row.ours.seconds:.2f}",
            f"{row.theirs.seconds:.2f}",
            f"{row.ours.seconds / row.theirs.seconds:.2f}" if row.theirs.seconds else "-",
            f"{row.ours.peak_mb:.0f}",
            f"{row.theirs.peak_mb:.0f}",
            f"{row.ours.tree_mb:.0f}",
            f"{row.theirs.tree_mb:.0f}",
            f"{row.ours.cpu_seconds:.1f}",
            f"{row.theirs.cpu_seconds:.1f}",
        )
        for row in rows
    ]
    widths = [max(len(r[i]) for r in [HEADER, *body]) for i in range(len(HEADER))]

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    rule = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2)) for i, w in enumerate(widths))
        + "|"
    )
    return "\n".join([line(HEADER), rule, *(line(r) for r in body)])


def print_rows(rows: Sequence[Row], title: str = "", file=None) -> None:  # noqa: ANN001
    out = file or sys.stdout
    if title:
        print(f"\n{title}\n", file=out)
    print(format_rows(rows), file=out, flush=True)


# -- issue 8's table: one line per row, collected across the bench scripts -----------------
# bench/run points BENCH_SUMMARY at a file; each script appends the rows it measured
# (record_issue_row) and bench/run prints them at the end (print_issue_table).

ISSUE_ROWS = (  # (key, the issue's row, target ratio)
    ("pg", "db-backup PostgreSQL, default gzip vs pg_dump | gzip -6", 0.6),
    ("zstd", "db-backup PostgreSQL, zstd vs pg_dump > /dev/null", 1.15),
    ("sqlite", "db-backup SQLite vs sqlite3 .backup + gzip -6", 0.6),
    ("full", "backup-all vs tar czf of the same tree (SQLite file inside)", 0.6),
    ("restore", "db-restore --yes vs gunzip -c | psql", 0.8),
    ("tiny", "db-backup of a tiny database vs a one-task Prefect flow", 1.2),
)
MEMORY_TARGET_MB = 150.0


def record_issue_row(key: str, ours_s: float, theirs_s: float, peak_mb: float) -> None:
    """Append one measured row of issue 8's table to $BENCH_SUMMARY (if bench/run set it)."""
    target = os.environ.get("BENCH_SUMMARY")
    if target:
        with open(target, "a") as out:
            out.write(f"{key}\t{ours_s:.3f}\t{theirs_s:.3f}\t{peak_mb:.1f}\n")


def record_row(key: str, row: Row) -> None:
    record_issue_row(key, row.ours.seconds, row.theirs.seconds, row.ours.peak_mb)


def _restore_rows_from_table(path: str) -> list[tuple[str, float, float, float]]:
    """bench/restore.py prints its own table (plain pipeline first, ratio vs it): its
    `ours, fresh db` line is issue 8's row, and `ours, over a live db` against
    `guide, over a live db` is issue 18's second restore row."""
    seconds: dict[str, tuple[float, float, float]] = {}  # label start -> (s, ratio, peak)
    with open(path) as handle:
        for line in handle:
            # a label's own pipes are escaped (`gunzip -c F \\| psql`): split on the others
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            if len(cells) < 5:
                continue
            with contextlib.suppress(ValueError, ZeroDivisionError):
                took, ratio, peak = float(cells[1]), float(cells[2]), float(cells[4])
                seconds.setdefault(cells[0].split(":")[0], (took, ratio, peak))
    found = []
    if "ours, fresh db" in seconds:
        ours, ratio, peak = seconds["ours, fresh db"]
        found.append(("restore", ours, ours / ratio, peak))
    if "ours, over a live db" in seconds and "guide, over a live db" in seconds:
        ours, _, peak = seconds["ours, over a live db"]
        found.append(("restore_over", ours, seconds["guide, over a live db"][0], peak))
    return found


# Issue 18's targets, by data set (BENCH_DATASET): ratios of ours / theirs.
ISSUE18_ROWS = (  # (key, row, {kind: target})
    ("pg", "db-backup PostgreSQL, gzip, vs pg_dump | gzip -6", {"prose": 0.40, "chatlog": 0.50}),
    (
        "pg_floor",
        "db-backup PostgreSQL vs pg_dump > /dev/null plus a one-task flow",
        {"prose": 1.25, "chatlog": 1.25},
    ),
    ("pg_size", "db-backup output size vs gzip -6", {"prose": 1.05, "chatlog": 1.05}),
    ("sqlite", "db-backup SQLite vs .backup + gzip -6", {"prose": 0.25, "chatlog": 0.25}),
    ("full", "backup-all vs tar czf", {"prose": 0.30, "chatlog": 0.30}),
    ("test_restore", "test-restore of that archive vs tar xzf", {"prose": 1.2, "chatlog": 1.2}),
    (
        "restore",
        "db-restore into a fresh database vs gunzip -c | psql",
        {"prose": 0.8, "chatlog": 0.8},
    ),
    (
        "restore_over",
        "db-restore over the live database vs the guide's procedure",
        {"prose": 0.7, "chatlog": 0.7},
    ),
)


def print_issue_table(summary: str, restore_table: str | None = None, file=None) -> int:  # noqa: ANN001
    """Print one line per row of issue 8's and issue 18's tables; 1 if any measured row
    misses its target."""
    got: dict[str, tuple[float, float, float]] = {}
    entries: list[tuple[str, float, float, float]] = []
    if os.path.exists(summary):
        with open(summary) as handle:
            for line in handle:
                key, ours, theirs, peak = line.split("\t")
                entries.append((key, float(ours), float(theirs), float(peak)))
    if restore_table and os.path.exists(restore_table):
        entries += _restore_rows_from_table(restore_table)
    for key, ours, theirs, peak in entries:
        got[key] = (ours, theirs, peak)  # the last measurement of a key wins (largest size)
    out = file or sys.stdout
    print("\n## Issue 8 targets (ratio = ours / theirs wall time)\n", file=out)
    print("| row | ours s | theirs s | ratio | target | our peak MB | verdict |", file=out)
    print("|---|---:|---:|---:|---:|---:|---|", file=out)
    failed = 0
    for key, name, target in ISSUE_ROWS:
        if key not in got:
            print(f"| {name} | - | - | - | ≤ {target} | - | not measured |", file=out)
            continue
        ours, theirs, peak = got[key]
        ratio = ours / theirs if theirs else float("inf")
        ok = ratio <= target
        failed |= not ok
        print(
            f"| {name.replace('|', chr(92) + '|')} | {ours:.2f} | {theirs:.2f} | {ratio:.2f} "
            f"| ≤ {target} | {peak:.0f} | {'ok' if ok else 'MISSED'} |",
            file=out,
        )
    peak = max((e[3] for e in entries), default=0.0)
    ok = bool(entries) and peak <= MEMORY_TARGET_MB
    failed |= not ok
    print(
        f"| any job, peak memory (max of the rows above) | - | - | - | ≤ {MEMORY_TARGET_MB:.0f} MB "
        f"| {peak:.0f} | {'ok' if ok else 'MISSED'} |",
        file=out,
        flush=True,
    )
    kind = os.environ.get("BENCH_DATASET", "prose")
    print(f"\n## Issue 18 targets, {kind} data set (ratio = ours / theirs)\n", file=out)
    print("| row | ours | theirs | ratio | target | verdict |", file=out)
    print("|---|---:|---:|---:|---:|---|", file=out)
    for key, name, targets in ISSUE18_ROWS:
        target = targets.get(kind, min(targets.values()))
        if key not in got:
            escaped = name.replace("|", chr(92) + "|")
            print(f"| {escaped} | - | - | - | ≤ {target} | not measured |", file=out)
            continue
        ours, theirs, _ = got[key]
        ratio = ours / theirs if theirs else float("inf")
        ok = ratio <= target
        failed |= not ok
        unit = " MB" if key == "pg_size" else " s"
        print(
            f"| {name.replace('|', chr(92) + '|')} | {ours:.2f}{unit} | {theirs:.2f}{unit} "
            f"| {ratio:.2f} | ≤ {target} | {'ok' if ok else 'MISSED'} |",
            file=out,
            flush=True,
        )
    return failed


def which(name: str) -> str | None:
    return shutil.which(name)


if __name__ == "__main__" and sys.argv[1:2] == ["--issue-table"]:
    # python bench/measure.py --issue-table SUMMARY [RESTORE_TABLE.md]
    raise SystemExit(print_issue_table(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
if __name__ == "__main__":
    # python bench/measure.py 'shell command' : one measurement, printed
    m = measure(" ".join(sys.argv[1:]) if len(sys.argv) > 2 else sys.argv[1], check=False)
    print(
        f"{m.seconds:.2f} s, cpu {m.cpu_seconds:.2f} s, peak {m.peak_mb:.0f} MB, "
        f"tree {m.tree_mb:.0f} MB, exit {m.returncode}"
    )
