"""Who owns each PostgreSQL table and who may do what with it, as a backup records it and
a restore proves it.

Per table (keyed as the row counts are: tasks.sources.postgres.table_key): its owner and
its privileges as sorted `grantee:PRIVILEGE` items (`*` when grantable, `PUBLIC` for
everyone), without the grantor — who ran the GRANT is not part of what a role may do,
and a superuser's GRANT on another role's table is recorded as the owner's. A table
with no GRANT or REVOKE of its own (a NULL ACL) reads as its owner's default privileges,
so that "never granted" and "granted the defaults" compare equal, as they behave.

The backup reads it in the dump's snapshot (with the row counts); the restore's check
block (tasks/restore/pg_script.py) computes the same inside the restore's transaction
from `PRIVILEGES_SQL` and refuses the COMMIT unless it is what the backup recorded.
"""

from __future__ import annotations

from typing import Any

import psycopg

from tasks.sources.postgres import USER_TABLES_SQL, table_key

# One row per user table: schema, name, owner, items; USER_TABLES_SQL's filter, so both
# read the same tables. The restore's check block runs it inside PL/pgSQL, where an alias
# that is also a variable's name (`r`, `n`, `k`) would be read as that variable.
PRIVILEGES_SQL = (
    "SELECT n.nspname AS nspname, c.relname AS relname, "
    "pg_catalog.pg_get_userbyid(c.relowner)::text AS owner, "
    'coalesce((SELECT pg_catalog.array_agg(i ORDER BY i COLLATE "C") FROM ('
    "  SELECT coalesce(grantee_role.rolname::text, 'PUBLIC') || ':' || a.privilege_type "
    "    || CASE WHEN a.is_grantable THEN '*' ELSE '' END AS i "
    "  FROM pg_catalog.aclexplode(coalesce(c.relacl, pg_catalog.acldefault('r', c.relowner))) a "
    "  LEFT JOIN pg_catalog.pg_roles grantee_role ON grantee_role.oid = a.grantee) items), '{}')::text[] AS items "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    + USER_TABLES_SQL[USER_TABLES_SQL.index("WHERE") :]
)


def table_privileges(connection: psycopg.Connection) -> dict[str, list[Any]]:
    """{table key: [owner, [items]]} of every user table."""
    return {
        table_key(str(schema), str(table)): [str(owner), [str(i) for i in items]]
        for schema, table, owner, items in connection.execute(PRIVILEGES_SQL).fetchall()
    }
