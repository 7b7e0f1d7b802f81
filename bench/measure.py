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


def which(name: str) -> str | None:
    return shutil.which(name)


if __name__ == "__main__":
    # python bench/measure.py 'shell command' : one measurement, printed
    m = measure(" ".join(sys.argv[1:]) if len(sys.argv) > 2 else sys.argv[1], check=False)
    print(
        f"{m.seconds:.2f} s, cpu {m.cpu_seconds:.2f} s, peak {m.peak_mb:.0f} MB, "
        f"tree {m.tree_mb:.0f} MB, exit {m.returncode}"
    )
