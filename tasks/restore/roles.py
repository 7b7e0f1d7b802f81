"""Before a PostgreSQL restore touches anything: the roles its backup names are there.

A backup records each table's owner and grantees (tasks/sources/pg_privileges.py). The
restore recreates them with `ALTER ... OWNER TO` and `GRANT`, which fail for a role the
server does not have, and for an owner the restoring role is no member of — inside the
transaction, so nothing would change, but only after the pre-restore snapshot was
written and (for a grantee) the whole dump loaded. Asked here first, from the record,
the same refusal comes at once. A backup without a record (older, hand-made) is left to
the transaction, whose psql errors say the same (tasks/restore/postgres.py).
"""

from __future__ import annotations

import psycopg

from tasks.core.errors import RestoreError, SourceError
from tasks.sources.ownership import Ownership
from tasks.sources.postgres import connect

_SHOWN = 5


def _listed(roles: list[str]) -> str:
    shown = ", ".join(roles[:_SHOWN])
    return shown + (f" and {len(roles) - _SHOWN} more" if len(roles) > _SHOWN else "")


def not_member_message(owners: list[str], user: str) -> str:
    one = len(owners) == 1
    return (
        f"the backup's objects belong to role{'' if one else 's'} {_listed(owners)}, and the "
        f"restoring role {user} is not a member of {'it' if one else 'them'}: GRANT "
        f"{_listed(owners)} TO {user} (or restore as a superuser), or restore with "
        "--no-owner; nothing was changed"
    )


def missing_roles_message(roles: list[str]) -> str:
    one = len(roles) == 1
    return (
        f"the backup names role{'' if one else 's'} {_listed(roles)}, which "
        f"{'does' if one else 'do'} not exist on this server: create "
        f"{'it' if one else 'them'} (CREATE ROLE), or restore with --no-owner "
        "--no-privileges; nothing was changed"
    )


def _needed(ownership: Ownership) -> tuple[set[str], set[str]]:
    """(owners, grantees) the restore will name, by what it was asked to leave out."""
    recorded = ownership.recorded or {}
    owners = set() if ownership.leave.owners else {entry[0] for entry in recorded.values()}
    grantees: set[str] = set()
    if not ownership.leave.privileges:
        for _, items in recorded.values():
            # "grantee:PRIVILEGE": a role's name may hold a colon, a privilege never does.
            grantees |= {item.rpartition(":")[0] for item in items}
        grantees.discard("PUBLIC")
    return owners, grantees


def check_restore_roles(params: dict[str, str], ownership: Ownership) -> None:
    """RestoreError, in one line, unless every role the backup's record names exists and
    the restoring role is a member of every owner."""
    if ownership.recorded is None:
        return
    owners, grantees = _needed(ownership)
    if not owners and not grantees:
        return
    try:
        connection = connect(params)
    except SourceError:
        try:  # the database is gone (disaster recovery): roles are the server's
            connection = connect(params, dbname="postgres")
        except SourceError:
            return  # the restore itself says what is wrong with the server
    with connection:
        try:
            found = {
                str(row[0])
                for row in connection.execute(
                    "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)",
                    (sorted(owners | grantees),),
                ).fetchall()
            }
            missing = sorted((owners | grantees) - found)
            if missing:
                raise RestoreError(missing_roles_message(missing))
            not_member = [
                owner
                for owner in sorted(owners)
                if not connection.execute(
                    "SELECT pg_catalog.pg_has_role(current_user, %s, 'MEMBER')", (owner,)
                ).fetchone()[0]  # type: ignore[index]
            ]
            if not_member:
                raise RestoreError(not_member_message(not_member, connection.info.user))
        except psycopg.Error:
            return  # cannot ask: the transaction's own errors will say it
