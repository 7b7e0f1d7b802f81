"""migrate-to-postgres against the guide's recipe (and pgloader, when installed), same database.

    .venv/bin/python bench/migrate.py [--size-mb N] [--keep]
    BENCH_MIGRATE_MB=500 .venv/bin/python bench/migrate.py      # the issue's size

Builds the platform's SQLite database of tests/support/chatbot_sqlite.py (AUTOINCREMENT
keys with gaps, 0/1 booleans, JSON, BLOBs with zero bytes, unicode, REAL values such as
0.1 + 0.2) at about N MB (`--size-mb`, else BENCH_MIGRATE_MB, else 20), then migrates it
into a fresh PostgreSQL database three ways:

- ours:     `chatbot-backup migrate-to-postgres --yes` against a standing Prefect server,
            end to end (the final SQLite backup included); the migration's own seconds
            (copy + verification + constraints) are read from its report;
- guide:    the guide's steps 3–5 exactly: `sqlite3 DB .dump > f`, the three `sed -i`
            lines, `psql URL < f` (no ON_ERROR_STOP, as written);
- pgloader: `pgloader sqlite:///DB pgsql://.../DB` with its defaults (skipped when it is
            not installed: `apt-get install pgloader`).

Each gets the same checks of its result: rows that arrived per table, errors printed,
whether a new row can be inserted without giving an id (the sequence), and whether the
REAL, text and BLOB values of `messages` are exactly SQLite's. rows/s is SQLite's row
count over the wall time. A Markdown table goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import sqlite3
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from db_backup import standing_server  # noqa: E402
from measure import Measurement, measure  # noqa: E402

from tests.support.chatbot_sqlite import make_chatbot_db  # noqa: E402

ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
CLI = str(Path(sys.executable).with_name("chatbot-backup"))
TABLES = ("agents", "conversations", "messages", "settings")
RECIPE = (
    "sqlite3 {db} .dump > {sql_file} && "
    "sed -i '/BEGIN TRANSACTION;/d' {sql_file} && sed -i '/COMMIT;/d' {sql_file} && "
    "sed -i '/PRAGMA/d' {sql_file} && psql {url} < {sql_file} > /dev/null 2> {errors}"
)


def log(message: str) -> None:
    print(f"[bench/migrate] {message}", file=sys.stderr, flush=True)


def url(dbname: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{dbname}"


def fresh_database(name: str) -> str:
    with psycopg.connect(**ADMIN, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(**ADMIN, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def build(path: Path, size_mb: int) -> int:
    """The platform database at about `size_mb` MB; returns its number of messages."""
    with tempfile.TemporaryDirectory() as scratch:
        sample = Path(scratch) / "sample.db"
        make_chatbot_db(sample, messages=3000, conversations=100)
        per_message = sample.stat().st_size / 3000
    messages = max(1000, int(size_mb * 1024 * 1024 / per_message))
    started = time.monotonic()
    make_chatbot_db(path, messages=messages, conversations=max(50, messages // 30), agents=40)
    log(f"built {path} ({path.stat().st_size / 1e6:.0f} MB, {messages} messages) in {time.monotonic() - started:.0f} s")
    return messages


def sqlite_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return {t: int(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in TABLES}


@dataclass
class Result:
    job: str
    measured: Measurement | None
    arrived: dict[str, int | None]
    errors: int
    next_insert: str
    values: str
    note: str = ""


def _bits(value: object) -> object:
    return struct.pack(">d", value) if isinstance(value, float) else value


def check_values(path: Path, dbname: str) -> str:
    """messages' score (REAL), content (text), attachment (BLOB): how many differ from SQLite."""
    source = sqlite3.connect(path)
    differ = compared = missing = 0
    try:
        with psycopg.connect(**{**ADMIN, "dbname": dbname}) as pg:  # type: ignore[arg-type]
            cursor = pg.cursor(name="bench_values")
            cursor.itersize = 5000
            cursor.execute("SELECT id, score, content, attachment FROM messages ORDER BY id")
            mine = source.execute("SELECT id, score, content, attachment FROM messages ORDER BY id")
            theirs = {row[0]: row for row in cursor}
            for row in mine:
                other = theirs.get(row[0])
                compared += 1
                if other is None:
                    missing += 1
                    continue
                attachment = bytes(other[3]) if other[3] is not None else None
                if (_bits(row[1]), row[2], row[3]) != (_bits(other[1]), other[2], attachment):
                    differ += 1
    except psycopg.Error as exc:
        return f"unreadable ({str(exc).splitlines()[0]})"
    finally:
        source.close()
    if missing == compared:
        return "none arrived"
    found = "all that arrived exact" if differ == 0 else f"{differ} of {compared - missing} rows differ"
    return found + (f", {missing} missing" if missing else "")


def assess(job: str, measured: Measurement | None, path: Path, dbname: str, errors: int, note: str = "") -> Result:
    arrived: dict[str, int | None] = {}
    with psycopg.connect(**{**ADMIN, "dbname": dbname}, autocommit=True) as pg:  # type: ignore[arg-type]
        for table in TABLES:
            try:
                row = pg.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
                arrived[table] = int(row[0]) if row else None
            except psycopg.Error:
                arrived[table] = None
        try:
            with pg.transaction(force_rollback=True):
                pg.execute(
                    "INSERT INTO messages (conversation_id, role, content) "
                    "VALUES ((SELECT min(id) FROM conversations), 'user', 'bench') RETURNING id"
                )
            next_insert = "works"
        except psycopg.Error as exc:
            next_insert = f"fails: {str(exc).splitlines()[0][:70]}"
    return Result(job, measured, arrived, errors, next_insert, check_values(path, dbname), note)


def ours(path: Path, dbname: str, workspace: Path, api_url: str) -> tuple[Measurement, float]:
    app, backups = workspace / "app", workspace / "backups"
    for folder in (app, backups):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ADMIN_", "BACKUP_", "MIGRATE_"))}
    env.update(
        APP_ROOT=str(app), BACKUP_DIR=str(backups), ADMIN_DB_PATH=str(path), PREFECT_API_URL=api_url,
        PREFECT_HOME=str(workspace / "prefect-client"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
        MIGRATE_TARGET_DATABASE_URL=url(dbname),
    )
    measured = measure([CLI, "migrate-to-postgres", "--yes"], label="ours", env=env, cwd=str(app))
    [report] = (backups / "reports").glob("migration_*.md")
    found = re.search(r"UTC \(([\d.]+) s\)", report.read_text())
    return measured, float(found.group(1)) if found else float("nan")


def guide(path: Path, dbname: str, workspace: Path) -> tuple[Measurement, int, list[str]]:
    sql_file, errors = workspace / "sqlite_export.sql", workspace / "psql_errors.txt"
    command = RECIPE.format(db=path, sql_file=sql_file, url=url(dbname), errors=errors)
    measured = measure(command, label="guide", check=False)
    lines = [line for line in errors.read_text(errors="replace").splitlines() if line.startswith("ERROR:")]
    kinds = collections.Counter(re.sub(r'"[^"]*"|\d+', "…", line)[:110] for line in lines)
    sql_file.unlink(missing_ok=True)
    return measured, len(lines), [f"{count} × {kind}" for kind, count in kinds.most_common(6)]


def pgloader(path: Path, dbname: str) -> tuple[Measurement | None, int, str]:
    """pgloader with its defaults; (measurement, errors it counted, what it said went wrong)."""
    if shutil.which("pgloader") is None:
        return None, 0, "not installed"
    measured = measure(["pgloader", f"sqlite://{path}", url(dbname)], label="pgloader", check=False)
    text = measured.stdout_tail + measured.stderr_tail
    found = re.search(r"Total import time\s+(\d+)\s+(\d+)", text)
    errors = int(found.group(1)) if found else 0
    problems = [re.sub(r"^\S+ (ERROR|FATAL) ", "", line)[:120] for line in text.splitlines() if " ERROR " in line or " FATAL " in line]
    note = "; ".join(dict.fromkeys(problems)) or ("" if measured.ok else f"exit {measured.returncode}")
    return measured, max(errors, len(problems)), f"exit {measured.returncode}; {note}" if note else f"exit {measured.returncode}"


def table(results: list[Result], counts: dict[str, int], ours_seconds: float) -> str:
    total = sum(counts.values())
    header = "| job | seconds | rows/s | × ours | peak MB | rows arrived (of SQLite's) | errors | next insert | messages' values |"
    lines = [header, "|---|---:|---:|---:|---:|---|---:|---|---|"]
    for r in results:
        if r.measured is None:
            lines.append(f"| {r.job} | - | - | - | - | {r.note} | - | - | - |")
            continue
        arrived = ", ".join(
            f"{t} {'missing' if r.arrived[t] is None else r.arrived[t]}/{counts[t]}" for t in TABLES
        )
        name = r.job.replace("|", "\\|")
        lines.append(
            f"| {name} | {r.measured.seconds:.1f} | {total / r.measured.seconds:,.0f} | "
            f"{r.measured.seconds / ours_seconds:.2f} | {r.measured.peak_mb:.0f} | {arrived} | {r.errors} | "
            f"{r.next_insert} | {r.values} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=int(os.environ.get("BENCH_MIGRATE_MB", "20")))
    parser.add_argument("--keep", action="store_true", help="keep the databases and the SQLite file")
    args = parser.parse_args(argv)
    workspace = Path(tempfile.mkdtemp(prefix="bench-migrate-"))
    path = workspace / "admin.db"
    names = [f"bench_migrate_{job}" for job in ("ours", "guide", "pgloader", "pgloader_plain")]
    try:
        counts_messages = build(path, args.size_mb)
        counts = sqlite_counts(path)
        results = []
        with standing_server(workspace / "prefect-server") as api_url:
            measured, inner = ours(path, fresh_database(names[0]), workspace, api_url)
        log(f"ours: {measured.seconds:.1f} s end to end, migration {inner:.1f} s")
        results.append(assess("ours (end to end)", measured, path, names[0], 0,))
        guide_measured, guide_errors, kinds = guide(path, fresh_database(names[1]), workspace)
        log(f"guide: {guide_measured.seconds:.1f} s, {guide_errors} errors")
        results.append(assess("guide's sqlite3 .dump | sed | psql", guide_measured, path, names[1], guide_errors))
        # pgloader twice: on the same database, and on one whose messages.created_at
        # defaults to CURRENT_TIMESTAMP (pgloader 3.6.7 stops at `DEFAULT (datetime('now'))`).
        plain = workspace / "plain_defaults.db"
        if shutil.which("pgloader") is not None:  # else the second database is never read
            make_chatbot_db(plain, messages=counts_messages, conversations=max(50, counts_messages // 30),
                            agents=40, plain_defaults=True)
        notes = {}
        for job, source, name in (("pgloader (defaults)", path, names[2]),
                                  ("pgloader, CURRENT_TIMESTAMP default", plain, names[3])):
            loader, loader_errors, note = pgloader(source, fresh_database(name))
            notes[job] = note
            if loader is None:
                results.append(Result(job, None, {}, 0, "", "", note))
                break
            log(f"{job}: {loader.seconds:.1f} s, {loader_errors} errors; {note}")
            results.append(assess(job, loader, source, name, loader_errors, note))
        mb = path.stat().st_size / 1e6
        print(f"\n### migrate-to-postgres, SQLite {mb:.0f} MB, {sum(counts.values()):,} rows "
              f"(load {os.getloadavg()[0]:.1f})\n")
        print(table(results, counts, measured.seconds))
        print(f"\nOurs, the migration alone (copy, value-by-value verification, constraints; without "
              f"the CLI start and the final SQLite backup): {inner:.1f} s, "
              f"{sum(counts.values()) / inner:,.0f} rows/s.")
        if kinds:
            print("\nThe guide's recipe, psql's errors by kind:\n")
            print("\n".join(f"- {kind}" for kind in kinds))
        for job, note in notes.items():
            print(f"\n{job}: {note}")
        types = []
        if plain.exists():
            with psycopg.connect(**{**ADMIN, "dbname": names[3]}) as pg:  # type: ignore[arg-type]
                types = pg.execute(
                    "SELECT column_name || ' ' || data_type FROM information_schema.columns "
                    "WHERE table_name = 'messages' ORDER BY ordinal_position"
                ).fetchall()
        if types:
            print("\npgloader's messages table (CURRENT_TIMESTAMP variant): " + ", ".join(t[0] for t in types))
    finally:
        if not args.keep:
            for name in names:
                drop_database(name)
            shutil.rmtree(workspace, ignore_errors=True)
        else:
            log(f"kept {workspace} and databases {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
