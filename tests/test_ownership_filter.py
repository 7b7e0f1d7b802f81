"""tasks/sources/ownership.py: a dump without its owners and privileges, found as psql
finds statements — never inside a name, a string, a function body or COPY data.

Generated: names and texts that hold `OWNER TO x;`, `GRANT`, quotes, `$$`, `;`,
newlines and `\\.` lines, for roles, schemas, tables, columns, comments, function bodies
and rows. Each example is a real database owned by a generated role with GRANTs;
`pg_dump` (with owners) → the filter → loaded by a role that holds none of those roles
→ its `pg_dump --no-owner --no-privileges` text must equal the source's. The filter's
output must not depend on how the stream is cut into chunks. Bounded: 8 examples.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from psycopg import sql

from tasks.sources.ownership import KEEP_ALL, Leave, OwnershipFilter
from tests.conftest import PG_ADMIN, create_database, drop_database, pg_dump_text

pytestmark = pytest.mark.slow

_TRICKY = [
    "OWNER TO x;",
    "\nALTER TABLE t OWNER TO y;\n",
    "GRANT ALL ON t TO z;",
    "\n\nREVOKE ALL ON t FROM PUBLIC;\n",
    "$$",
    "$f$",
    "'",
    '"',
    ";",
    "\n\\.\n",
    "--",
    "/*",
    "E'\\",
    "\nCOPY t FROM stdin;\n",
]
pieces = st.lists(
    st.one_of(st.sampled_from(_TRICKY), st.text(alphabet="abZ _.é日\t", min_size=1, max_size=4)),
    min_size=1,
    max_size=4,
).map("".join)
names = pieces.filter(lambda n: 0 < len(n.encode()) <= 50 and not n.lower().startswith("pg_"))


def _run_filter(data: bytes, leave: Leave, cuts: list[int]) -> bytes:
    stream = OwnershipFilter(leave)
    out, start = [], 0
    for cut in sorted(set(cuts)):
        out.append(stream.feed(data[start:cut]))
        start = cut
    out.append(stream.feed(data[start:]))
    return b"".join(out) + stream.finish()


@pytest.fixture
def cleanup() -> Iterator[list[tuple[str, str]]]:
    """(kind, name) of what a test made, dropped afterwards: databases, then roles."""
    made: list[tuple[str, str]] = []
    yield made
    for kind, name in made:
        if kind == "database":
            drop_database(name)
    with psycopg.connect(**PG_ADMIN, autocommit=True) as conn:  # type: ignore[arg-type]
        for kind, name in made:
            if kind == "role":
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    role=names,
    schema=names,
    table=names,
    column=names,
    comment=pieces,
    body=pieces,
    rows=st.lists(pieces, min_size=0, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=200_000), max_size=30),
)
def test_owners_and_privileges_left_out_exactly(
    cleanup: list[tuple[str, str]],
    role: str,
    schema: str,
    table: str,
    column: str,
    comment: str,
    body: str,
    rows: list[str],
    cuts: list[int],
) -> None:
    tag = uuid.uuid4().hex[:8]
    owner, loader, source, target = (
        f"{role}{tag}",
        f"cbload_{tag}",
        f"cbf_src_{tag}",
        f"cbf_dst_{tag}",
    )
    with psycopg.connect(**PG_ADMIN, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(owner)))
        cleanup.append(("role", owner))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(loader)))
        cleanup.append(("role", loader))
    for name in (source, target):
        create_database(name)
        cleanup.append(("database", name))
    with psycopg.connect(**PG_ADMIN, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(target), sql.Identifier(loader)
            )
        )
    s, t, c, o = (sql.Identifier(x) for x in (schema, table, column, owner))
    with psycopg.connect(**{**PG_ADMIN, "dbname": source}, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(s, o))
        conn.execute(sql.SQL("CREATE TABLE {}.{} ({} text, n serial)").format(s, t, c))
        conn.execute(sql.SQL("ALTER TABLE {}.{} OWNER TO {}").format(s, t, o))
        for row in rows:
            conn.execute(sql.SQL("INSERT INTO {}.{} ({}) VALUES (%s)").format(s, t, c), (row,))
        conn.execute(sql.SQL("COMMENT ON TABLE {}.{} IS {}").format(s, t, sql.Literal(comment)))
        conn.execute(
            sql.SQL("CREATE FUNCTION {}.f() RETURNS text LANGUAGE sql AS {}").format(
                s, sql.Literal(f"SELECT {sql.Literal(body).as_string(conn)}::text")
            )
        )
        conn.execute(sql.SQL("ALTER FUNCTION {}.f() OWNER TO {}").format(s, o))
        conn.execute(sql.SQL("GRANT SELECT ({}) ON {}.{} TO PUBLIC").format(c, s, t))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO PUBLIC").format(s))
        conn.execute(
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON TABLES TO PUBLIC"
            ).format(o, s)
        )
    dump = subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", source], capture_output=True, check=True
    ).stdout
    assert _run_filter(dump, KEEP_ALL, cuts) == dump
    whole = _run_filter(dump, Leave(owners=True, privileges=True), [])
    assert _run_filter(dump, Leave(owners=True, privileges=True), cuts) == whole
    loaded = subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-1",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            loader,
            "-d",
            target,
        ],
        input=whole,
        capture_output=True,
    )
    assert loaded.returncode == 0, loaded.stderr.decode(errors="replace")
    assert pg_dump_text(target) == pg_dump_text(source)
    with psycopg.connect(**{**PG_ADMIN, "dbname": target}) as conn:  # type: ignore[arg-type]
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE relnamespace = "
            "(SELECT oid FROM pg_namespace WHERE nspname = %s)",
            (schema,),
        ).fetchall()
    assert owners == [(loader,)]


def test_statements_left_out_and_kept() -> None:
    """Hand-written: which statements go, which stay, byte for byte."""
    dump = (
        b"SET x = 1;\n"
        b'CREATE TABLE "a; OWNER TO b;" (x text);\n\n\n'
        b'ALTER TABLE public."a; OWNER TO b;" OWNER TO "R ""1""";\n'
        b"COPY t (x) FROM stdin;\nGRANT ALL ON t TO r;\nALTER TABLE t OWNER TO r;\n\\.\n"
        b"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $f$SELECT 1;\nGRANT x;\n$f$;\n"
        b"COMMENT ON TABLE t IS E'it\\'s\nREVOKE ALL ON t FROM PUBLIC;';\n"
        b"-- GRANT in a comment;\n"
        b"GRANT SELECT ON TABLE t TO r;\n"
        b'ALTER DEFAULT PRIVILEGES FOR ROLE "R 1" IN SCHEMA s GRANT SELECT ON TABLES TO r;\n'
        b"\\unrestrict abc\n"
    )
    owners = _run_filter(dump, Leave(owners=True), [])
    assert b'OWNER TO "R ""1""";' not in owners
    assert b"ALTER TABLE t OWNER TO r;\n\\.\n" in owners  # COPY data
    assert b"ALTER DEFAULT PRIVILEGES IN SCHEMA s GRANT SELECT ON TABLES TO r;" in owners
    assert b"GRANT SELECT ON TABLE t TO r;" in owners
    privileges = _run_filter(dump, Leave(privileges=True), [])
    assert b"GRANT SELECT ON TABLE t TO r;" not in privileges
    assert b"ALTER DEFAULT PRIVILEGES" not in privileges
    assert b'OWNER TO "R ""1""";' in privileges
    for kept in (
        b"GRANT ALL ON t TO r;\n",
        b"GRANT x;\n$f$",
        b"REVOKE ALL ON t FROM PUBLIC;';",
        b"-- GRANT in",
    ):
        assert kept in owners and kept in privileges, kept
    assert privileges.endswith(b"\\unrestrict abc\n")
