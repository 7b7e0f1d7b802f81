"""`chatbot-backup monitor` over an empty backup folder against one with 10,000 backups.

    .venv/bin/python bench/monitor.py [--backups 10000] [--repeat 3] [--ephemeral]

The full folder holds real, small gzip backups (80 % database-only every hour, 20 % full
every 5 hours) with their `.sha256` and `.meta.json` sidecars, as db-backup writes them:
30,000 files in all. Both folders are checked by the real command against a standing
`prefect server start` (PREFECT_API_URL set, as under `chatbot-backup serve`), so that
Prefect's fixed start-up cost does not hide the difference; `--ephemeral` measures the
cron case too (no server, Prefect starts its ephemeral one in the process).

The monitor must not decompress every archive: the target is that 10,000 backups cost
under 2 s more than none. The run says whether the target was met and exits 1 if not.
The in-process cost of the catalog and checks alone is printed as well.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from measure import Measurement, measure  # noqa: E402

from tasks.core.naming import db_backup_name, full_backup_name  # noqa: E402
from tasks.monitor.checks import Thresholds, inspect_backups  # noqa: E402
from tasks.sources.sqlite import SQLITE_HEADER  # noqa: E402
from tests.support.services import prefect_server  # noqa: E402

TARGET_SECONDS = 2.0
CLI = str(Path(sys.executable).parent / "chatbot-backup")


def log(message: str) -> None:
    print(f"[bench monitor] {message}", file=sys.stderr, flush=True)


def write_backup(path: Path, content: bytes, tier: str, kind: str) -> None:
    data = gzip.compress(content, compresslevel=1, mtime=0)
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    meta = {"kind": kind, "tier": tier, "size": len(data), "sha256": digest}
    path.with_name(path.name + ".meta.json").write_text(json.dumps(meta))


def fill(folder: Path, count: int) -> None:
    """`count` backups, newest first from now: db hourly, full every 5 hours."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(microsecond=0, second=0, minute=0)
    fulls = count // 5
    for i in range(count - fulls):
        moment = now - timedelta(hours=i)
        body = SQLITE_HEADER + os.urandom(512) + bytes(1024)
        write_backup(folder / db_backup_name("sqlite", moment), body, "every-6h", "db")
    for i in range(fulls):
        moment = now - timedelta(hours=5 * i, minutes=30)
        write_backup(
            folder / full_backup_name(moment), os.urandom(1024) + bytes(2048), "daily", "full"
        )


def run_monitor(root: Path, backups: Path, env: dict[str, str], label: str) -> Measurement:
    full_env = {**os.environ, **env, "APP_ROOT": str(root), "BACKUP_DIR": str(backups)}
    # Exit 1 or 2 is the monitor's verdict on the folder, not a failure of the run.
    result = measure([CLI, "monitor"], label=label, env=full_env, cwd=str(root), check=False)
    if result.returncode not in (0, 1, 2):
        raise RuntimeError(f"{label}: exit {result.returncode}\n{result.stderr_tail}")
    return result


def compare(
    root: Path, empty: Path, full: Path, env: dict[str, str], repeat: int, mode: str
) -> float:
    runs: dict[str, list[Measurement]] = {"empty": [], "full": []}
    run_monitor(root, empty, env, "warm-up")  # imports and the server's first queries
    for _ in range(repeat):  # alternate, so that drift hits both alike
        runs["empty"].append(run_monitor(root, empty, env, "empty"))
        runs["full"].append(run_monitor(root, full, env, "full"))
    medians = {k: statistics.median(m.seconds for m in v) for k, v in runs.items()}
    cpu = {k: statistics.median(m.cpu_seconds for m in v) for k, v in runs.items()}
    peaks = {k: max(m.peak_mb for m in v) for k, v in runs.items()}
    codes = {k: v[-1].returncode for k, v in runs.items()}
    difference = medians["full"] - medians["empty"]
    print(
        f"\n### monitor, {mode} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)\n"
    )
    print("| folder | backups | median s | runs s | CPU s | exit | peak MB |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for name, folder in (("empty", empty), ("full", full)):
        count = sum(1 for p in folder.iterdir() if p.name.endswith(".gz"))
        shown = ", ".join(f"{m.seconds:.2f}" for m in runs[name])
        print(
            f"| {name} | {count} | {medians[name]:.2f} | {shown} | {cpu[name]:.2f} "
            f"| {codes[name]} | {peaks[name]:.0f} |"
        )
    verdict = "met" if difference < TARGET_SECONDS else "MISSED"
    print(
        f"\ndifference: {difference:+.2f} s wall, {cpu['full'] - cpu['empty']:+.2f} s CPU "
        f"(target < {TARGET_SECONDS:.0f} s wall: {verdict})"
    )
    return difference


def in_process(empty: Path, full: Path, repeat: int) -> None:
    now = datetime.now(UTC)
    times = {}
    for name, folder in (("empty", empty), ("full", full)):
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            inspect_backups(folder, Thresholds(), now)
            samples.append(time.perf_counter() - started)
        times[name] = statistics.median(samples)
    print("\n### catalog and checks alone (in process, no Prefect)\n")
    print(f"empty: {times['empty'] * 1000:.1f} ms, full: {times['full'] * 1000:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backups", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ephemeral", action="store_true", help="also measure without a server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as scratch:
        base = Path(scratch)
        root = base / "app"
        root.mkdir()
        empty, full = base / "empty", base / "full"
        empty.mkdir()
        started = time.perf_counter()
        fill(full, args.backups)
        log(f"made {args.backups} backups in {time.perf_counter() - started:.1f} s")
        in_process(empty, full, args.repeat)
        differences = []
        log("starting a Prefect server")
        with prefect_server() as server:
            differences.append(
                compare(root, empty, full, server.env(), args.repeat, "against a Prefect server")
            )
        if args.ephemeral:
            env = {"PREFECT_API_URL": "", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
            differences.append(compare(root, empty, full, env, args.repeat, "ephemeral Prefect"))
    return 0 if all(d < TARGET_SECONDS for d in differences) else 1


if __name__ == "__main__":
    raise SystemExit(main())
