"""Peak memory of the full-backup jobs as the number of files grows (issue 8: ≤ 150 MB,
flat as data grows).

    .venv/bin/python bench/many_files.py [--files 1000 --files 50000]

For each count, a platform folder with that many small files in `data/uploads`
(100 bytes each, 1,000 per folder) and a one-table SQLite database, then, against a
standing Prefect server: `backup-all`, `test-restore` of that archive, `restore-all
--yes` of it, and `tar czf` of the same folder for comparison. Prints each job's wall
time and peak RSS (largest process) per count, and the growth per 1,000 files between
the smallest and largest count. Bytes are kept tiny on purpose: what grows here is the
per-file bookkeeping (the manifest), not the data.

Recorded 2026-11-27 before the fix: 1,000 → 50,000 files, backup-all 117 → 233 MB,
test-restore 110 → 209 MB, restore-all 110 → 189 MB (+1.6 to +2.3 MB per 1,000 files):
the manifest's entries were all held in memory, written and parsed whole. After it
(entries in a temporary SQLite file, the manifest streamed both ways): 112 → 128,
105 → 118, 106 → 118 MB, and the same 128 / 118 / 118 MB at 150,000 files — what is
left is SQLite's page caches (4 MB each) filling up, then nothing more.

Mind the disk of a fresh machine: creating the first tens of thousands of files on it
is slow (here 21 s for 30,000 files of 100 bytes, then 0.7 s for the same later; most
likely ext4 initialising inode tables lazily, `init_itable=10` in its mount options),
so on a new machine the first large count makes restore-all and test-restore look far
slower than a repeat (restore-all 50,000 files: 31.6 s). Compare times from a second run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from db_backup import log, standing_server  # noqa: E402
from full_backup import CHATBOT, ours_env, q  # noqa: E402
from measure import MEMORY_TARGET_MB, Measurement, measure, record_issue_row  # noqa: E402

JOBS = ("backup-all", "test-restore", "restore-all")


def build(app: Path, files: int) -> None:
    uploads = app / "data" / "uploads"
    uploads.mkdir(parents=True)
    with sqlite3.connect(app / "data" / "admin.db") as db:
        db.execute("CREATE TABLE agents (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO agents (name) VALUES ('only')")
    for i in range(files):
        folder = uploads / f"batch_{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir()
        (folder / f"conversation_upload_{i:08d}.txt").write_bytes(b"x" * 100)


def run_count(files: int, api_url: str, work: Path) -> dict[str, Measurement]:
    app, backups, home = work / "app", work / "backups", work / "prefect-client"
    build(app, files)
    env = {**ours_env(app, backups, home, api_url), "ADMIN_DB_TYPE": "sqlite"}
    env["ADMIN_DB_PATH"] = str(app / "data" / "admin.db")
    got = {"backup-all": measure([CHATBOT, "backup-all"], "backup-all", env=env, cwd=str(app))}
    [archive] = sorted(backups.glob("full_backup_*.tar.gz"))
    got["test-restore"] = measure(
        [CHATBOT, "test-restore", "--backup-file", str(archive)], "test-restore", env, str(app)
    )
    got["restore-all"] = measure(
        [CHATBOT, "restore-all", "--yes", str(archive)], "restore-all", env, str(app)
    )
    got["tar czf"] = measure(
        f"tar czf {q(work / 'theirs.tar.gz')} -C {q(app)} data", "tar czf", cwd=str(work)
    )
    for name, m in got.items():
        log(f"{files} files: {name} {m.seconds:.1f} s, peak {m.peak_mb:.0f} MB")
    return got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, action="append", help="file counts (repeatable)")
    args = parser.parse_args(argv)
    counts = sorted(set(args.files or [1000, 50000]))
    root = Path(tempfile.mkdtemp(prefix="bench-many-files-"))
    results: dict[int, dict[str, Measurement]] = {}
    try:
        with standing_server(root / "prefect-server") as api_url:
            for files in counts:
                results[files] = run_count(files, api_url, root / str(files))
                shutil.rmtree(root / str(files), ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n## Peak memory by file count (target ≤ {MEMORY_TARGET_MB:.0f} MB, flat)\n")
    print("| files | " + " | ".join(f"{j} s / MB" for j in (*JOBS, "tar czf")) + " |")
    print("|---:|" + "---:|" * (len(JOBS) + 1))
    for files, got in results.items():
        cells = [f"{got[j].seconds:.1f} / {got[j].peak_mb:.0f}" for j in (*JOBS, "tar czf")]
        print(f"| {files} | " + " | ".join(cells) + " |")
    low, high = counts[0], counts[-1]
    worst = max(results[high][j].peak_mb for j in JOBS)
    status = 0
    if high > low:
        print()
        for job in JOBS:
            slope = (results[high][job].peak_mb - results[low][job].peak_mb) / (high - low) * 1000
            print(f"{job}: {slope:+.2f} MB per 1,000 files between {low} and {high} files")
        status = int(worst > MEMORY_TARGET_MB)
    # Issue 8's memory row is the max peak over every recorded row: this one counts too.
    top = results[high]
    record_issue_row("many_files", top["backup-all"].seconds, top["tar czf"].seconds, worst)
    print(f"\nworst peak at {high} files: {worst:.0f} MB ({'ok' if not status else 'GROWS'})")
    return status


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
