"""The application role: a login that owns ClipSeek's tables but is no superuser.

The web app and the workers read pictures and write rows; they never need to run programs
on the database server (`COPY ... TO PROGRAM`), read its files or manage roles, which any
superuser may. The embedded database and a compose deployment both hand the schema to such
a role, keeping the superuser for the setup only.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from clipseek.errors import BadQuery
from clipseek.store.sql_reader import withhold_from_public

if TYPE_CHECKING:
    import psycopg

_ROLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
MIN_PASSWORD_CHARS = 12


def check_app_role(name: str, password: str) -> None:
    """Raise BadQuery unless `name` is a plain role name and `password` long enough."""
    if not _ROLE_NAME.fullmatch(name):
        raise BadQuery(f"{name!r} cannot name a database role: use lower-case letters, digits "
                       "and underscores, starting with a letter.")
    if len(password) < MIN_PASSWORD_CHARS:
        raise BadQuery(f"The application role's password must have at least {MIN_PASSWORD_CHARS} "
                       "characters (set CLIPSEEK_APP_DB_PASSWORD).")


def ensure_app_role(conn: psycopg.Connection, name: str, password: str) -> None:
    """Create (or reset) `name` as a login without superuser, role or database rights."""
    from psycopg import sql

    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                         "NOREPLICATION NOBYPASSRLS PASSWORD {}").format(
        sql.Identifier(name), sql.Literal(password)))


def hand_over_schema(conn: psycopg.Connection, role: str) -> int:
    """Make `role` the owner of the connected database and of every table and function in
    its public schema (extensions' own objects excepted); return how many objects moved.
    Temporary tables, large objects and advisory locks are withheld from other logins.

    Runs as a superuser: after each migration (made by the superuser in compose, or by an
    older version) the application role must own what it reads, writes and migrates.
    """
    from psycopg import sql

    conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
        sql.Identifier(conn.info.dbname), sql.Identifier(role)))
    # pgvector is not a trusted extension: only a superuser may create it.
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    owned = conn.execute(
        """SELECT n.nspname, c.relname FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p')
             AND pg_get_userbyid(c.relowner) <> %s
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')""",
        (role,)).fetchall()
    for schema, name in owned:
        conn.execute(sql.SQL("ALTER TABLE {}.{} OWNER TO {}").format(
            sql.Identifier(schema), sql.Identifier(name), sql.Identifier(role)))
    functions = conn.execute(
        """SELECT p.oid::regprocedure::text FROM pg_proc p
           JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> %s
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')""",
        (role,)).fetchall()
    for (signature,) in functions:
        conn.execute(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(
            sql.SQL(signature), sql.Identifier(role)))
    # After the owner changed: the new owner is the one that gets the advisory locks back.
    withhold_from_public(conn)
    return len(owned) + len(functions)


def hand_database_to(admin_url: str, name: str, password: str) -> int:
    """Through a superuser's `admin_url`: ensure the role `name` and hand it the database."""
    import psycopg
    from sqlalchemy.engine import make_url

    address = make_url(admin_url).set(drivername="postgresql")
    with psycopg.connect(address.render_as_string(hide_password=False), autocommit=True) as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        if not (row and row[0]):
            raise BadQuery(f"{address.username} is no superuser: run `clipseek db app-role` with "
                           "the superuser's DATABASE_URL (in compose, the migrate service has it).")
        ensure_app_role(conn, name, password)
        return hand_over_schema(conn, name)
