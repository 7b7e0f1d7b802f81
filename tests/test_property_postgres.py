"""Property: any PostgreSQL schema comes back exactly, and damage is refused by all three
jobs alike (issue 15).

Hypothesis generates schemas — names with dots, quotes, spaces, mixed case and unicode;
tables with and without keys (so that table data is often the dump's last statement);
enums, partitions, publications, large objects, sequences, views — in a throwaway
database each. Every example goes `db-backup` → the live database destroyed and changed
→ `db-restore --yes` → the `pg_dump` text of before and after compared (without the
`\\restrict` lines), and `test-restore --backup-file` of the same backup must pass too.
A damaged variant of the same dump (cut at a statement boundary, or a lone `;` after
COPY data — psql 15 quits there with exit 0) must be refused by db-restore and by
test-restore, with the live database unchanged. Hand-written schemas also go through
`backup-all` → `restore-all` (and a damaged archive is refused).

The CLI runs through the pre-forked `flows.cli.main` of tests/support/kill.py (the real
CLI without 2 s of imports per run). Bounded: 7 generated examples and one explicit,
derandomized, no shrinking.
"""

from __future__ import annotations

import gzip
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from psycopg import sql

from tests.conftest import PG_ADMIN, Platform, create_database, drop_database, pg_dump_text, pg_url
from tests.support.kill import ForkingCli
from tests.test_restore_all import damage, live_files, populate, rewrite_archive, set_manifest_entry

pytestmark = pytest.mark.slow

_NAME_CHARS = "abcXYZ_ .\"'-1éü日ß"
names = st.text(alphabet=_NAME_CHARS, min_size=1, max_size=8).filter(
    lambda n: not n.lower().startswith("pg_")
)
_TEXT_CHARS = "ab \t\n\\'\",;.é日\x7f"
cells_text = st.one_of(st.none(), st.text(alphabet=_TEXT_CHARS, max_size=12))
COLUMN_TYPES = {
    "int": st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
    "text": cells_text,
    "bytea": st.one_of(st.none(), st.binary(max_size=12)),
    "numeric": st.one_of(st.none(), st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-1000, max_value=1000)),
    "boolean": st.one_of(st.none(), st.booleans()),
}


@dataclass
class Table:
    schema: str
    name: str
    columns: list[tuple[str, str]]
    key: bool
    serial: bool
    rows: list[tuple[object, ...]]


@dataclass
class Schema:
    tables: list[Table]
    extra_schema: str | None
    enum: list[str] | None
    partitioned: bool
    view: bool
    publication: str | None
    large_objects: list[bytes]
    sequence: int | None
    destroy: list[str] = field(default_factory=list)


@st.composite
def tables(draw: st.DrawFn, schema: str) -> Table:
    column_names = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    types = [draw(st.sampled_from(sorted(COLUMN_TYPES))) for _ in column_names]
    rows = draw(
        st.lists(st.tuples(*(COLUMN_TYPES[t] for t in types)), max_size=6)
    )
    return Table(
        schema=schema,
        name=draw(names),
        columns=list(zip(column_names, types, strict=True)),
        key=draw(st.booleans()),
        serial=draw(st.booleans()),
        rows=rows,
    )


@st.composite
def schemas(draw: st.DrawFn) -> Schema:
    extra = draw(st.one_of(st.none(), names.filter(lambda n: n != "public")))
    homes = ["public"] + ([extra] if extra else [])
    found: list[Table] = []
    for _ in range(draw(st.integers(1, 3))):
        table = draw(tables(draw(st.sampled_from(homes))))
        if all((t.schema, t.name) != (table.schema, table.name) for t in found):
            found.append(table)
    return Schema(
        tables=found,
        extra_schema=extra,
        enum=draw(st.one_of(st.none(), st.lists(names, min_size=1, max_size=3, unique=True))),
        partitioned=draw(st.booleans()),
        view=draw(st.booleans()),
        publication=draw(st.one_of(st.none(), names)),
        large_objects=draw(st.lists(st.binary(min_size=0, max_size=40), max_size=2)),
        sequence=draw(st.one_of(st.none(), st.integers(1, 10**6))),
        destroy=draw(
            st.lists(st.sampled_from(["drop schemas", "delete rows", "add table", "unlink objects"]),
                     min_size=1, max_size=4, unique=True)
        ),
    )


def ident(*parts: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(p) for p in parts)


def build(dbname: str, spec: Schema) -> None:
    """The generated schema, with its data, in `dbname`."""
    with psycopg.connect(**{**PG_ADMIN, "dbname": dbname}, autocommit=True) as conn:  # type: ignore[arg-type]
        if spec.extra_schema:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(spec.extra_schema)))
        if spec.enum:
            conn.execute(
                sql.SQL("CREATE TYPE public.mood AS ENUM ({})").format(
                    sql.SQL(", ").join(sql.Literal(label) for label in spec.enum)
                )
            )
        for table in spec.tables:
            columns = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in table.columns]
            if table.serial:
                columns.append(sql.SQL("serial_id bigserial"))
            if spec.enum:
                columns.append(sql.SQL("feeling public.mood"))
            if table.key:
                columns.append(sql.SQL("key_id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY"))
            relation = ident(table.schema, table.name)
            conn.execute(sql.SQL("CREATE TABLE {} ({})").format(relation, sql.SQL(", ").join(columns)))
            insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                relation,
                sql.SQL(", ").join(
                    [sql.Identifier(c) for c, _ in table.columns]
                    + ([sql.Identifier("feeling")] if spec.enum else [])
                ),
                sql.SQL(", ").join(sql.Placeholder() * (len(table.columns) + bool(spec.enum))),
            )
            for row in table.rows:
                conn.execute(insert, (*row, *([spec.enum[-1]] if spec.enum else [])))
        first = ident(spec.tables[0].schema, spec.tables[0].name)
        if spec.partitioned:
            conn.execute("CREATE TABLE public.\"events by day\" (day int, note text) PARTITION BY RANGE (day)")
            conn.execute("CREATE TABLE public.\"events.early\" PARTITION OF public.\"events by day\" FOR VALUES FROM (0) TO (10)")
            conn.execute("CREATE TABLE public.\"events.late\" PARTITION OF public.\"events by day\" FOR VALUES FROM (10) TO (20)")
            conn.execute("INSERT INTO public.\"events by day\" SELECT g, 'n' || g FROM generate_series(0, 19, 3) g")
        if spec.view:
            conn.execute(sql.SQL("CREATE VIEW public.\"a view.of it\" AS SELECT * FROM {}").format(first))
        if spec.publication:
            conn.execute(
                sql.SQL("CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert')").format(
                    sql.Identifier(spec.publication), first
                )
            )
        for data in spec.large_objects:
            conn.execute("SELECT lo_from_bytea(0, %s)", (data,))
        if spec.sequence is not None:
            conn.execute("CREATE SEQUENCE public.\"Counter.seq\"")
            conn.execute("SELECT setval('public.\"Counter.seq\"', %s)", (spec.sequence,))


def destroy(dbname: str, spec: Schema) -> None:
    """What an incident does to the live database after the backup."""
    with psycopg.connect(**{**PG_ADMIN, "dbname": dbname}, autocommit=True) as conn:  # type: ignore[arg-type]
        if "delete rows" in spec.destroy:
            for table in spec.tables:
                conn.execute(sql.SQL("DELETE FROM {}").format(ident(table.schema, table.name)))
        if "unlink objects" in spec.destroy:
            conn.execute("SELECT lo_unlink(oid) FROM pg_largeobject_metadata")
        if "drop schemas" in spec.destroy and spec.extra_schema:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(spec.extra_schema)))
        if "add table" in spec.destroy or "drop schemas" in spec.destroy:
            conn.execute("CREATE TABLE public.intruder (x int)")
            conn.execute("INSERT INTO public.intruder VALUES (1)")


def statement_boundaries(dump: bytes) -> list[int]:
    """Where pg_dump starts a new object (its `--\\n-- Name:` headers): cutting there
    leaves whole statements only."""
    found, at = [], dump.find(b"\n--\n-- ")
    end = dump.rfind(b"\n--\n-- PostgreSQL database dump complete")
    while 0 <= at < end:
        found.append(at + 1)
        at = dump.find(b"\n--\n-- ", at + 1)
    return found


def damaged(dump: bytes, how: str, choice: int) -> bytes:
    if how == "lone ; after COPY" and b"\n\\.\n" in dump:
        copies = [m.start() for m in re.finditer(rb"\n\\\.\n", dump)]
        end = copies[choice % len(copies)] + 4
        return dump[:end] + b";\n" + dump[end:]
    cuts = statement_boundaries(dump)
    return dump[: cuts[choice % len(cuts)]]


def verdict(log: str) -> str:
    for line in log.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[1] == "database" and parts[0] in ("PASS", "FAIL"):
            return parts[0]
    raise AssertionError(f"no database check reported:\n{log}")


def note_features(dump: bytes, spec: Schema, how: str) -> None:
    """What the example covered (pytest --hypothesis-show-statistics)."""
    last_statement = max(dump.rfind(b"\n" + word) for word in (b"CREATE ", b"ALTER ", b"SELECT "))
    if dump.rfind(b"\n\\.\n") > last_statement:
        event("table data is the dump's last statement")
    names_used = [t.name for t in spec.tables] + [spec.extra_schema or ""]
    if any("." in n or '"' in n for n in names_used):
        event("a name with a dot or a quote")
    for flag, label in (
        (spec.large_objects, "large objects"),
        (spec.publication, "publication"),
        (spec.partitioned, "partitions"),
        (spec.enum, "enum"),
        (any(not t.key for t in spec.tables), "a table without a key"),
    ):
        if flag:
            event(label)
    event(f"damage: {how}")


@pytest.fixture
def cli(platform: Platform, tmp_path: Path) -> Iterator[ForkingCli]:
    worker = ForkingCli(platform.env, platform.root, tmp_path / "logs")
    yield worker
    worker.close()


@dataclass
class Run:
    cli: ForkingCli
    env: dict[str, str]

    def __call__(self, *argv: str) -> tuple[int, str]:
        return self.cli.run(*argv, extra_env=self.env)


def one_database(tmp_path: Path) -> tuple[str, Path]:
    dbname = f"cbprop_{uuid.uuid4().hex[:10]}"
    create_database(dbname)
    backups = tmp_path / f"backups-{dbname}"
    return dbname, backups


DATA_LAST = Schema(  # psql used to quit at the restore's own ';' right after this COPY
    tables=[Table("public", "settings", [("k", "text"), ("v", "text")], False, False, [("a", "b"), ("c\td", None)])],
    extra_schema=None, enum=None, partitioned=False, view=False, publication=None,
    large_objects=[], sequence=None, destroy=["delete rows", "add table"],
)


@settings(
    max_examples=7,
    deadline=None,
    derandomize=True,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    spec=schemas(),
    how=st.sampled_from(["cut at a statement boundary", "lone ; after COPY"]),
    choice=st.integers(0, 10**6),
)
@example(spec=DATA_LAST, how="lone ; after COPY", choice=0)
def test_generated_schemas_round_trip_and_damage_is_refused(
    cli: ForkingCli, tmp_path: Path, spec: Schema, how: str, choice: int
) -> None:
    dbname, backups = one_database(tmp_path)
    run = Run(cli, {"ADMIN_DB_TYPE": "postgres", "ADMIN_DATABASE_URL": pg_url(dbname), "BACKUP_DIR": str(backups)})
    try:
        build(dbname, spec)
        code, log = run("db-backup")
        assert code == 0, log
        [artifact] = [p for p in backups.glob("admin_postgres_*.sql.gz") if "before_restore" not in p.name]
        note_features(gzip.decompress(artifact.read_bytes()), spec, how)
        backed_up = pg_dump_text(dbname)
        destroy(dbname, spec)

        code, log = run("db-restore", "--yes", str(artifact))
        assert code == 0, log
        assert pg_dump_text(dbname) == backed_up
        code, log = run("test-restore", "--backup-file", str(artifact))
        assert code == 0 and verdict(log) == "PASS", log

        # The same dump, damaged: db-restore and test-restore both refuse, nothing changes.
        destroy(dbname, spec)
        before = pg_dump_text(dbname)
        bad = tmp_path / f"damaged-{dbname}.sql.gz"
        bad.write_bytes(gzip.compress(damaged(gzip.decompress(artifact.read_bytes()), how, choice)))
        code, log = run("db-restore", "--yes", str(bad))
        assert code in (6, 7), log
        assert pg_dump_text(dbname) == before
        code, log = run("test-restore", "--backup-file", str(bad))
        assert code == 1 and verdict(log) == "FAIL", log
    finally:
        drop_database(dbname)


# -- hand-written schemas, through restore-all as well ------------------------------------------

HAND_WRITTEN = {
    "settings only (its data is the dump's last statement)": DATA_LAST,
    "everything": Schema(
        tables=[
            Table("my.schema", 'We"ird Täble', [("note", "text"), ("n", "int")], False, True, [("x\\y", 1), (None, 2)]),
            Table("public", "audit.log", [("line", "text")], True, False, [("l1",), ("l2",)]),
        ],
        extra_schema="my.schema", enum=["happy", "so so", "it's"], partitioned=True, view=True,
        publication="app pub", large_objects=[b"\x00\x01binary", b""], sequence=42,
        destroy=["drop schemas", "delete rows", "unlink objects"],
    ),
}


@pytest.mark.parametrize("case", sorted(HAND_WRITTEN))
def test_hand_written_schemas_agree_through_restore_all(
    cli: ForkingCli, platform: Platform, tmp_path: Path, case: str
) -> None:
    spec = HAND_WRITTEN[case]
    dbname, backups = one_database(tmp_path)
    run = Run(cli, {"ADMIN_DB_TYPE": "postgres", "ADMIN_DATABASE_URL": pg_url(dbname), "BACKUP_DIR": str(backups)})
    try:
        build(dbname, spec)
        populate(platform.root)
        code, log = run("backup-all")
        assert code == 0, log
        [archive] = backups.glob("full_backup_*.tar.gz")
        backed_up, files = pg_dump_text(dbname), live_files(platform)
        destroy(dbname, spec)
        damage(platform.root)

        code, log = run("restore-all", "--yes", str(archive))
        assert code == 0, log
        assert pg_dump_text(dbname) == backed_up
        assert live_files(platform) == files
        code, log = run("test-restore", "--backup-file", str(archive))
        assert code == 0 and verdict(log) == "PASS", log

        # Damaged the two ways inside the archive: restore-all and test-restore refuse;
        # database and files stay as they were.
        destroy(dbname, spec)
        damage(platform.root)
        before, files_before = pg_dump_text(dbname), live_files(platform)
        for n, how in enumerate(["cut at a statement boundary", "lone ; after COPY"]):

            def spoil(top: Path, how: str = how) -> None:
                [dump] = list((top / "database").iterdir())
                dump.write_bytes(gzip.compress(damaged(gzip.decompress(dump.read_bytes()), how, 3)))
                set_manifest_entry(top, f"database/{dump.name}")

            bad = rewrite_archive(archive, tmp_path / f"full_backup_2025010{n + 1}_000000.tar.gz", spoil, tmp_path / how)
            code, log = run("restore-all", "--yes", str(bad))
            assert code in (6, 7), log
            assert pg_dump_text(dbname) == before
            assert live_files(platform) == files_before
            code, log = run("test-restore", "--backup-file", str(bad))
            assert code == 1 and verdict(log) == "FAIL", log
    finally:
        drop_database(dbname)
