"""The read-only SQL role: SELECT on the documented tables, nothing else, and bounded in time.

Privileges are the guard, not settings: a reader may SET any of its settings off again (and
even ALTER ROLE itself), so what must not happen is made impossible for PUBLIC in
ClipSeek's database, and the time bounds are also enforced from outside by
`end_overrunning_readers`, which the recovery scheduler runs.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import text

from clipseek.errors import BadQuery

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

READER_ROLE = "clipseek_reader"
# The tables docs/sql.md documents; accounts, tokens and the audit stay private.
READER_TABLES = ("images", "captions", "duplicate_files", "embeddings", "embedding_counts",
                 "query_examples", "upload_rejections", "score_cutoffs", "worker_beats",
                 "search_models", "albums", "album_images", "people", "faces",
                 "near_duplicate_pairs", "query_embeddings")
# The views of the active model's rows, which a switch recreates (clipseek.store.active_views
# grants them again each time).
READER_VIEWS = ("active_embeddings", "active_query_embeddings")
# Long enough for an exact scan of a large collection, short enough that a runaway join
# cannot hold the server.
STATEMENT_TIMEOUT_S = 30
# An open transaction holds back CREATE INDEX CONCURRENTLY (a model switch) and vacuum; a
# person at psql gets a minute between statements, a whole transaction five.
IDLE_IN_TRANSACTION_S = 60
TRANSACTION_S = 300
# Idle sessions hold connection slots; a reader gets a few at once.
IDLE_SESSION_S = 3600
CONNECTION_LIMIT = 5
_LOGIN_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")

# Functions PUBLIC may run by default through which a login could keep data after its
# session (large objects) or take (or wait on) ClipSeek's locks (advisory locks).
_WRITES_LARGE_OBJECTS = ("lo_creat(integer)", "lo_create(oid)", "lo_from_bytea(oid,bytea)",
                         "lo_import(text)", "lo_import(text,oid)", "lo_put(oid,bigint,bytea)",
                         "lowrite(integer,bytea)", "lo_truncate(integer,integer)",
                         "lo_truncate64(integer,bigint)", "lo_unlink(oid)")


def grant_reader_sql(*, create_if_allowed: bool, tables: tuple[str, ...] = READER_TABLES) -> str:
    """SQL that grants the reader role its SELECTs, creating the role first where this login may.

    A migration passes the tables that exist at its revision.
    """
    create = f"""
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
      IF {'true' if create_if_allowed else 'false'}
         AND (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
        CREATE ROLE {READER_ROLE} NOLOGIN;
        ALTER ROLE {READER_ROLE} SET statement_timeout = '{STATEMENT_TIMEOUT_S}s';
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


def withhold_from_public(conn: psycopg.Connection) -> None:
    """As a superuser, in ClipSeek's database: take from every login but the database's owner
    temporary tables, large objects and advisory locks (idempotent).

    Function privileges live in each database, so ClipSeek's own database is the only one
    changed. The owner (the application role) keeps temporary tables as owner and gets the
    advisory locks back: sync and the recovery scheduler take them.
    """
    from psycopg import sql

    row = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database "
                       "WHERE datname = current_database()").fetchone()
    owner = str(row[0]) if row else None
    conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(
        sql.Identifier(conn.info.dbname)))
    advisory = [str(sig) for (sig,) in conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = "
        "'pg_catalog'::regnamespace AND p.proname ~ '^pg_(try_)?advisory_'").fetchall()]
    for signature in (*_WRITES_LARGE_OBJECTS, *advisory):
        conn.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION pg_catalog.{} FROM PUBLIC").format(
            sql.SQL(signature)))
    for signature in advisory:
        if owner:
            conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION pg_catalog.{} TO {}").format(
                sql.SQL(signature), sql.Identifier(owner)))
    # A reader role made by an older version may lack a table documented since; the active
    # model's views (clipseek.store.active_views) exist once a model is active.
    present = tuple(table for table in (*READER_TABLES, *READER_VIEWS) if conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"public.{table}",)).fetchone() == (True,))
    if present:
        conn.execute(grant_reader_sql(create_if_allowed=False, tables=present))


def reader_login_name(raw: str) -> str:
    """A login name for a reader, checked: lower-case letters, digits and underscores."""
    name = raw.strip()
    if not _LOGIN_NAME.fullmatch(name) or name.startswith("pg_") or name.startswith("clipseek"):
        raise BadQuery(f"{raw!r} cannot name a database login: use lower-case letters, digits and "
                       "underscores, starting with a letter (and not with pg_ or clipseek).")
    return name


def create_reader_login(conn: psycopg.Connection, name: str) -> str:
    """Create (or reset) a reader login on a superuser's connection; return its new password."""
    from psycopg import sql

    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if not (row and row[0]):
        # Only the functions' owner, the superuser, can take the advisory locks and large
        # objects from PUBLIC; a reader made without that could stall every sync.
        raise BadQuery("Only a superuser can make a reader login that cannot take ClipSeek's "
                       "locks: run `clipseek db reader` with a DATABASE_URL of a superuser.")
    password = secrets.token_urlsafe(24)
    conn.execute(grant_reader_sql(create_if_allowed=True))
    withhold_from_public(conn)
    verb = "ALTER" if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() \
        else "CREATE"
    conn.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT "
                         "NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {} PASSWORD {}").format(
        sql.Identifier(name), sql.Literal(CONNECTION_LIMIT), sql.Literal(password)))
    # Role settings apply to the login, not through membership: each reader gets its own.
    # RESET ALL first: the login itself may have changed them (ALTER ROLE on itself).
    conn.execute(sql.SQL("ALTER ROLE {} RESET ALL").format(sql.Identifier(name)))
    for setting, value in (("statement_timeout", f"{STATEMENT_TIMEOUT_S}s"),
                           ("idle_in_transaction_session_timeout", f"{IDLE_IN_TRANSACTION_S}s"),
                           ("transaction_timeout", f"{TRANSACTION_S}s"),
                           ("idle_session_timeout", f"{IDLE_SESSION_S}s"),
                           ("default_transaction_read_only", "on")):
        conn.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(
            sql.Identifier(name), sql.Identifier(setting), sql.Literal(value)))
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(READER_ROLE), sql.Identifier(name)))
    owner = conn.execute("SELECT r.rolname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
                         "WHERE d.datname = current_database() AND NOT r.rolsuper").fetchone()
    if owner:
        # The application role ends a reader's overrunning sessions (pg_terminate_backend
        # needs the privileges of the login), without being able to act as it.
        conn.execute(sql.SQL("GRANT {} TO {} WITH INHERIT TRUE, SET FALSE").format(
            sql.Identifier(name), sql.Identifier(owner[0])))
    return password


@dataclass(frozen=True)
class EndedSession:
    """A reader's session that `end_overrunning_readers` ended, and why."""

    pid: int
    login: str
    why: str


def end_overrunning_readers(session: Session, *, statement_s: float = STATEMENT_TIMEOUT_S + 5,
                            idle_in_transaction_s: float = IDLE_IN_TRANSACTION_S + 5,
                            transaction_s: float = TRANSACTION_S + 5) -> list[EndedSession]:
    """End the sessions of reader logins that run a statement, sit in a transaction or keep one
    open longer than their bounds, whatever they SET; return them. The caller commits.

    Only direct members of the reader role count: the application role is a member of
    each login (to signal it) and must never end itself.
    """
    rows = session.execute(text("""
        SELECT pid, usename, why FROM (
          SELECT a.pid, a.usename,
                 CASE WHEN a.state = 'active' AND a.query_start < now() - make_interval(secs => :stmt)
                        THEN 'a statement running for '
                             || round(extract(epoch FROM now() - a.query_start)) || ' s'
                      WHEN a.state LIKE 'idle in transaction%'
                           AND a.state_change < now() - make_interval(secs => :idle)
                        THEN 'idle in a transaction for '
                             || round(extract(epoch FROM now() - a.state_change)) || ' s'
                      WHEN a.xact_start < now() - make_interval(secs => :xact)
                        THEN 'a transaction open for '
                             || round(extract(epoch FROM now() - a.xact_start)) || ' s'
                 END AS why
          FROM pg_stat_activity a
          WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
            AND a.usesysid IN (SELECT m.member FROM pg_auth_members m JOIN pg_roles r
                               ON r.oid = m.roleid WHERE r.rolname = :role)) AS overrun
        WHERE why IS NOT NULL ORDER BY pid
    """), {"stmt": statement_s, "idle": idle_in_transaction_s, "xact": transaction_s,
           "role": READER_ROLE}).all()
    # One by one, after choosing: a terminate inside the WHERE might run before the test.
    rows = [row for row in rows
            if session.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": row[0]})]
    ended = [EndedSession(int(pid), str(login), str(why)) for pid, login, why in rows]
    for one in ended:
        log.warning("Ended reader %s's session (pid %d): %s.", one.login, one.pid, one.why)
    return ended
