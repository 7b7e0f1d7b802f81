"""PostgreSQL owners and privileges: a backup keeps them and a restore brings them back.

They were left out of every dump (`pg_dump --no-owner --no-privileges`): db-restore said
"row counts: match" while every GRANT was gone and every object belonged to the
restoring role. Now:
- db-restore and restore-all bring back each object's owner and its GRANTs (and the
  schema's default privileges), proven by the catalog of a fresh session;
- restoring where the backup's roles are missing, or by a role that is no member of an
  owner, is refused in one line naming the role and the remedy, nothing changed;
  `--no-owner` / `--no-privileges` then restore the data with the objects belonging to
  the restoring role (pg_restore's -O and -x);
- test-restore and dr-drill load into a scratch database as RESTORE_TEST_DATABASE_URL's
  role, which holds none of the backup's roles: owners and GRANTs are left out there.
Each test makes its own roles (roles are the cluster's) and drops them.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PG_ADMIN, Platform, pg_dump_text, pg_url
from tests.test_db_restore import make_backup, one_error_line, pg_execute, pg_platform, pg_value
from tests.test_restore_all import full_backup, full_pg

__all__ = ["full_pg", "pg_platform"]  # the fixtures, shared


@dataclass
class Roles:
    """Roles made for one test: `make` returns a fresh name; all are dropped after it."""

    made: list[str] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)

    def make(self, stem: str, options: str = "") -> str:
        name = f"cbown_{stem}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(**PG_ADMIN, autocommit=True) as conn:  # type: ignore[arg-type]
            conn.execute(f'CREATE ROLE "{name}" {options}')  # type: ignore[arg-type]
        self.made.append(name)
        return name


@pytest.fixture
def roles() -> Iterator[Roles]:
    made = Roles()
    yield made
    with psycopg.connect(**PG_ADMIN, autocommit=True) as conn:  # type: ignore[arg-type]
        rows = conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (made.made,))
        left = [str(row[0]) for row in rows.fetchall()]
    if not left:
        return
    for dbname in made.databases:
        try:
            conn = psycopg.connect(**{**PG_ADMIN, "dbname": dbname}, autocommit=True)  # type: ignore[arg-type]
        except psycopg.OperationalError:
            continue  # dropped already
        with conn:
            for role in left:  # one by one: all at once trips over a default ACL
                conn.execute(f'REASSIGN OWNED BY "{role}" TO postgres')  # type: ignore[arg-type]
                conn.execute(f'DROP OWNED BY "{role}" CASCADE')  # type: ignore[arg-type]
    with psycopg.connect(**PG_ADMIN, autocommit=True) as conn:  # type: ignore[arg-type]
        for role in left:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')  # type: ignore[arg-type]


# Every user object's owner and privileges, as a fresh session reads them from the catalog.
_OWNERSHIP_SQL = """
SELECT 'schema ' || n.nspname, pg_get_userbyid(n.nspowner), coalesce(n.nspacl::text, '')
  FROM pg_namespace n WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
UNION ALL
SELECT 'relation ' || n.nspname || '.' || c.relname, pg_get_userbyid(c.relowner), coalesce(c.relacl::text, '')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND n.nspname NOT LIKE 'pg\\_%'
   AND n.nspname <> 'information_schema'
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text, pg_get_userbyid(p.proowner), coalesce(p.proacl::text, '')
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
UNION ALL
SELECT 'default acl ' || pg_get_userbyid(d.defaclrole) || ' ' || d.defaclobjtype::text, '', d.defaclacl::text
  FROM pg_default_acl d
ORDER BY 1
"""


def ownership(dbname: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(**{**PG_ADMIN, "dbname": dbname}) as conn:  # type: ignore[arg-type]
        return [tuple(map(str, row)) for row in conn.execute(_OWNERSHIP_SQL).fetchall()]  # type: ignore[misc]


def give_away(dbname: str, app: str, reader: str) -> None:
    """The platform's data owned by `app`, readable by `reader`, as a production setup has it."""
    pg_execute(
        dbname,
        f'CREATE SCHEMA reports AUTHORIZATION "{app}"',
        f'ALTER TABLE agents OWNER TO "{app}"',
        f'ALTER TABLE messages OWNER TO "{app}"',
        f'ALTER VIEW agent_message_counts OWNER TO "{app}"',
        'CREATE TABLE reports."daily; GRANT ALL ON agents TO PUBLIC" (day date, n int)',
        f'ALTER TABLE reports."daily; GRANT ALL ON agents TO PUBLIC" OWNER TO "{app}"',
        'INSERT INTO reports."daily; GRANT ALL ON agents TO PUBLIC" VALUES (now(), 1)',
        "CREATE FUNCTION reports.total() RETURNS bigint LANGUAGE sql AS "
        "$$SELECT count(*) FROM public.messages; -- OWNER TO nobody;\n$$",
        f'ALTER FUNCTION reports.total() OWNER TO "{app}"',
        f'GRANT USAGE ON SCHEMA reports TO "{reader}"',
        f'GRANT SELECT ON agents, messages TO "{reader}"',
        "GRANT SELECT (id, name) ON agents TO PUBLIC",
        "REVOKE EXECUTE ON FUNCTION reports.total() FROM PUBLIC",
        f'GRANT EXECUTE ON FUNCTION reports.total() TO "{reader}"',
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{app}" IN SCHEMA reports GRANT SELECT ON TABLES TO "{reader}"',
    )


def test_owners_and_privileges_come_back(
    pg_platform: Platform, roles: Roles, monkeypatch: pytest.MonkeyPatch
) -> None:
    dbname = pg_platform.env["_DBNAME"]
    roles.databases.append(dbname)
    app, reader = roles.make("app"), roles.make("reader")
    give_away(dbname, app, reader)
    before, data = ownership(dbname), pg_dump_text(dbname)
    artifact = make_backup(pg_platform)
    # What the defect left after a "successful" restore: everything the restoring
    # role's, no GRANT; plus changed data.
    pg_execute(
        dbname,
        f'REASSIGN OWNED BY "{app}" TO postgres',
        f'REVOKE ALL ON agents, messages FROM "{reader}"',
        "REVOKE ALL ON agents FROM PUBLIC",
        "DELETE FROM messages WHERE id % 3 = 0",
    )
    assert ownership(dbname) != before
    done = pg_platform.run("db-restore", "--yes", str(artifact))
    assert done.returncode == 0, done.stderr
    assert ownership(dbname) == before
    assert pg_dump_text(dbname) == data
    assert "left out" not in done.stdout
    meta = json.loads(artifact.with_name(artifact.name + ".meta.json").read_text())
    assert meta["privileges"]["agents"][0] == app, meta["privileges"]
    assert f"{reader}:SELECT" in meta["privileges"]["agents"][1]
    tables = len(meta["tables"])
    assert f"owners and privileges: match the backup ({tables} tables)" in done.stdout
    # A scratch role that holds none of those roles proves the same backup.
    loader = roles.make("loader", "LOGIN CREATEDB")
    proved = pg_platform.run(
        "test-restore",
        "--backup-file",
        str(artifact),
        extra_env={"RESTORE_TEST_DATABASE_URL": pg_url("postgres", user=loader)},
    )
    assert proved.returncode == 0, proved.stdout + proved.stderr


def test_restoring_role_without_the_owners_is_refused_then_no_owner_restores(
    pg_platform: Platform, roles: Roles, scratch_database: str
) -> None:
    """A new server's database whose role is no member of the backup's owner."""
    source = pg_platform.env["_DBNAME"]
    roles.databases += [source, scratch_database]
    app, reader = roles.make("app"), roles.make("reader")
    give_away(source, app, reader)
    data = pg_dump_text(source)
    artifact = make_backup(pg_platform)
    restorer = roles.make("restorer", "LOGIN")
    target = scratch_database  # empty but for what its owner keeps there
    pg_execute(target, f'ALTER DATABASE "{target}" OWNER TO "{restorer}"')
    pg_execute(target, "CREATE TABLE kept (x int)", "INSERT INTO kept VALUES (1)")
    pg_execute(target, f'ALTER TABLE kept OWNER TO "{restorer}"')
    untouched = pg_dump_text(target)
    as_restorer = {"ADMIN_DATABASE_URL": pg_url(target, user=restorer)}
    line = one_error_line(
        pg_platform.run("db-restore", "--yes", str(artifact), extra_env=as_restorer)
    )
    owners = re.search(
        r"objects belong to roles? (.+), and the restoring role (\S+) is not a member", line
    )
    assert owners is not None and set(owners.group(1).split(", ")) == {app, "postgres"}, line
    assert owners.group(2) == restorer, line
    assert not list(pg_platform.backups.glob("*before_restore*")), "refused before the snapshot"
    assert "--no-owner" in line and "nothing was changed" in line, line
    assert pg_dump_text(target) == untouched

    # Without the owners the GRANTs to `reader` still apply: the role exists.
    done = pg_platform.run(
        "db-restore", "--yes", "--no-owner", str(artifact), extra_env=as_restorer
    )
    assert done.returncode == 0, done.stderr
    assert "owners were left out" in done.stdout, done.stdout
    assert pg_dump_text(target) == data
    owned = ownership(target)
    assert {owner for what, owner, _ in owned if what.startswith("relation ")} == {restorer}
    assert any(reader in acl for what, _, acl in owned if what == "relation public.agents"), owned


def test_a_missing_grantee_is_refused_then_no_privileges_restores(
    pg_platform: Platform, roles: Roles
) -> None:
    dbname = pg_platform.env["_DBNAME"]
    roles.databases.append(dbname)
    gone = roles.make("gone")
    pg_execute(dbname, f'GRANT SELECT ON agents TO "{gone}"')
    artifact = make_backup(pg_platform)
    pg_execute(dbname, f'REVOKE ALL ON agents FROM "{gone}"', f'DROP ROLE "{gone}"')
    pg_execute(dbname, "UPDATE agents SET name = 'changed' WHERE id > 40")
    changed = pg_dump_text(dbname)
    line = one_error_line(pg_platform.run("db-restore", "--yes", str(artifact)))
    assert f"names role {gone}, which does not exist" in line, line
    assert "--no-privileges" in line and "nothing was changed" in line, line
    assert pg_dump_text(dbname) == changed
    assert not list(pg_platform.backups.glob("*before_restore*")), "refused before the snapshot"
    done = pg_platform.run("db-restore", "--yes", "--no-privileges", str(artifact))
    assert done.returncode == 0, done.stderr
    assert "GRANTs and REVOKEs were left out" in done.stdout, done.stdout
    assert pg_value(dbname, "SELECT count(*) FROM agents WHERE name = 'changed'") == 0


def test_a_restore_whose_privileges_differ_from_the_record_is_refused(
    pg_platform: Platform, roles: Roles
) -> None:
    """The check can fail: a meta that records another owner (its sha256 still names the
    file, so its counts are trusted) stops the COMMIT."""
    dbname = pg_platform.env["_DBNAME"]
    roles.databases.append(dbname)
    app = roles.make("app")
    pg_execute(dbname, f'ALTER TABLE agents OWNER TO "{app}"')
    artifact = make_backup(pg_platform)
    meta_path = artifact.with_name(artifact.name + ".meta.json")
    meta = json.loads(meta_path.read_text())
    meta["privileges"]["agents"][0] = "postgres"
    meta_path.write_text(json.dumps(meta))
    pg_execute(dbname, "UPDATE agents SET name = 'changed'")
    changed = pg_dump_text(dbname)
    line = one_error_line(pg_platform.run("db-restore", "--yes", str(artifact)))
    assert f"table agents belongs to {app}, the backup recorded postgres" in line, line
    assert pg_dump_text(dbname) == changed


def test_restore_all_brings_owners_and_privileges_back(full_pg: Platform, roles: Roles) -> None:
    dbname = full_pg.env["_DBNAME"]
    roles.databases.append(dbname)
    app, reader = roles.make("app"), roles.make("reader")
    give_away(dbname, app, reader)
    before = ownership(dbname)
    archive = full_backup(full_pg)
    pg_execute(dbname, f'REASSIGN OWNED BY "{app}" TO postgres', "REVOKE ALL ON agents FROM PUBLIC")
    done = full_pg.run("restore-all", "--yes", str(archive))
    assert done.returncode == 0, done.stderr
    assert ownership(dbname) == before
    assert "owners and privileges: match the backup" in done.stdout, done.stdout


def test_a_hand_made_dump_by_a_role_without_its_owners_is_refused_in_its_transaction(
    pg_platform: Platform, roles: Roles, scratch_database: str, tmp_path: Path
) -> None:
    """No record to ask first: psql's own error becomes the same one line."""
    source = pg_platform.env["_DBNAME"]
    roles.databases += [source, scratch_database]
    app = roles.make("app")
    pg_execute(source, f'ALTER TABLE agents OWNER TO "{app}"')
    made = tmp_path / "by-hand.sql.gz"
    subprocess.run(
        f"pg_dump -h 127.0.0.1 -U postgres {source} | gzip > '{made}'", shell=True, check=True
    )
    restorer = roles.make("restorer", "LOGIN")
    pg_execute(scratch_database, f'ALTER DATABASE "{scratch_database}" OWNER TO "{restorer}"')
    untouched = pg_dump_text(scratch_database)
    as_restorer = {"ADMIN_DATABASE_URL": pg_url(scratch_database, user=restorer)}
    line = one_error_line(pg_platform.run("db-restore", "--yes", str(made), extra_env=as_restorer))
    assert re.search(
        r"belong to role \S+, and the restoring role \S+ is not a member of it", line
    ), line
    assert pg_dump_text(scratch_database) == untouched
