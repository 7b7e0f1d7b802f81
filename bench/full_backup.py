"""backup-all against `tar czf` over the same platform folder, in the same run.

    .venv/bin/python bench/full_backup.py --total-mb 2048 --files 10000 [--db-mb 50]
                                          [--repeat 1] [--stat median] [--workdir DIR]

Builds a platform folder like an operator's (`data/uploads/<year>/<month>/user_<n>/...`
with `--files` files adding up to `--total-mb`, sizes long-tailed; about 60 % of the bytes
are incompressible like the images and PDFs people upload, the rest text-like; a few
empty files and folders, links; a `.env`; a SQLite database of `--db-mb` from
bench/datasets.py in `data/admin.db`), warms the page cache with one read of everything,
then measures, `--repeat` times each:

- theirs:  `tar czf full.tar.gz -C app .env data` — what backup_all.sh boils down to
           (one gzip thread, the live database copied raw);
- ours:    `chatbot-backup backup-all` against a standing Prefect server started once
           (parallel gzip, consistent SQLite snapshot, every file hashed into the manifest,
           sha256 sidecar, the archive read back once to verify it);
- ours, ephemeral: the same with no PREFECT_API_URL (Prefect starts its own server, as a
           cron job running the CLI would);
- test-restore (ours, standing server) against `tar xzf` into a temporary folder.

Prints wall time, peak memory (largest process, and the sampled sum of the process
tree) and CPU, with ratios ours/theirs, as a Markdown table; then archive sizes.
The folder is removed at the end unless `--workdir` was given (then a later run with
the same sizes reuses it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets  # noqa: E402
from db_backup import PREFECT, log, standing_server  # noqa: E402
from measure import Measurement, Row, measure, median_of, print_rows, record_row  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(os.environ.get("BENCH_VENV_BIN", ROOT / ".venv" / "bin"))
CHATBOT = str(VENV_BIN / "chatbot-backup")
MB = 1024 * 1024
INCOMPRESSIBLE_SHARE = 0.6
MARKER = ".bench-platform.json"


# -- the platform folder ----------------------------------------------------------------------


def _sizes(rng: random.Random, files: int, total: int) -> list[int]:
    """Long-tailed file sizes (log-normal) scaled to add up to `total` bytes."""
    raw = [rng.lognormvariate(0, 1.4) for _ in range(files)]
    scale = total / sum(raw)
    sizes = [max(0, int(r * scale)) for r in raw]
    sizes[0] += total - sum(sizes)
    return sizes


def _text_block(rng: random.Random) -> bytes:
    short, long = datasets.kind_fragments(datasets.DEFAULT_KIND)
    parts: list[str] = []
    size = 0
    while size < 4 * MB:
        piece = rng.choice(long if rng.random() < 0.5 else short)
        parts.append(piece)
        size += len(piece) + 1
    return "\n".join(parts).encode()


def build_platform(app: Path, files: int, total_mb: int, db_mb: int) -> dict[str, object]:
    wanted = {"files": files, "total_mb": total_mb, "db_mb": db_mb, "version": 1}
    marker = app / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        log(f"{app}: reusing the platform folder built earlier")
        return wanted
    shutil.rmtree(app, ignore_errors=True)
    started = time.monotonic()
    rng = random.Random(20261126)
    text = _text_block(rng)
    uploads = app / "data" / "uploads"
    for i, size in enumerate(_sizes(rng, files, total_mb * MB)):
        folder = uploads / f"{2023 + i % 3}" / f"{1 + i % 12:02d}" / f"user_{i % 97}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"upload_{i:06d}" + (".jpg" if i % 5 < 3 else ".txt")
        if rng.random() < INCOMPRESSIBLE_SHARE:
            data = rng.randbytes(size)
        else:
            start = rng.randrange(0, max(1, len(text) - size)) if size < len(text) else 0
            data = (text * (1 + size // len(text)))[start : start + size]
        (folder / name).write_bytes(data)
    (uploads / "empty_folder").mkdir(exist_ok=True)
    (uploads / "empty.txt").write_bytes(b"")
    os.symlink("2023/01", uploads / "latest")
    (app / "data" / "cache").mkdir(parents=True, exist_ok=True)
    (app / "data" / "cache" / "sessions.json").write_text(json.dumps({"n": files}))
    (app / ".env").write_text("APP_NAME=chatbot\n")
    datasets.make_sqlite(app / "data" / "admin.db", db_mb, log=False)
    marker.write_text(json.dumps(wanted))
    log(
        f"{app}: built {files} files, {total_mb} MB, db {db_mb} MB in {time.monotonic() - started:.0f} s"
    )
    return wanted


def warm(app: Path) -> None:
    """One read of everything, so both sides start from the same (warm) page cache."""
    subprocess.run(
        f"find {q(app)} -type f -print0 | xargs -0 cat > /dev/null", shell=True, check=True
    )


def q(value: str | Path) -> str:
    import shlex

    return shlex.quote(str(value))


# -- the runs ----------------------------------------------------------------------------------


def ours_env(app: Path, backups: Path, prefect_home: Path, api_url: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "ADMIN_", "BACKUP_", "OFFSITE_", "ALERT_", "PG"))
    }
    env.update(
        APP_ROOT=str(app),
        BACKUP_DIR=str(backups),
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    else:
        env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    return env


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-mb", type=int, default=500)
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--db-mb", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--stat", choices=("median", "min"), default="median")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the folder here")
    parser.add_argument("--no-ephemeral", action="store_true", help="skip the ephemeral run")
    args = parser.parse_args(argv)
    if not Path(PREFECT).exists():
        print(f"{PREFECT} not found; install the project into .venv first", file=sys.stderr)
        return 2

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-full-"))
    app, backups, theirs_dir = work / "app", work / "backups", work / "theirs"
    try:
        build_platform(app, args.files, args.total_mb, args.db_mb)
        warm(app)
        runs: dict[str, list[Measurement]] = {
            k: [] for k in ("theirs", "ours", "e2e", "tr_ours", "tr_theirs")
        }
        sizes: dict[str, int] = {}
        with standing_server(work / "prefect-server") as api_url:
            srv_env = ours_env(app, backups, work / "prefect-client", api_url)
            e2e_env = ours_env(app, backups, work / "prefect-client", None)
            for i in range(args.repeat):
                fresh(theirs_dir)
                out = theirs_dir / "full.tar.gz"
                runs["theirs"].append(measure(f"tar czf {q(out)} -C {q(app)} .env data", "tar czf"))
                sizes["theirs"] = out.stat().st_size

                fresh(backups)
                runs["ours"].append(measure([CHATBOT, "backup-all"], "backup-all", env=srv_env))
                [archive] = backups.glob("full_backup_*.tar.gz")
                sizes["ours"] = archive.stat().st_size

                scratch = fresh(work / "extract")
                runs["tr_theirs"].append(measure(f"tar xzf {q(out)} -C {q(scratch)}", "tar xzf"))
                shutil.rmtree(scratch)
                runs["tr_ours"].append(
                    measure(
                        [CHATBOT, "test-restore", "--backup-file", str(archive)],
                        "test-restore",
                        env=srv_env,
                    )
                )
                if not args.no_ephemeral:
                    fresh(backups)
                    runs["e2e"].append(
                        measure([CHATBOT, "backup-all"], "backup-all (ephemeral)", env=e2e_env)
                    )
                log(
                    f"run {i + 1}/{args.repeat}: tar czf {runs['theirs'][-1].seconds:.1f} s, "
                    f"backup-all {runs['ours'][-1].seconds:.1f} s, "
                    f"tar xzf {runs['tr_theirs'][-1].seconds:.1f} s, "
                    f"test-restore {runs['tr_ours'][-1].seconds:.1f} s; "
                    f"load {os.getloadavg()[0]:.2f}"
                )
        pick = {k: median_of(v, args.stat) for k, v in runs.items() if v}
        label = f"{args.total_mb} MB in {args.files} files + {args.db_mb} MB SQLite"
        rows = [
            Row(f"{label}: backup-all (standing server) vs tar czf", pick["ours"], pick["theirs"])
        ]
        if "e2e" in pick:
            rows.append(
                Row(
                    f"{label}: backup-all (ephemeral Prefect) vs tar czf",
                    pick["e2e"],
                    pick["theirs"],
                )
            )
        rows.append(Row(f"{label}: test-restore vs tar xzf", pick["tr_ours"], pick["tr_theirs"]))
        record_row("full", rows[0])
        record_row("test_restore", rows[-1])
        print_rows(
            rows,
            f"Full backup, {os.cpu_count()} CPUs, warm page cache, {args.stat} of {args.repeat}",
        )
        print(
            f"\narchive sizes: ours {sizes['ours'] / MB:.1f} MB, tar czf {sizes['theirs'] / MB:.1f} MB "
            f"(ratio {sizes['ours'] / sizes['theirs']:.3f})"
        )
        return 0
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
