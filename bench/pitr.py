"""Point-in-time recovery (issue 19): wal-push per segment, base-backup, recovery speed.

    .venv/bin/python bench/pitr.py [--db-mb 64] [--wal-mb 256] [--segments 8] [--repeat 3]

A throwaway PostgreSQL 15 cluster (as in tests/test_pitr.py) is filled with `--db-mb` of
rows and archives through the real `chatbot-backup wal-push %p`. Rows, each against the
plain pipeline measured in the same run:
- wal-push, seconds per segment: `chatbot-backup wal-push pg_wal/NAME` on `--segments`
  real 16 MB segments (written by the cluster, copied out), each into an empty archive,
  against `gzip -2 < NAME > NAME.gz && sha256sum NAME.gz > NAME.gz.sha256 && sync`. The
  bound is 0.5 s per segment (SPEC): the run says whether the slowest segment met it and
  exits 1 when not;
- wal-fetch, seconds per segment, against `gzip -dc NAME.gz > DEST`;
- base-backup (`chatbot-backup base-backup`, against a standing Prefect server) against
  `pg_basebackup -D DIR -Ft -z -X none --checkpoint=fast`;
- recovery: `--wal-mb` of WAL written after a base, then `chatbot-backup pitr-restore
  --verify` to the end of it — lay out the base (checked against its manifest, then
  pg_verifybackup), fetch every segment through wal-fetch, replay, check, stop — against
  the shell way: `tar -xzf` of the same base, the settings by hand, `restore_command =
  'gzip -dc ARCHIVE/%f.gz > %p'`, PostgreSQL recovering to the target. Ours also pays
  the flow's Prefect start-up and its own checks.
The lead runs the full sizes (1 GB of WAL); the defaults are small for a shared machine.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from measure import Measurement, Row, measure, print_rows  # noqa: E402

from tasks.pitr.commands import archive_command, wal_env  # noqa: E402
from tasks.pitr.segments import parse_wal_name  # noqa: E402
from tests.support.pitr_cluster import (  # noqa: E402
    as_postgres,
    postgres_cli,
    postgres_folder,
    throwaway_cluster,
)
from tests.support.services import prefect_server  # noqa: E402

CLI = Path(sys.executable).with_name("chatbot-backup")
BOUND_SECONDS = 0.5


def log(message: str) -> None:
    print(f"[pitr] {message}", file=sys.stderr, flush=True)


def fill(cluster: object, megabytes: int, table: str = "bench") -> None:
    """Rows of random-ish text (little compressible, like chat messages), `megabytes` of it."""
    execute = cluster.execute  # type: ignore[attr-defined]
    execute(f"CREATE TABLE IF NOT EXISTS {table}(id bigserial, body text)", "appdb")
    rows_per_mb = 1024 * 1024 // 300
    for _ in range(megabytes):
        execute(
            f"INSERT INTO {table}(body) SELECT md5(random()::text) || repeat(md5(g::text), 8) "
            f"FROM generate_series(1, {rows_per_mb}) g",
            "appdb",
        )


def one(label: str, command: str | list[str], env: dict[str, str], cwd: Path) -> Measurement:
    return measure(command, label=label, env={**os.environ, **env}, cwd=str(cwd))


def per_segment(
    segments: list[Path], work: Path, repeat: int
) -> tuple[list[Measurement], list[Measurement], list[Measurement], list[Measurement]]:
    push_ours: list[Measurement] = []
    push_shell: list[Measurement] = []
    fetch_ours: list[Measurement] = []
    fetch_shell: list[Measurement] = []
    pg_wal = work / "pg_wal"
    pg_wal.mkdir()
    for segment in segments:
        shutil.copy2(segment, pg_wal / segment.name)
    for attempt in range(repeat):
        for segment in segments:
            name = segment.name
            archive = work / f"archive-{attempt}"
            shell = work / f"shell-{attempt}"
            shell.mkdir(exist_ok=True)
            env = {"WAL_ARCHIVE_DIR": str(archive)}
            push_ours.append(one("wal-push", [str(CLI), "wal-push", f"pg_wal/{name}"], env, work))
            push_shell.append(
                one(
                    "gzip -2 + sha256sum + sync",
                    f"gzip -2 < pg_wal/{name} > {shell}/{name}.gz && cd {shell} && "
                    f"sha256sum {name}.gz > {name}.gz.sha256 && sync {name}.gz {name}.gz.sha256",
                    {},
                    work,
                )
            )
            fetch = [str(CLI), "wal-fetch", name, str(work / "RECOVERYXLOG")]
            fetch_ours.append(one("wal-fetch", fetch, env, work))
            plain = f"gzip -dc {shell}/{name}.gz > {work}/RECOVERYXLOG.shell"
            fetch_shell.append(one("gzip -dc", plain, {}, work))
    return push_ours, push_shell, fetch_ours, fetch_shell


class _Done(Exception):
    """--push-only: the per-segment rows are all that was asked for."""


def summary(label: str, runs: list[Measurement]) -> Measurement:
    """Median wall and CPU seconds per segment, largest peak memory."""
    return Measurement(
        label,
        statistics.median(r.seconds for r in runs),
        max(r.peak_mb for r in runs),
        max(r.tree_mb for r in runs),
        0,
        statistics.median(r.cpu_seconds for r in runs),
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db-mb", type=int, default=64)
    parser.add_argument("--wal-mb", type=int, default=256)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--push-only", action="store_true", help="only the wal-push and wal-fetch rows"
    )
    args = parser.parse_args()

    folder = postgres_folder("bench-pitr-")
    rows: list[Row] = []
    slowest = slowest_cpu = 0.0
    try:
        backups = folder / "backups"
        backups.mkdir(mode=0o700)
        shutil.chown(backups, "postgres", "postgres")
        wal = backups / "wal"
        raw = folder / "raw-segments"
        raw.mkdir()
        shutil.chown(raw, "postgres", "postgres")
        # The cluster archives through our wal-push, and keeps a raw copy of each
        # segment for the per-segment rows.
        command = (
            archive_command(postgres_cli(), wal_env(wal)).replace(" wal-push %p", "")
            + f" wal-push %p && cp %p {raw}/%f"
        )
        with throwaway_cluster(folder, command) as cluster:
            cluster.execute("CREATE DATABASE appdb")
            log(f"filling {args.db_mb} MB")
            fill(cluster, args.db_mb)
            cluster.switch_wal()
            segments = sorted(
                p for p in raw.iterdir() if (w := parse_wal_name(p.name)) and w.kind == "segment"
            )[-args.segments :]
            work = folder / "per-segment"
            work.mkdir()
            log(f"wal-push / wal-fetch on {len(segments)} real segments")
            push, push_shell, fetch, fetch_shell = per_segment(segments, work, args.repeat)
            slowest = max(r.seconds for r in push)
            slowest_cpu = max(r.cpu_seconds for r in push)
            rows.append(
                Row(
                    "wal-push s/segment (median)",
                    summary("ours", push),
                    summary("shell", push_shell),
                )
            )
            rows.append(
                Row(
                    "wal-fetch s/segment (median)",
                    summary("ours", fetch),
                    summary("shell", fetch_shell),
                )
            )

            if args.push_only:
                raise _Done
            env = {
                "APP_ROOT": str(folder),
                "BACKUP_DIR": str(backups),
                "ADMIN_DB_TYPE": "postgres",
                "ADMIN_DATABASE_URL": cluster.url("appdb"),
                "PITR_COMMAND": shlex.join(postgres_cli()),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            }
            with prefect_server() as server:
                env.update(server.env())
                log("base-backup")
                ours = one("base-backup", [str(CLI), "base-backup"], env, folder)
                plain = folder / "plain-base"
                theirs = measure(
                    ["runuser", "-u", "postgres", "--", str(cluster.bindir / "pg_basebackup"),
                     "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "-D", str(plain),
                     "-Ft", "-z", "-X", "none", "--checkpoint=fast"],
                    label="pg_basebackup -Ft -z",
                )  # fmt: skip
                rows.append(
                    Row(f"base-backup {args.db_mb} MB vs pg_basebackup -Ft -z", ours, theirs)
                )

                log(f"writing {args.wal_mb} MB of WAL after the base")
                start_lsn = cluster.execute("SELECT pg_current_wal_lsn()")[0][0]
                fill(cluster, args.wal_mb // 2, "more")  # rows + their index/FPI WAL
                time.sleep(1.1)
                target = datetime.now(UTC)
                time.sleep(1.1)
                cluster.execute("INSERT INTO more(body) VALUES ('after the target')", "appdb")
                cluster.switch_wal()
                written = cluster.execute(
                    f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{start_lsn}')"
                )[0][0]
                dest = folder / "restored"
                log("pitr-restore --verify")
                ours = one(
                    "pitr-restore --verify",
                    [
                        str(CLI),
                        "pitr-restore",
                        "--target-time",
                        target.isoformat(),
                        "--data-dir",
                        str(dest),
                        "--verify",
                    ],
                    env,
                    folder,
                )
                theirs = plain_recovery(cluster, folder, backups, wal, target)
                rows.append(
                    Row(
                        f"recover {int(written) // 2**20} MB of WAL vs tar -xzf + gzip -dc restore_command",
                        ours,
                        theirs,
                    )
                )
    except _Done:
        pass
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print_rows(rows, "Point-in-time recovery (issue 19)")
    met = slowest <= BOUND_SECONDS
    print(
        f"\nwal-push slowest segment: {slowest:.3f} s wall, {slowest_cpu:.3f} s CPU "
        f"(bound {BOUND_SECONDS} s wall): {'met' if met else 'NOT met'}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    return 0 if met else 1


def plain_recovery(
    cluster: object, folder: Path, backups: Path, wal: Path, target: datetime
) -> Measurement:
    """The shell way, timed the same: `tar -xzf` the base, recovery.signal and the
    settings by hand, `restore_command = 'gzip -dc ARCHIVE/%f.gz > %p'`, and PostgreSQL
    recovering until the target (then shutting down)."""
    from tasks.pitr.base_catalog import list_bases

    base = [b for b in list_bases(backups) if b.end_time < target][-1]
    bindir = cluster.bindir  # type: ignore[attr-defined]
    copy = folder / "restored-plain"
    socket_dir = folder / "plain-socket"
    socket_dir.mkdir()
    shutil.chown(socket_dir, "postgres", "postgres")
    started = time.perf_counter()
    copy.mkdir(mode=0o700)
    subprocess.run(["tar", "-xzf", str(base.path), "-C", str(copy)], check=True)
    (copy / "recovery.signal").write_text("")
    with open(copy / "postgresql.auto.conf", "a") as conf:
        conf.write(
            f"restore_command = 'gzip -dc {wal}/%f.gz > %p'\n"
            f"recovery_target_time = '{target.isoformat()}'\n"
            "recovery_target_action = 'shutdown'\n"
        )
    subprocess.run(["chown", "-R", "postgres:postgres", str(copy)], check=True)
    done = as_postgres(
        [str(bindir / "postgres"), "-D", str(copy), "-c", "listen_addresses=",
         "-c", f"unix_socket_directories={socket_dir}", "-c", "archive_mode=off"],
        timeout=3600,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    reached = "recovery stopping before" in done.stderr + done.stdout
    return Measurement("tar -xzf + postgres, gzip -dc", seconds, 0.0, 0.0, 0 if reached else 1)


if __name__ == "__main__":
    raise SystemExit(main())
