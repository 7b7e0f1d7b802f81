"""db-backup against the shell pipelines it replaces, on the same database in the same run.

    .venv/bin/python bench/db_backup.py --size-mb 1000 [--size-mb 500 ...] [--sqlite-size-mb 600]
                                        [--repeat 3] [--keep] [--rebuild]

For each PostgreSQL size: builds (or reuses) `chatbot_bench_<N>mb`, then measures, in
this order and `--repeat` times (times are medians, memory the maximum):

- floor:    `pg_dump > /dev/null` — what reading the database costs at all;
- theirs:   `pg_dump | gzip -6 > f` — the guide's db_backup.sh;
- ours e2e: `chatbot-backup db-backup` with no PREFECT_API_URL, so it starts Prefect's
            ephemeral server itself (what a cron job that runs the CLI pays);
- ours srv: the same command against a standing `prefect server start` that this script
            starts once (PREFECT_API_URL set): the fixed start-up cost mostly goes away.

An empty database gets the same treatment, which isolates the fixed cost. With
`--sqlite-size-mb`, a SQLite file is built and `sqlite3 db ".backup x" && gzip -6 x` is
compared with `chatbot-backup db-backup` (ADMIN_DB_TYPE=sqlite).

Peak memory is checked across sizes: if our peak at the largest size exceeds the one at
the smallest by more than 25 % + 64 MB, the run says so and exits 1.

Databases and scratch files are dropped at the end unless `--keep` (then a later run
reuses a database built to the same size unless `--rebuild`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets  # noqa: E402
from measure import (  # noqa: E402
    Measurement,
    Row,
    measure,
    median_of,
    print_rows,
    record_issue_row,
    record_row,
)

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(os.environ.get("BENCH_VENV_BIN", ROOT / ".venv" / "bin"))
CHATBOT = str(VENV_BIN / "chatbot-backup")
PREFECT = str(VENV_BIN / "prefect")
MB = 1024 * 1024
EMPTY_DB = "chatbot_bench_empty"
GROWTH_SLACK = (1.25, 64.0)  # factor, MB
ZSTD_LEVEL = (
    1  # the product's default zstd level (tasks/stream/compress.py), for the shell reference row
)
STAT = "median"  # how repeated times are summarised; set from --stat
CODE_PATH: str | None = None  # PYTHONPATH for our runs when measuring a git snapshot


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- Prefect ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def standing_server(home: Path) -> Iterator[str]:
    """A `prefect server start` of our own for the bench; yields its PREFECT_API_URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    home.mkdir(parents=True, exist_ok=True)
    log_file = open(home / "server.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so we stop exactly what we started
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"prefect server exited ({process.returncode}); see {home}/server.log"
                )
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"prefect server did not answer within 180 s; see {home}/server.log"
                )
            time.sleep(0.5)
        log(f"standing Prefect server up at {api} (pid {process.pid})")
        yield api
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log_file.close()


# -- the jobs ---------------------------------------------------------------------------------


@dataclass
class Workspace:
    root: Path

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    @property
    def app(self) -> Path:
        return self.root / "app"

    @property
    def theirs(self) -> Path:
        return self.root / "theirs"

    @property
    def prefect_client(self) -> Path:
        return self.root / "prefect-client"

    @property
    def prefect_server(self) -> Path:
        return self.root / "prefect-server"

    def prepare(self) -> None:
        for folder in (self.backups, self.app, self.theirs, self.prefect_client):
            folder.mkdir(parents=True, exist_ok=True)

    def clear_outputs(self) -> None:
        for folder in (self.backups, self.theirs):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)


def ours_env(ws: Workspace, api_url: str | None, db: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "ADMIN_", "BACKUP_", "OFFSITE_", "ALERT_", "PG"))
    }
    env.update(
        BACKUP_DIR=str(ws.backups),
        APP_ROOT=str(ws.app),
        PREFECT_HOME=str(ws.prefect_client),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        **db,
    )
    if os.environ.get("BENCH_COMPRESSION_LEVEL"):
        # Our BACKUP_* variables are cleared above; this one is the bench's knob for
        # measuring another gzip level (e.g. 6: zlib-ng, gzip -6's size).
        env["BACKUP_COMPRESSION_LEVEL"] = os.environ["BENCH_COMPRESSION_LEVEL"]
    if api_url:
        env["PREFECT_API_URL"] = api_url
    else:
        # Prefect gives its ephemeral server 20 s to come up; on a loaded 2-core machine
        # that is not always enough (seen at load 8), and a failed run measures nothing.
        env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    if CODE_PATH:
        env["PYTHONPATH"] = CODE_PATH
    return env


def pg_db_env(url: str) -> dict[str, str]:
    return {"ADMIN_DB_TYPE": "postgres", "ADMIN_DATABASE_URL": url}


def sqlite_db_env(path: Path) -> dict[str, str]:
    return {"ADMIN_DB_TYPE": "sqlite", "ADMIN_DB_PATH": str(path)}


@dataclass
class Outcome:
    """What one job produced, besides its measurement."""

    measurement: Measurement
    output_bytes: int = 0
    flow_seconds: float | None = None  # the flow's own "duration" line (ours only)


@dataclass
class Series:
    runs: list[Outcome] = field(default_factory=list)

    def median(self) -> Measurement:
        return median_of([o.measurement for o in self.runs], STAT)

    def times(self) -> str:
        return "/".join(f"{o.measurement.seconds:.1f}" for o in self.runs)

    def output_mb(self) -> float:
        return max(o.output_bytes for o in self.runs) / MB

    def flow_seconds(self) -> float | None:
        values = [o.flow_seconds for o in self.runs if o.flow_seconds is not None]
        return statistics.median(values) if values else None


_DURATION = re.compile(r"duration:\s+([0-9.]+) s")


def run_ours(ws: Workspace, env: dict[str, str], label: str) -> Outcome:
    ws.clear_outputs()
    m = measure([CHATBOT, "db-backup"], label=label, env=env, cwd=str(ws.app))
    made = sorted(p for p in ws.backups.iterdir() if p.name.endswith((".gz", ".zst")))
    if len(made) != 1:
        raise RuntimeError(f"{label}: expected one backup file, found {[p.name for p in made]}")
    match = _DURATION.search(m.stdout_tail)
    outcome = Outcome(m, made[0].stat().st_size, float(match.group(1)) if match else None)
    ws.clear_outputs()
    return outcome


def run_theirs(ws: Workspace, command: str, label: str, output: Path | None) -> Outcome:
    ws.clear_outputs()
    m = measure(command, label=label)
    size = output.stat().st_size if output is not None and output.exists() else 0
    ws.clear_outputs()
    return Outcome(m, size)


def q(value: str | Path) -> str:
    return shlex.quote(str(value))


# -- PostgreSQL --------------------------------------------------------------------------------


@dataclass
class PgResult:
    label: str
    size_mb: int
    actual_mb: float
    generation: str
    floor: Series
    theirs: Series
    ours_e2e: Series
    ours_srv: Series
    dump_mb: float = 0.0
    ours_zstd: Series = field(default_factory=Series)
    one_task: Series = field(default_factory=Series)  # tiny database only
    shell_zstd: Series = field(default_factory=Series)  # `pg_dump | zstd`, when zstd exists

    def rows(self) -> list[Row]:
        theirs = self.theirs.median()
        extra = []
        if self.ours_zstd.runs:
            extra.append(
                Row(
                    f"{self.label}: db-backup BACKUP_COMPRESSION=zstd, standing server vs pg_dump > /dev/null",
                    self.ours_zstd.median(),
                    self.floor.median(),
                )
            )
        if self.shell_zstd.runs:
            extra.append(
                Row(
                    f"{self.label}: (for reference) shell `pg_dump | zstd -{ZSTD_LEVEL} -T0` vs pg_dump > /dev/null",
                    self.shell_zstd.median(),
                    self.floor.median(),
                )
            )
        if self.one_task.runs:
            extra.append(
                Row(
                    f"{self.label}: db-backup, standing server vs a one-task Prefect flow",
                    self.ours_srv.median(),
                    self.one_task.median(),
                )
            )
        return extra + [
            Row(
                f"{self.label}: db-backup, ephemeral Prefect vs pg_dump | gzip -6",
                self.ours_e2e.median(),
                theirs,
            ),
            Row(
                f"{self.label}: db-backup, standing server vs pg_dump | gzip -6",
                self.ours_srv.median(),
                theirs,
            ),
            Row(
                f"{self.label}: db-backup, standing server vs pg_dump > /dev/null (floor)",
                self.ours_srv.median(),
                self.floor.median(),
            ),
        ]

    def notes(self) -> list[str]:
        lines = [
            f"{self.label}: pg_database_size {self.actual_mb:.0f} MB, plain dump {self.dump_mb:.0f} MB; {self.generation}",
            f"  gzip files: ours {self.ours_srv.output_mb():.1f} MB, theirs {self.theirs.output_mb():.1f} MB",
            f"  every run (s): floor {self.floor.times()}, theirs {self.theirs.times()}, "
            f"ours e2e {self.ours_e2e.times()}, ours srv {self.ours_srv.times()}",
        ]
        zstd_body = self.ours_zstd.flow_seconds()
        if zstd_body is not None and self.floor.runs:
            floor = self.floor.median().seconds
            lines.append(
                f"  zstd flow body (the flow's own 'duration'): {zstd_body:.2f} s = "
                f"{zstd_body / floor:.2f}x pg_dump > /dev/null; the rest is process start, "
                "imports and Prefect, which a one-task flow pays too"
            )
        e2e, srv = self.ours_e2e.flow_seconds(), self.ours_srv.flow_seconds()
        if e2e is not None and srv is not None:
            lines.append(
                f"  flow body (the flow's own 'duration'): {e2e:.2f} s ephemeral, {srv:.2f} s standing; "
                f"the rest of the wall time is process start, imports and Prefect"
            )
        return lines


def pg_measure(
    ws: Workspace,
    label: str,
    dbname: str,
    size_mb: int,
    actual_mb: float,
    generation: str,
    repeat: int,
    api_url: str,
) -> PgResult:
    url = datasets.database_url(dbname)
    out = ws.theirs / "dump.sql.gz"
    result = PgResult(label, size_mb, actual_mb, generation, Series(), Series(), Series(), Series())
    # A first pg_dump brings the database into the page cache, so no job pays for that alone.
    probe = measure(f"pg_dump --dbname={q(url)} | wc -c > {q(ws.root / 'dump.size')}")
    result.dump_mb = int((ws.root / "dump.size").read_text().split()[0]) / MB
    log(f"{label}: warm-up pg_dump {probe.seconds:.1f} s, plain dump {result.dump_mb:.0f} MB")
    for i in range(repeat):
        floor = run_theirs(
            ws, f"pg_dump --dbname={q(url)} > /dev/null", "pg_dump > /dev/null", None
        )
        theirs = run_theirs(
            ws, f"pg_dump --dbname={q(url)} | gzip -6 > {q(out)}", "pg_dump | gzip -6", out
        )
        e2e = run_ours(ws, ours_env(ws, None, pg_db_env(url)), "db-backup (ephemeral)")
        srv = run_ours(ws, ours_env(ws, api_url, pg_db_env(url)), "db-backup (standing server)")
        zstd_env = {**pg_db_env(url), "BACKUP_COMPRESSION": "zstd"}
        zst = run_ours(ws, ours_env(ws, api_url, zstd_env), "db-backup zstd (standing server)")
        result.ours_zstd.runs.append(zst)
        if shutil.which("zstd"):
            zout = ws.theirs / "dump.sql.zst"
            result.shell_zstd.runs.append(
                run_theirs(
                    ws,
                    f"pg_dump --dbname={q(url)} | zstd -q -{ZSTD_LEVEL} -T0 > {q(zout)}",
                    f"pg_dump | zstd -{ZSTD_LEVEL}",
                    zout,
                )
            )
        if size_mb == 0:
            one = measure(
                [str(VENV_BIN / "python"), str(ROOT / "bench" / "one_task_flow.py")],
                label="one-task flow (standing server)",
                env=ours_env(ws, api_url, {}),
                cwd=str(ws.app),
            )
            result.one_task.runs.append(Outcome(one))
        for series, outcome in (
            (result.floor, floor),
            (result.theirs, theirs),
            (result.ours_e2e, e2e),
            (result.ours_srv, srv),
        ):
            series.runs.append(outcome)
        log(
            f"{label} run {i + 1}/{repeat}: floor {floor.measurement.seconds:.1f} s, "
            f"gzip {theirs.measurement.seconds:.1f} s, ours e2e {e2e.measurement.seconds:.1f} s "
            f"({e2e.measurement.peak_mb:.0f} MB), ours srv {srv.measurement.seconds:.1f} s "
            f"({srv.measurement.peak_mb:.0f} MB); load {os.getloadavg()[0]:.2f}"
        )
    return result


def pg_bench(ws: Workspace, size_mb: int, args: argparse.Namespace, api_url: str) -> PgResult:
    dbname = datasets.pg_name(size_mb)
    if not args.rebuild and datasets.postgres_is_built(dbname, size_mb):
        generation = "reused from an earlier run (--rebuild to regenerate)"
        log(f"{dbname}: reusing the existing database")
    else:
        log(f"{dbname}: generating {size_mb} MB")
        made = datasets.make_postgres(dbname, size_mb)
        generation = f"generated in {made.seconds:.1f} s ({made.messages} messages, {made.conversations} conversations)"
        log(f"{dbname}: {made.describe()}")
    actual = (datasets.pg_size(dbname) or 0) / MB
    return pg_measure(
        ws, f"pg {size_mb} MB", dbname, size_mb, actual, generation, args.repeat, api_url
    )


def empty_pg_bench(ws: Workspace, args: argparse.Namespace, api_url: str) -> PgResult:
    datasets.drop_postgres(EMPTY_DB)
    with datasets.admin_connection() as conn:
        conn.execute(f"CREATE DATABASE {EMPTY_DB}")
    with psycopg.connect(datasets.database_url(EMPTY_DB), autocommit=True) as conn:
        conn.execute("CREATE TABLE agents (id integer PRIMARY KEY, name text)")
        conn.execute("INSERT INTO agents VALUES (1, 'only')")
    actual = (datasets.pg_size(EMPTY_DB) or 0) / MB
    return pg_measure(
        ws, "pg empty (fixed cost)", EMPTY_DB, 0, actual, "one table, one row", args.repeat, api_url
    )


# -- SQLite ---------------------------------------------------------------------------------


@dataclass
class SqliteResult:
    label: str
    actual_mb: float
    generation: str
    floor: Series
    theirs: Series
    ours_e2e: Series
    ours_srv: Series

    def rows(self) -> list[Row]:
        theirs = self.theirs.median()
        return [
            Row(
                f"{self.label}: db-backup, ephemeral Prefect vs sqlite3 .backup + gzip -6",
                self.ours_e2e.median(),
                theirs,
            ),
            Row(
                f"{self.label}: db-backup, standing server vs sqlite3 .backup + gzip -6",
                self.ours_srv.median(),
                theirs,
            ),
            Row(
                f"{self.label}: db-backup, standing server vs sqlite3 .backup (floor)",
                self.ours_srv.median(),
                self.floor.median(),
            ),
        ]

    def notes(self) -> list[str]:
        lines = [
            f"{self.label}: file {self.actual_mb:.0f} MB; {self.generation}",
            f"  gzip files: ours {self.ours_srv.output_mb():.1f} MB, theirs {self.theirs.output_mb():.1f} MB",
            f"  every run (s): .backup {self.floor.times()}, theirs {self.theirs.times()}, "
            f"ours e2e {self.ours_e2e.times()}, ours srv {self.ours_srv.times()}",
        ]
        e2e, srv = self.ours_e2e.flow_seconds(), self.ours_srv.flow_seconds()
        if e2e is not None and srv is not None:
            lines.append(
                f"  flow body (the flow's own 'duration'): {e2e:.2f} s ephemeral, {srv:.2f} s standing"
            )
        return lines


def sqlite_file(data_dir: Path, size_mb: int) -> Path:
    return data_dir / f"{datasets.pg_name(size_mb)}.sqlite"


def sqlite_bench(
    ws: Workspace, size_mb: int, args: argparse.Namespace, api_url: str, data_dir: Path
) -> SqliteResult:
    path = sqlite_file(data_dir, size_mb)
    if not args.rebuild and datasets.sqlite_is_built(path, size_mb):
        generation = "reused from an earlier run (--rebuild to regenerate)"
    else:
        log(f"{path}: generating {size_mb} MB")
        made = datasets.make_sqlite(path, size_mb)
        generation = f"generated in {made.seconds:.1f} s ({made.messages} messages)"
        log(f"{path}: {made.describe()}")
    label = f"sqlite {size_mb} MB"
    result = SqliteResult(
        label, path.stat().st_size / MB, generation, Series(), Series(), Series(), Series()
    )
    copy = ws.theirs / "admin.db"
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # page cache
    for i in range(args.repeat):
        floor = run_theirs(
            ws, f"sqlite3 {q(path)} {q('.backup ' + str(copy))}", "sqlite3 .backup", copy
        )
        theirs = run_theirs(
            ws,
            f"sqlite3 {q(path)} {q('.backup ' + str(copy))} && gzip -6 {q(copy)}",
            "sqlite3 .backup + gzip -6",
            Path(f"{copy}.gz"),
        )
        e2e = run_ours(ws, ours_env(ws, None, sqlite_db_env(path)), "db-backup (ephemeral)")
        srv = run_ours(
            ws, ours_env(ws, api_url, sqlite_db_env(path)), "db-backup (standing server)"
        )
        for series, outcome in (
            (result.floor, floor),
            (result.theirs, theirs),
            (result.ours_e2e, e2e),
            (result.ours_srv, srv),
        ):
            series.runs.append(outcome)
        log(
            f"{label} run {i + 1}/{args.repeat}: .backup {floor.measurement.seconds:.1f} s, "
            f".backup+gzip {theirs.measurement.seconds:.1f} s, ours e2e {e2e.measurement.seconds:.1f} s, "
            f"ours srv {srv.measurement.seconds:.1f} s; load {os.getloadavg()[0]:.2f}"
        )
    return result


# -- main ---------------------------------------------------------------------------------


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def code_under_test(ws: Workspace, snapshot: str | None) -> str:
    """Describe the product code we measure; with `snapshot`, export it and point at it."""
    global CODE_PATH
    if snapshot is None:
        try:
            head = git("rev-parse", "--short", "HEAD")
            dirty = git("status", "--porcelain", "--", "flows", "tasks", "deployments")
        except (OSError, subprocess.CalledProcessError):
            return "working tree (not a git checkout)"
        changed = len(dirty.splitlines())
        return f"working tree at {head}" + (
            f" with {changed} changed/new product files" if changed else ", clean"
        )
    commit = git("rev-parse", snapshot)
    target = ws.root / "code"
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "flows", "tasks", "deployments"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    CODE_PATH = str(target)
    probe = subprocess.run(
        [str(VENV_BIN / "python"), "-c", "import flows; print(flows.__file__)"],
        env={**os.environ, "PYTHONPATH": CODE_PATH},
        cwd=str(ws.app),  # as our runs: not the checkout, which would come first on sys.path
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not probe.startswith(CODE_PATH):
        raise RuntimeError(f"--snapshot: flows still imports from {probe}")
    return f"git {snapshot} = {commit[:12]} (exported to {target})"


def memory_verdict(results: list[PgResult]) -> tuple[bool, list[str]]:
    """Does our peak memory stay flat across the PostgreSQL sizes?"""
    sized = sorted((r for r in results if r.size_mb > 0), key=lambda r: r.size_mb)
    lines = ["", "Peak memory by size (largest single process / sampled tree sum, MB):", ""]
    lines.append("| size | dump MB | ours e2e | ours srv | pg_dump \\| gzip |")
    lines.append("|---:|---:|---:|---:|---:|")
    for r in sorted(results, key=lambda r: r.size_mb):
        e2e, srv, th = r.ours_e2e.median(), r.ours_srv.median(), r.theirs.median()
        lines.append(
            f"| {r.label} | {r.dump_mb:.0f} | {e2e.peak_mb:.0f} / {e2e.tree_mb:.0f} | "
            f"{srv.peak_mb:.0f} / {srv.tree_mb:.0f} | {th.peak_mb:.0f} / {th.tree_mb:.0f} |"
        )
    if len(sized) < 2:
        return True, lines
    small, large = sized[0], sized[-1]
    ok = True
    for name, get in (
        ("e2e", lambda r: r.ours_e2e.median()),
        ("standing", lambda r: r.ours_srv.median()),
    ):
        a, b = get(small).peak_mb, get(large).peak_mb
        limit = a * GROWTH_SLACK[0] + GROWTH_SLACK[1]
        grows = b > limit
        ok = ok and not grows
        lines.append(
            f"peak memory, {name}: {a:.0f} MB at {small.size_mb} MB -> {b:.0f} MB at {large.size_mb} MB: "
            + ("GROWS with database size" if grows else "flat (within 25 % + 64 MB)")
        )
    return ok, lines


def record_issue_rows(pg_results: list[PgResult], sqlite_result: SqliteResult | None) -> None:
    """Issues 8's and 18's rows for bench/run's summary: standing server, as a deployment runs."""
    one_task = next((r.one_task.median() for r in pg_results if r.one_task.runs), None)
    for result in pg_results:
        if result.size_mb == 0 and result.one_task.runs:
            record_row("tiny", Row("tiny", result.ours_srv.median(), result.one_task.median()))
        elif result.size_mb > 0:  # several sizes: the largest, measured last, wins
            record_row("pg", Row("pg", result.ours_srv.median(), result.theirs.median()))
            ours = result.ours_srv.median()
            if one_task is not None:  # issue 18: the floor plus Prefect's fixed cost
                floor = result.floor.median()
                both = Measurement(
                    "floor + one-task flow", floor.seconds + one_task.seconds, 0.0, 0.0, 0
                )
                record_row("pg_floor", Row("pg_floor", ours, both))
            record_issue_row(  # sizes in MB in the seconds columns: the ratio is what counts
                "pg_size", result.ours_srv.output_mb(), result.theirs.output_mb(), 0.0
            )
            if result.ours_zstd.runs:
                record_row("zstd", Row("zstd", result.ours_zstd.median(), result.floor.median()))
    if sqlite_result is not None:
        record_row(
            "sqlite", Row("sqlite", sqlite_result.ours_srv.median(), sqlite_result.theirs.median())
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size-mb",
        type=int,
        action="append",
        default=None,
        metavar="MB",
        help="PostgreSQL database size; repeat for several sizes (default 100; 0 skips)",
    )
    parser.add_argument(
        "--sqlite-size-mb",
        type=int,
        default=0,
        metavar="MB",
        help="also bench SQLite at this size (default: no SQLite row)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per job (default 1)")
    parser.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="how repeated wall/CPU times are summarised (memory is always the max); "
        "'min' is the least disturbed run on a busy machine",
    )
    parser.add_argument(
        "--snapshot",
        metavar="REV",
        help="measure the product code of git REV (e.g. HEAD) instead of the working tree, "
        "which other people may be editing while the bench runs",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases for a later run")
    parser.add_argument(
        "--rebuild", action="store_true", help="regenerate even if a database of that size exists"
    )
    parser.add_argument(
        "--no-empty", action="store_true", help="skip the empty-database (fixed cost) rows"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "chatbot-bench",
        help="where the SQLite file lives (kept with --keep) and each run's scratch folder",
    )
    args = parser.parse_args(argv)
    sizes = [s for s in (args.size_mb or [100]) if s > 0]
    global STAT, CODE_PATH
    STAT = args.stat
    # Backgrounded shells start us with SIGINT ignored, and SIGTERM would skip the clean-up
    # (our Prefect server, the databases): both become KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    for tool in ("pg_dump", "gzip", "sqlite3"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not on PATH")
    if not os.access(CHATBOT, os.X_OK):
        parser.error(f"{CHATBOT} not found: install the package into .venv first")

    # Scratch of this run only (another bench may be using the same --workdir).
    ws = Workspace(args.workdir / f"run-{os.getpid()}")
    shutil.rmtree(ws.root, ignore_errors=True)
    ws.prepare()
    code = code_under_test(ws, args.snapshot)
    data_dir = args.workdir
    started = time.monotonic()
    pg_results: list[PgResult] = []
    sqlite_result: SqliteResult | None = None
    print(
        f"# db-backup bench, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
        f"{os.cpu_count()} CPUs, repeat {args.repeat} ({args.stat} times, max memory), "
        f"load average {os.getloadavg()[0]:.2f} at start, data set {datasets.DEFAULT_KIND}"
        + (
            f", BACKUP_COMPRESSION_LEVEL={os.environ['BENCH_COMPRESSION_LEVEL']}"
            if os.environ.get("BENCH_COMPRESSION_LEVEL")
            else ""
        )
        + f"\n# code: {code}",
        flush=True,
    )
    try:
        # Let the ephemeral server create its database once, outside any measurement.
        warm_db = datasets.database_url("postgres")
        run_ours(ws, ours_env(ws, None, pg_db_env(warm_db)), "warm-up (ephemeral)")
        with standing_server(ws.prefect_server) as api_url:
            run_ours(ws, ours_env(ws, api_url, pg_db_env(warm_db)), "warm-up (standing)")
            if not args.no_empty:
                pg_results.append(empty_pg_bench(ws, args, api_url))
                print_rows(pg_results[-1].rows(), "## " + pg_results[-1].label)
                print("\n".join(pg_results[-1].notes()), flush=True)
            for size in sizes:
                pg_results.append(pg_bench(ws, size, args, api_url))
                print_rows(pg_results[-1].rows(), "## " + pg_results[-1].label)
                print("\n".join(pg_results[-1].notes()), flush=True)
            if args.sqlite_size_mb > 0:
                sqlite_result = sqlite_bench(ws, args.sqlite_size_mb, args, api_url, data_dir)
                print_rows(sqlite_result.rows(), "## " + sqlite_result.label)
                print("\n".join(sqlite_result.notes()), flush=True)
    finally:
        datasets.drop_postgres(EMPTY_DB)
        shutil.rmtree(ws.root, ignore_errors=True)
        if not args.keep:
            for size in sizes:
                datasets.drop_postgres(datasets.pg_name(size))
            if args.sqlite_size_mb > 0:
                sqlite_file(data_dir, args.sqlite_size_mb).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                args.workdir.rmdir()  # only when nothing else is left in it

    rows = [row for r in pg_results for row in r.rows()]
    if sqlite_result is not None:
        rows += sqlite_result.rows()
    record_issue_rows(pg_results, sqlite_result)
    print_rows(rows, "## All rows (ratio = ours / theirs wall time)")
    ok, lines = memory_verdict(pg_results)
    print("\n".join(lines))
    print(
        f"\n(bench took {time.monotonic() - started:.0f} s; "
        f"load average {os.getloadavg()[0]:.2f} at the end)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
