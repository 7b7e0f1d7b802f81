"""Issue 15, PostgreSQL half: every way a PostgreSQL restore said "done" while it was not.

Each case goes through the real CLI against the machine's PostgreSQL (a throwaway
database per test) and was seen failing before its fix:
1. a dump whose last statement is table data (psql quits silently at a lone `;` after
   COPY data) — restored for real now; and a dump that makes psql stop early is refused
   (exit 7) by db-restore, test-restore and restore-all, with nothing changed;
5. a dump cut short at a statement boundary is refused (exit 6), nothing changed;
   large objects (whose section pg_dump wraps in its own BEGIN/COMMIT) restore inside
   the one transaction, so a dump cut after them changes nothing either;
8. table names with dots and quotes; old backups' row-count keys still read;
9. another session's TEMP table does not fail the check;
10. publications and the other database-level objects pg_dump emits are replaced, as
   superuser and as a non-superuser owner; what cannot be replaced is refused in one line;
11. a URL without a database name is a configuration error.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import (
    PG_ADMIN,
    Platform,
    create_database,
    drop_database,
    pg_dump_text,
    pg_url,
)
from tests.test_db_restore import make_backup, one_error_line, pg_execute, tree_state
from tests.test_restore_all import (
    damage,
    full_backup,
    live_files,
    populate,
    rewrite_archive,
    set_manifest_entry,
)
from tests.test_test_restore import outcome, reason

SECRET = "s3cr3t-Pw"


def use_database(platform: Platform, monkeypatch: pytest.MonkeyPatch, dbname: str, **url: str) -> None:
    platform.set(monkeypatch, ADMIN_DB_TYPE="postgres", ADMIN_DATABASE_URL=pg_url(dbname, **url))


def sql_of(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


def hand_made(tmp_path: Path, sql: bytes, name: str = "hand.sql.gz") -> Path:
    """A file as an operator makes one with `pg_dump | gzip`: no sidecar, no meta."""
    path = tmp_path / name
    path.write_bytes(gzip.compress(sql))
    return path


def lone_semicolon_after_copy(sql: bytes) -> bytes:
    """The dump with a lone `;` line right after its first COPY data: psql 15 quits
    there, silently, with exit 0."""
    end = sql.index(b"\n\\.\n") + len(b"\n\\.\n")
    return sql[:end] + b";\n" + sql[end:]


def cut_before_data(sql: bytes) -> bytes:
    """The dump cut at the statement boundary before its first table data."""
    return sql[: sql.index(b"\nCOPY ") + 1]


def verdict_of(platform: Platform, path: Path) -> dict[str, str]:
    done = platform.run("test-restore", "--backup-file", str(path))
    assert done.returncode in (0, 1), done.stderr
    return outcome(done.stdout)


@pytest.fixture
def settings_db(platform: Platform, pg_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database whose dump ends with table data: one table, no key, index or sequence."""
    pg_execute(
        pg_database,
        "CREATE TABLE settings (k text, v text)",
        "INSERT INTO settings SELECT 'key ' || g, 'value ' || g FROM generate_series(1, 40) g",
    )
    use_database(platform, monkeypatch, pg_database)
    return pg_database


def change(dbname: str) -> None:
    pg_execute(dbname, "DELETE FROM settings WHERE k LIKE '%1%'", "INSERT INTO settings VALUES ('new', 'x')")


# -- 1. the dump's last statement is table data ----------------------------------------


def test_table_data_last_is_restored_by_db_restore(platform: Platform, settings_db: str) -> None:
    artifact = make_backup(platform)
    sql = sql_of(artifact)
    assert sql.index(b"\n\\.\n") > sql.rindex(b"CREATE TABLE"), "the data must come last"
    backed_up = pg_dump_text(settings_db)
    change(settings_db)
    done = platform.run("db-restore", "--yes", str(artifact))
    assert done.returncode == 0, done.stderr
    assert "row counts: match" in done.stdout
    assert pg_dump_text(settings_db) == backed_up


def test_table_data_last_is_restored_by_restore_all(platform: Platform, settings_db: str) -> None:
    populate(platform.root)
    archive = full_backup(platform)
    backed_up, files = pg_dump_text(settings_db), live_files(platform)
    change(settings_db)
    damage(platform.root)
    done = platform.run("restore-all", "--yes", str(archive))
    assert done.returncode == 0, done.stderr
    assert pg_dump_text(settings_db) == backed_up
    assert live_files(platform) == files


def quit_after_the_dump(sql: bytes) -> bytes:
    """A psql `\\q` after the whole dump (then pg_dump's trailer again): psql exits 0
    there, before anything the restore sends after the dump."""
    return sql + b"\\q\n--\n-- PostgreSQL database dump complete\n--\n"


STOP_EARLY = {
    "lone ; after the last table's data": lone_semicolon_after_copy,
    "lone ; between two tables' data": lone_semicolon_after_copy,
    "psql exits 0 after the dump": quit_after_the_dump,
}


@pytest.mark.slow
@pytest.mark.parametrize("how", list(STOP_EARLY))
def test_psql_stopping_early_is_refused_everywhere(
    platform: Platform, settings_db: str, tmp_path: Path, how: str
) -> None:
    if "between" in how:  # psql then skips the next table's rows and goes on: exit 0
        pg_execute(settings_db, "CREATE TABLE notes (n text)", "INSERT INTO notes VALUES ('kept')")
    artifact = make_backup(platform)
    bad = hand_made(tmp_path, STOP_EARLY[how](sql_of(artifact)))
    change(settings_db)
    before = pg_dump_text(settings_db)

    done = platform.run("db-restore", "--yes", str(bad))
    assert done.returncode == 7, done.stdout + done.stderr
    line = one_error_line(done)
    assert "psql stopped before COMMIT" in line and "nothing was changed" in line
    assert pg_dump_text(settings_db) == before

    verdict = verdict_of(platform, bad)
    assert verdict["database"] == "FAIL", verdict
    if how != "lone ; after the last table's data":
        return

    # restore-all: the same dump inside a full backup; the files it swapped go back.
    populate(platform.root)
    archive = full_backup(platform)

    def stop_early(top: Path) -> None:
        [dump] = list((top / "database").iterdir())
        dump.write_bytes(gzip.compress(lone_semicolon_after_copy(gzip.decompress(dump.read_bytes()))))
        set_manifest_entry(top, f"database/{dump.name}")

    forged = rewrite_archive(archive, tmp_path / "full_backup_20250101_000000.tar.gz", stop_early, tmp_path)
    damage(platform.root)
    files = live_files(platform)
    done = platform.run("restore-all", "--yes", str(forged))
    assert done.returncode == 7, done.stdout + done.stderr
    assert "psql stopped before COMMIT" in one_error_line(done)
    assert pg_dump_text(settings_db) == before
    assert live_files(platform) == files
    assert verdict_of(platform, forged)["database"] == "FAIL"


# -- 5. a dump cut short -----------------------------------------------------------------


@pytest.mark.slow
def test_dump_cut_short_is_refused(platform: Platform, settings_db: str, tmp_path: Path) -> None:
    artifact = make_backup(platform)
    sql = sql_of(artifact)
    assert b"-- PostgreSQL database dump complete" in sql[-300:]  # our own dumps pass
    cut = hand_made(tmp_path, cut_before_data(sql))
    change(settings_db)
    before, backups = pg_dump_text(settings_db), tree_state(platform.backups)
    done = platform.run("db-restore", "--yes", str(cut))
    assert done.returncode == 6, done.stdout + done.stderr
    line = one_error_line(done)
    assert "PostgreSQL database dump complete" in line and "nothing was changed" in line
    assert pg_dump_text(settings_db) == before
    assert tree_state(platform.backups) == backups  # no pre-restore snapshot kept either
    verdict = verdict_of(platform, cut)
    assert verdict["database"] == "FAIL"
    assert "dump complete" in reason(platform.run("test-restore", "--backup-file", str(cut)).stdout, "database")


@pytest.mark.slow
def test_large_objects_restore_in_the_one_transaction(
    platform: Platform, settings_db: str, tmp_path: Path
) -> None:
    pg_execute(
        settings_db,
        "CREATE TABLE docs (id int PRIMARY KEY, blob oid)",
        "INSERT INTO docs SELECT g, lo_from_bytea(0, convert_to(repeat('doc ' || g, 50), 'UTF8')) "
        "FROM generate_series(1, 3) g",
    )
    artifact = make_backup(platform)
    sql = sql_of(artifact)
    assert b"\nBEGIN;\n" in sql and b"lo_open" in sql  # pg_dump's own transaction for them
    backed_up = pg_dump_text(settings_db)
    pg_execute(settings_db, "SELECT lo_unlink(blob) FROM docs WHERE id = 1", "DELETE FROM docs WHERE id = 1")
    change(settings_db)
    changed = pg_dump_text(settings_db)

    # Cut right after the large objects' COMMIT: that COMMIT must not commit the restore.
    blobs_end = sql.index(b"\nCOMMIT;\n", sql.index(b"lo_open")) + len(b"\nCOMMIT;\n")
    cut = hand_made(tmp_path, sql[:blobs_end])
    done = platform.run("db-restore", "--yes", str(cut))
    assert done.returncode == 6, done.stdout + done.stderr
    assert pg_dump_text(settings_db) == changed

    done = platform.run("db-restore", "--yes", str(artifact))
    assert done.returncode == 0, done.stderr
    assert pg_dump_text(settings_db) == backed_up
    assert verdict_of(platform, artifact)["database"] == "PASS"


def test_a_dump_that_commits_on_its_own_is_refused(
    platform: Platform, settings_db: str, tmp_path: Path
) -> None:
    """A hand-made dump with its own COMMIT midway: refused at that COMMIT, nothing changed."""
    sql = sql_of(make_backup(platform))
    at = sql.index(b"\nCOPY ") + 1
    bad = hand_made(tmp_path, sql[:at] + b"COMMIT;\n" + sql[at:])
    change(settings_db)
    before = pg_dump_text(settings_db)
    line = one_error_line(platform.run("db-restore", "--yes", str(bad)))
    assert "COMMIT" in line and "nothing was applied" in line
    assert pg_dump_text(settings_db) == before


# -- 8. dots and quotes in names ------------------------------------------------------------


DOTTED = (
    'CREATE TABLE "audit.log" (line text)',
    'INSERT INTO "audit.log" SELECT \'l\' || g FROM generate_series(1, 7) g',
    "CREATE SCHEMA audit",
    "CREATE TABLE audit.log (id int)",
    "INSERT INTO audit.log SELECT generate_series(1, 3)",
    'CREATE SCHEMA "my.schema"',
    'CREATE TABLE "my.schema"."we""ird.t" (x int)',
    'INSERT INTO "my.schema"."we""ird.t" VALUES (1), (2)',
)


@pytest.mark.slow
def test_dotted_and_quoted_table_names(
    platform: Platform, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_execute(pg_database, *DOTTED)
    use_database(platform, monkeypatch, pg_database)
    populate(platform.root)
    artifact = make_backup(platform)
    tables = json.loads(artifact.with_name(artifact.name + ".meta.json").read_text())["tables"]
    assert tables == {'"audit.log"': 7, "audit.log": 3, '"my.schema"."we""ird.t"': 2}
    backed_up = pg_dump_text(pg_database)
    pg_execute(pg_database, 'DELETE FROM "audit.log"', "DELETE FROM audit.log WHERE id = 1")
    done = platform.run("db-restore", "--yes", str(artifact))
    assert done.returncode == 0, done.stderr
    assert pg_dump_text(pg_database) == backed_up
    assert verdict_of(platform, artifact)["database"] == "PASS"
    archive = full_backup(platform)
    pg_execute(pg_database, 'DELETE FROM "audit.log"')
    done = platform.run("restore-all", "--yes", str(archive))
    assert done.returncode == 0, done.stderr
    assert pg_dump_text(pg_database) == backed_up
    assert verdict_of(platform, archive)["database"] == "PASS"


@pytest.mark.slow
def test_row_count_keys_of_old_backups_still_read(
    platform: Platform, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Backups made before the quoting recorded a public "audit.log" as `audit.log`."""
    pg_execute(pg_database, *DOTTED[:2], "CREATE TABLE plain (x int)", "INSERT INTO plain VALUES (1)")
    use_database(platform, monkeypatch, pg_database)
    artifact = make_backup(platform)
    meta_path = artifact.with_name(artifact.name + ".meta.json")
    meta = json.loads(meta_path.read_text())
    meta["tables"] = {"audit.log": 7, "plain": 1}  # the old format
    meta_path.write_text(json.dumps(meta))
    backed_up = pg_dump_text(pg_database)
    pg_execute(pg_database, 'DELETE FROM "audit.log"')
    done = platform.run("db-restore", "--yes", str(artifact))
    assert done.returncode == 0, done.stderr
    assert "row counts: match" in done.stdout
    assert pg_dump_text(pg_database) == backed_up
    assert verdict_of(platform, artifact)["database"] == "PASS"

    meta["tables"] = {"audit.log": 8, "plain": 1}  # an old key whose count is wrong
    meta_path.write_text(json.dumps(meta))
    line = one_error_line(platform.run("db-restore", "--yes", str(artifact)))
    assert "audit.log has 7 rows, the backup recorded 8" in line
    assert verdict_of(platform, artifact)["database"] == "FAIL"


# -- 9. another session's TEMP table -----------------------------------------------------------


def test_another_sessions_temp_table_does_not_fail_the_restore(
    platform: Platform, settings_db: str
) -> None:
    artifact = make_backup(platform)
    backed_up = pg_dump_text(settings_db)
    change(settings_db)
    with psycopg.connect(**{**PG_ADMIN, "dbname": settings_db}, autocommit=True) as app:  # type: ignore[arg-type]
        app.execute("CREATE TEMP TABLE scratch_of_the_app (x int)")
        app.execute("INSERT INTO scratch_of_the_app VALUES (1)")
        done = platform.run("db-restore", "--yes", str(artifact))
        assert done.returncode == 0, done.stderr
    assert pg_dump_text(settings_db) == backed_up


# -- 10. database-level objects ----------------------------------------------------------------


def test_publication_and_other_database_level_objects_are_replaced(
    platform: Platform, settings_db: str
) -> None:
    pg_execute(
        settings_db,
        "CREATE PUBLICATION app_pub FOR TABLE settings WITH (publish = 'insert')",
        "CREATE PUBLICATION empty_pub",
        "CREATE FUNCTION public.no_op() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN END$$",
        "CREATE EVENT TRIGGER app_ddl ON ddl_command_start EXECUTE FUNCTION public.no_op()",
        "CREATE EXTENSION hstore WITH SCHEMA pg_catalog",
        "CREATE FOREIGN DATA WRAPPER plain_fdw",
        "CREATE SERVER plain_server FOREIGN DATA WRAPPER plain_fdw",
        "CREATE USER MAPPING FOR postgres SERVER plain_server",
        "CREATE ACCESS METHOD heap_again TYPE TABLE HANDLER heap_tableam_handler",
        "CREATE CAST (int4 AS macaddr) WITH INOUT",
    )
    artifact = make_backup(platform)
    backed_up = pg_dump_text(settings_db)
    change(settings_db)
    done = platform.run("db-restore", "--yes", str(artifact))
    assert done.returncode == 0, done.stderr
    assert pg_dump_text(settings_db) == backed_up
    assert verdict_of(platform, artifact)["database"] == "PASS"


@pytest.fixture
def app_role() -> Iterator[str]:
    """A non-superuser login role that owns its database, as an application's role does."""
    role = f"cbapp_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**PG_ADMIN, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{SECRET}'")
    try:
        yield role
    finally:
        with psycopg.connect(**PG_ADMIN, autocommit=True) as conn:  # type: ignore[arg-type]
            conn.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.mark.slow
def test_non_superuser_owner_restores_what_it_can_own(
    platform: Platform, app_role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dbname = f"cbtest_{uuid.uuid4().hex[:10]}"
    create_database(dbname)
    try:
        pg_execute(dbname, f"ALTER DATABASE {dbname} OWNER TO {app_role}")
        with psycopg.connect(**{**PG_ADMIN, "dbname": dbname, "user": app_role}, autocommit=True) as conn:  # type: ignore[arg-type]
            for statement in (
                "CREATE TABLE settings (k text, v text)",
                "INSERT INTO settings VALUES ('a', 'b')",
                "CREATE PUBLICATION app_pub FOR TABLE settings WITH (publish = 'insert')",
                "CREATE EXTENSION citext",  # a trusted extension: the role owns it
                "SELECT lo_from_bytea(0, 'large object of the app')",
            ):
                conn.execute(statement)  # type: ignore[arg-type]
        use_database(platform, monkeypatch, dbname, user=app_role, password=SECRET)
        artifact = make_backup(platform)
        backed_up = pg_dump_text(dbname)
        change(dbname)
        done = platform.run("db-restore", "--yes", str(artifact))
        assert done.returncode == 0, done.stderr
        assert pg_dump_text(dbname) == backed_up
        assert SECRET not in done.stdout + done.stderr

        # What the DBA added — an event trigger, an untrusted extension in `public`, an
        # extension with a comment in pg_catalog — the role could not recreate; refused
        # in one line, before anything is touched.
        pg_execute(
            dbname,
            "CREATE FUNCTION public.no_op() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN END$$",
            "CREATE EVENT TRIGGER dba_ddl ON ddl_command_start EXECUTE FUNCTION public.no_op()",
            "CREATE EXTENSION pgrowlocks",
            "CREATE EXTENSION postgres_fdw WITH SCHEMA pg_catalog",
        )
        before = pg_dump_text(dbname)
        done = platform.run("db-restore", "--yes", str(artifact))
        assert done.returncode == 7, done.stdout + done.stderr
        line = one_error_line(done)
        assert "dba_ddl" in line and "pgrowlocks" in line and "postgres_fdw" in line
        assert "nothing was changed" in line
        assert SECRET not in line
        assert pg_dump_text(dbname) == before
    finally:
        drop_database(dbname)


def test_subscription_is_refused_in_one_line(platform: Platform, settings_db: str) -> None:
    artifact = make_backup(platform)
    pg_execute(
        settings_db,
        "CREATE SUBSCRIPTION app_sub CONNECTION 'host=127.0.0.1 dbname=nowhere' "
        "PUBLICATION p WITH (connect = false, slot_name = NONE)",
    )
    try:
        before = pg_dump_text(settings_db)
        line = one_error_line(platform.run("db-restore", "--yes", str(artifact)))
        assert "subscription" in line and "app_sub" in line and "nothing was changed" in line
        assert pg_dump_text(settings_db) == before
    finally:
        pg_execute(settings_db, "DROP SUBSCRIPTION app_sub")


# -- 11. a URL without a database name -----------------------------------------------------------


@pytest.mark.parametrize("tail", ["", "/"])
def test_url_without_a_database_name_is_a_configuration_error(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, tail: str
) -> None:
    platform.set(
        monkeypatch,
        ADMIN_DB_TYPE="postgres",
        ADMIN_DATABASE_URL=f"postgresql://postgres:{SECRET}@127.0.0.1:5432{tail}",
    )
    for command in (("db-backup",), ("db-restore", "--yes", "x.sql.gz")):
        done = platform.run(*command, timeout=30)
        assert done.returncode == 3, done.stdout + done.stderr
        line = one_error_line(done)
        assert "ADMIN_DATABASE_URL" in line and "database name" in line
        assert SECRET not in done.stdout + done.stderr
    assert platform.backup_files() == []
