"""Is "several backends into a new database" a lever for db-restore? (issue 18)

    .venv/bin/python bench/parallel_load.py SOURCE_DB [--repeat 3]

Measures, with plain `psql` and no chatbot-backup at all, the best a parallel restore could
do on this machine: the dump of SOURCE_DB (bench/datasets.py builds one) loaded into a
fresh database

- one:  `psql --single-transaction` over the whole dump (what db-restore's one backend does);
- two:  pre-data on one session, then the data over two sessions at once (the largest
        table's COPY split in half between them, the other tables with the first half),
        then the post-data's primary keys, unique constraints and indexes over two
        sessions, then its foreign keys.

Rounds alternate one / two, each into a freshly created database after a CHECKPOINT, and
record wall time and the machine's busy and idle CPU (from /proc/stat) during the load:
if "two" leaves no idle CPU, the parallel load is bound by the cores, and whatever
chatbot-backup adds (Prefect, inflate, sha256, the row routing, the verification) comes
on top of it. Both targets are checked to hold the source's row counts. Only psql's
side is measured here; there is no swap, no routing of rows in Python.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PSQL = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
TARGET = "bench_parallel_load"
COPY = re.compile(rb"^COPY (\S+) .* FROM stdin;\n$")


def psql(*args: str, db: str = "postgres") -> subprocess.Popen[bytes]:
    return subprocess.Popen([*PSQL, *args, db], stdout=subprocess.DEVNULL)


def run_all(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.wait():
            raise SystemExit(f"psql failed: {proc.args}")


def dump_sections(source: str, where: Path) -> None:
    for section in ("pre-data", "data", "post-data"):
        with open(where / f"{section}.sql", "wb") as out:
            subprocess.run(
                ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", f"--section={section}", source],
                stdout=out,
                check=True,
            )
    with open(where / "all.sql", "wb") as out:
        subprocess.run(
            ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", source], stdout=out, check=True
        )


def split_data(where: Path) -> None:
    """data.sql -> half_a.sql (everything but the largest table's second half), half_b.sql."""
    lines = (where / "data.sql").read_bytes().splitlines(keepends=True)
    header: list[bytes] = []
    blocks: list[tuple[bytes, list[bytes]]] = []  # (COPY line, rows) in dump order
    tail: list[bytes] = []  # setval() and the rest after the last block
    current: tuple[bytes, list[bytes]] | None = None
    for line in lines:
        if current is not None:
            if line == b"\\.\n":
                blocks.append(current)
                current = None
            else:
                current[1].append(line)
        elif COPY.match(line):
            current = (line, [])
        elif blocks:
            tail.append(line)
        else:
            header.append(line)
    largest = max(range(len(blocks)), key=lambda i: len(blocks[i][1]))
    with open(where / "half_a.sql", "wb") as a, open(where / "half_b.sql", "wb") as b:
        a.writelines(header)
        b.writelines(header)
        for i, (copy, rows) in enumerate(blocks):
            cut = len(rows) // 2 if i == largest else len(rows)
            a.writelines([copy, *rows[:cut], b"\\.\n"])
            if i == largest:
                b.writelines([copy, *rows[cut:], b"\\.\n"])
        a.writelines(tail)


def split_post_data(where: Path) -> None:
    """post-data.sql -> post_a / post_b (keys and indexes, alternately), post_fk (the rest)."""
    text = (where / "post-data.sql").read_text()
    kept = [line for line in text.splitlines() if not line.startswith(("--", "\\"))]
    statements = [s.strip() for s in "\n".join(kept).split(";\n") if s.strip()]
    settings = [s for s in statements if s.startswith(("SET ", "SELECT pg_catalog.set_config"))]
    statements = [s for s in statements if s not in settings]
    keys = [s for s in statements if "FOREIGN KEY" not in s]
    fks = [s for s in statements if "FOREIGN KEY" in s]
    prelude = "".join(s.strip() + ";\n" for s in settings)
    # the largest index builds first, one per session: messages' keys are the long ones
    keys.sort(key=lambda s: "messages" not in s)
    for name, part in (("post_a", keys[0::2]), ("post_b", keys[1::2]), ("post_fk", fks)):
        (where / f"{name}.sql").write_text(prelude + "".join(s + ";\n" for s in part))


def cpu() -> tuple[int, int]:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, idle, iowait = (int(f) for f in fields[:5])
    return user + nice + system, idle + iowait


def fresh() -> None:
    run_all(psql("-c", f"DROP DATABASE IF EXISTS {TARGET}"))
    run_all(psql("-c", f"CREATE DATABASE {TARGET}"))
    run_all(psql("-c", "CHECKPOINT"))


def load_one(where: Path) -> None:
    run_all(psql("-1", "-f", str(where / "all.sql"), db=TARGET))


def load_two(where: Path) -> None:
    run_all(psql("-1", "-f", str(where / "pre-data.sql"), db=TARGET))
    run_all(*(psql("-1", "-f", str(where / f), db=TARGET) for f in ("half_a.sql", "half_b.sql")))
    run_all(*(psql("-1", "-f", str(where / f), db=TARGET) for f in ("post_a.sql", "post_b.sql")))
    run_all(psql("-1", "-f", str(where / "post_fk.sql"), db=TARGET))


def counts(db: str) -> str:
    query = (
        "SELECT string_agg(relname || '=' || (xpath('/row/c/text()', query_to_xml("
        "format('SELECT count(*) AS c FROM %I.%I', schemaname, relname), false, true, '')))[1]::text, ',' "
        "ORDER BY relname) FROM pg_stat_user_tables"
    )
    out = subprocess.run(
        [*PSQL, "-At", "-c", query, db], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    expected = counts(args.source)
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        where = Path(scratch)
        dump_sections(args.source, where)
        split_data(where)
        split_post_data(where)
        ways: dict[str, Callable[[Path], None]] = {"one": load_one, "two": load_two}
        for round_ in range(args.repeat):
            for name, load in ways.items():
                fresh()
                busy0, idle0 = cpu()
                started = time.monotonic()
                load(where)
                wall = time.monotonic() - started
                busy1, idle1 = cpu()
                if counts(TARGET) != expected:
                    raise SystemExit(f"{name}: the loaded database's row counts differ")
                print(
                    f"round {round_ + 1} {name}: {wall:.1f} s wall, "
                    f"{(busy1 - busy0) / 100:.1f} CPU s busy, {(idle1 - idle0) / 100:.1f} CPU s idle",
                    flush=True,
                )
    run_all(psql("-c", f"DROP DATABASE IF EXISTS {TARGET}"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
