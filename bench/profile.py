"""Where does `chatbot-backup db-backup` spend its wall time? py-spy, summarised.

    .venv/bin/pip install py-spy      # once
    .venv/bin/python bench/profile.py --pg chatbot_bench_1000mb [--out DIR] [--snapshot REV]
    .venv/bin/python bench/profile.py --sqlite /tmp/chatbot-bench/chatbot_bench_600mb.sqlite
    .venv/bin/python bench/profile.py --pg chatbot_bench_1000mb --env BACKUP_COMPRESSION=zstd

Runs one `chatbot-backup db-backup` against a standing Prefect server of its own (so the
profile is the job, not Prefect's start-up), under `py-spy record --idle --threads`:
every thread is sampled at a fixed rate whether it runs or waits, so a function's share
of a thread's samples is its share of that thread's wall time. Writes the raw stacks (flamegraph.pl input)
to DIR and prints, per thread, the sample share, then for the main thread
the functions by inclusive share and the lines where it sat (leaf frames).

`python bench/profile.py --summarise FILE` prints the summary of an earlier raw file.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets  # noqa: E402
import db_backup as bench  # noqa: E402

PY_SPY = str(bench.VENV_BIN / "py-spy")
_LINE = re.compile(r"^thread \((\d+)\)(?::\s*([^;]*))?;?(.*) (\d+)$")
_FRAME = re.compile(r"^(.*) \((.*):(\d+)\)$")


def parse(raw: Path) -> dict[str, list[tuple[list[str], int]]]:
    """Thread name → [(frames outermost first, samples)]."""
    names: dict[str, str] = {}
    stacks: dict[str, list[tuple[list[str], int]]] = collections.defaultdict(list)
    for line in raw.read_text().splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        tid, name, rest, count = match.groups()
        if name:
            names[tid] = name.strip()
        frames = [f for f in rest.split(";") if f]
        stacks[tid].append((frames, int(count)))
    return {f"{names.get(tid, 'thread')} ({tid})": v for tid, v in stacks.items()}


def function_of(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    func, path, _line = match.groups()
    return f"{func} ({Path(path).name})"


def summarise(raw: Path, top: int = 22, rate: int = 100) -> str:
    threads = parse(raw)
    totals = {name: sum(c for _, c in v) for name, v in threads.items()}
    main = next((n for n in threads if n.startswith("MainThread")), max(totals, key=totals.get))
    lines = [f"py-spy {raw} ({rate} samples/s per thread, idle included)", ""]
    lines.append("Threads (samples; seconds at the sampling rate):")
    for name, total in sorted(totals.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {name:40s} {total:7d}  {total / rate:7.1f} s")
    main_total = totals[main]

    inclusive: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    for frames, count in threads[main]:
        for func in {function_of(f) for f in frames}:
            inclusive[func] += count
        leaves[frames[-1] if frames else "(no Python frame)"] += count
    lines += ["", f"{main}: functions by inclusive share of its wall time ({main_total} samples)"]
    for func, count in inclusive.most_common(top):
        lines.append(f"  {100 * count / main_total:5.1f} %  {func}")
    lines += ["", f"{main}: where it sat (leaf frame, file:line)"]
    for frame, count in leaves.most_common(top // 2):
        lines.append(f"  {100 * count / main_total:5.1f} %  {frame}")
    for name in sorted(threads):
        if name == main or totals[name] < 0.05 * main_total:
            continue
        leaf = collections.Counter()
        for frames, count in threads[name]:
            leaf[function_of(frames[-1]) if frames else "(no Python frame)"] += count
        shown = ", ".join(f"{100 * c / totals[name]:.0f} % {f}" for f, c in leaf.most_common(3))
        lines.append(f"\n{name}: {shown}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--pg", metavar="DBNAME", help="a PostgreSQL database on 127.0.0.1")
    where.add_argument("--sqlite", metavar="PATH", type=Path, help="a SQLite database file")
    where.add_argument("--summarise", metavar="RAW", type=Path, help="summarise a raw file")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "chatbot-profile")
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--snapshot", metavar="REV", help="profile the code of git REV")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the job, e.g. BACKUP_COMPRESSION=zstd (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.summarise:
        print(summarise(args.summarise, rate=args.rate))
        return 0
    if shutil.which(PY_SPY) is None:
        parser.error(f"{PY_SPY} not found: .venv/bin/pip install py-spy")

    args.out.mkdir(parents=True, exist_ok=True)
    ws = bench.Workspace(Path(tempfile.mkdtemp(prefix="chatbot-profile-")))
    ws.prepare()
    try:
        print(f"code: {bench.code_under_test(ws, args.snapshot)}")
        db = (
            bench.pg_db_env(datasets.database_url(args.pg))
            if args.pg
            else bench.sqlite_db_env(args.sqlite.resolve())
        )
        with bench.standing_server(ws.prefect_server) as api_url:
            env = bench.ours_env(ws, api_url, db)
            env.update(item.split("=", 1) for item in args.env)
            bench.run_ours(ws, env, "warm-up")
            ws.clear_outputs()
            raw = args.out / "db_backup.raw.txt"
            started = time.monotonic()
            subprocess.run(
                [PY_SPY, "record", "--idle", "--threads", "--rate", str(args.rate)]
                + ["--format", "raw", "--output", str(raw), "--", bench.CHATBOT, "db-backup"],
                env=env,
                cwd=str(ws.app),
                check=True,
            )
            seconds = time.monotonic() - started
        print(f"profiled run: {seconds:.1f} s wall; raw stacks in {raw}\n")
        print(summarise(raw, rate=args.rate))
    finally:
        shutil.rmtree(ws.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
