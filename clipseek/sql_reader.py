"""The read-only SQL role: SELECT on the documented tables, nothing else, and a statement timeout."""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING

from clipseek.errors import BadQuery

if TYPE_CHECKING:
    import psycopg

READER_ROLE = "clipseek_reader"
# The tables the README's SQL section documents; accounts, tokens and the audit stay private.
READER_TABLES = ("images", "captions", "duplicate_files", "embeddings", "embedding_counts",
                 "query_examples", "score_cutoffs", "worker_beats", "search_models")
# Long enough for an exact scan of a large collection, short enough that a runaway join
# cannot hold the server.
STATEMENT_TIMEOUT = "30s"
_LOGIN_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def grant_reader_sql(*, create_if_allowed: bool, tables: tuple[str, ...] = READER_TABLES) -> str:
    """SQL that grants the reader role its SELECTs, creating the role first where this login may.

    A migration passes the tables that exist at its revision.
    """
    create = f"""
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
      IF {'true' if create_if_allowed else 'false'}
         AND (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
        CREATE ROLE {READER_ROLE} NOLOGIN;
        ALTER ROLE {READER_ROLE} SET statement_timeout = '{STATEMENT_TIMEOUT}';
      ELSE
        RETURN;
      END IF;
    END IF;"""
    return f"""DO $$
BEGIN{create}
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO {READER_ROLE}', current_database());
    GRANT USAGE ON SCHEMA public TO {READER_ROLE};
    GRANT SELECT ON {', '.join(tables)} TO {READER_ROLE};
END $$;"""


def reader_login_name(raw: str) -> str:
    """A login name for a reader, checked: lower-case letters, digits and underscores."""
    name = raw.strip()
    if not _LOGIN_NAME.fullmatch(name) or name.startswith("pg_") or name.startswith("clipseek"):
        raise BadQuery(f"{raw!r} cannot name a database login: use lower-case letters, digits and "
                       "underscores, starting with a letter (and not with pg_ or clipseek).")
    return name


def create_reader_login(conn: psycopg.Connection, name: str) -> str:
    """Create (or reset) a reader login on an admin connection; return its new password."""
    from psycopg import sql

    password = secrets.token_urlsafe(24)
    conn.execute(grant_reader_sql(create_if_allowed=True))
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER_ROLE,)).fetchone()
    if not exists:
        raise BadQuery("This database login may not create roles: run `clipseek db reader` with a "
                       "DATABASE_URL of a superuser or a role with CREATEROLE.")
    verb = "ALTER" if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() \
        else "CREATE"
    conn.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT "
                         "PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
    # Role settings apply to the login, not through membership: each reader gets its own.
    for setting, value in (("statement_timeout", STATEMENT_TIMEOUT),
                           ("default_transaction_read_only", "on")):
        conn.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(
            sql.Identifier(name), sql.Identifier(setting), sql.Literal(value)))
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(READER_ROLE), sql.Identifier(name)))
    return password
