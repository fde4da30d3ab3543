"""The read-only SQL role on real PostgreSQL: it runs the examples of docs/sql.md and nothing else."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from clipseek.clip.encoder import ClipEncoder
from clipseek.library.sync import _lock_key
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.embedded_db import EmbeddedPostgres
from clipseek.store.sql_reader import (
    READER_TABLES,
    READER_VIEWS,
    create_reader_login,
    end_overrunning_readers,
)
from clipseek.upkeep.recovery import SCHEDULER_LOCK
from tests.conftest import cloned_database, command_env, settings_for
from tests.test_readme import SQL_PAGE, _sql_blocks, store_documented_texts
from tests.waiting import wait_for


@pytest.fixture
def reader_url(cli_env: dict[str, str], pg_server: EmbeddedPostgres, db: Database) -> Iterator[str]:
    """The psql URL that `clipseek db reader` prints for a new login (dropped after the test)."""
    name = f"analyst_{os.getpid()}"
    made = subprocess.run(["clipseek", "db", "reader", name], env=cli_env, capture_output=True,
                          text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    yield made.stdout.strip()
    with pg_server.admin_connection() as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{name}"')


@pytest.fixture(scope="module")
def refusing_reader_url(pg_server: EmbeddedPostgres,
                        tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A reader login on a database of this module's own, for the tests that only try what a
    reader may not do: each attempt is refused, so none changes what the next one finds, and
    one `clipseek db reader` (seconds) serves them all."""
    name = f"refused_{os.getpid()}"
    with cloned_database(pg_server) as (_, url):
        settings = settings_for(tmp_path_factory.mktemp("reader") / "home", url)
        with command_env(settings) as env:
            made = subprocess.run(["clipseek", "db", "reader", name], env=env, capture_output=True,
                                  text=True, timeout=120)
            assert made.returncode == 0, made.stderr
            try:
                yield made.stdout.strip()
            finally:
                with pg_server.admin_connection() as conn:
                    conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def _rows(conn: psycopg.Connection, statement: str) -> list[Any] | None:
    cursor = conn.execute(statement)
    return None if cursor.description is None else cursor.fetchall()  # None: a SET


def test_the_reader_runs_every_documented_example(reader_url: str, db: Database, encoder: ClipEncoder,
                                                  settings: Settings, indexed_samples: list[int]) -> None:
    store_documented_texts(db, encoder)
    assert reader_url.startswith("postgresql://analyst_")
    statements = [s.strip().replace("ViT-B-32/openai", "ViT-B-32/random")
                  for block in _sql_blocks() for s in block.split(";") if s.strip()]
    with psycopg.connect(db.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)) as owner:
        expected = [_rows(owner, statement) for statement in statements]
    with psycopg.connect(reader_url) as conn:
        assert [_rows(conn, statement) for statement in statements] == expected
        answers = [rows for rows in expected if rows is not None]
        # neighbours, by a text, cat captions, an album (none here), hybrid, near hashes, near
        # pairs (no copies here), countries and cities (no GPS here), statuses, failures, words
        # read and reading (none here)
        assert len(answers) == 13 and all(answers[i] for i in (0, 1, 2, 4, 5, 9))
        for table in (*READER_TABLES, *READER_VIEWS):
            conn.execute(f"SELECT * FROM {table} LIMIT 1").fetchall()
        assert conn.execute("SHOW statement_timeout").fetchone() == ("30s",)
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("1min",)
        assert conn.execute("SHOW transaction_timeout").fetchone() == ("5min",)


@pytest.mark.parametrize("statement", [
    "INSERT INTO images (sha256, path, original_name, source, file_size) VALUES ('x', 'x', 'x', 'x', 1)",
    "UPDATE images SET path = 'x'",
    "DELETE FROM captions",
    "CREATE TABLE mine (id int)",
    "DROP TABLE embeddings",
    "TRUNCATE images",
    "SELECT * FROM users",
    "SELECT * FROM api_tokens",
    "SELECT * FROM login_sessions",
    "SELECT * FROM audit_events",
    "SELECT * FROM alembic_version",
])
def test_the_reader_cannot_write_or_read_beyond_the_documented_tables(refusing_reader_url: str,
                                                                      statement: str) -> None:
    with psycopg.connect(refusing_reader_url) as conn, pytest.raises(psycopg.errors.Error):
        conn.execute(statement)


def test_a_bad_reader_name_is_one_sentence(cli_env: dict[str, str]) -> None:
    answer = subprocess.run(["clipseek", "db", "reader", "Robert'; DROP"], env=cli_env,
                            capture_output=True, text=True, timeout=120)
    assert answer.returncode == 1 and "cannot name a database login" in answer.stderr


def test_the_sql_page_lists_exactly_the_tables_the_reader_may_read() -> None:
    section = SQL_PAGE.read_text().split("\n## Tables\n", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(\w+)` \|", section, flags=re.M)
    assert sorted(listed) == sorted(READER_TABLES)
    views = SQL_PAGE.read_text().split("\n## The active model's views\n", 1)[1].split("\n## ", 1)[0]
    assert sorted(re.findall(r"^\| `(\w+)` \|", views, flags=re.M)) == sorted(READER_VIEWS)


_SYNC_OF_ROOT = _lock_key(Path("/"))


@pytest.mark.parametrize("statements", [
    ["SET default_transaction_read_only = off", "SELECT lo_from_bytea(0, '\\x41')"],
    ["SET default_transaction_read_only = off", "SELECT lo_create(0)"],
    ["SET default_transaction_read_only = off", "SELECT lo_creat(-1)"],
    ["SET default_transaction_read_only = off", "CREATE TEMP TABLE mine (x int)"],
    [f"SELECT pg_advisory_lock({_SYNC_OF_ROOT})"],
    [f"SELECT pg_advisory_lock_shared({_SYNC_OF_ROOT})"],
    [f"SELECT pg_try_advisory_lock({SCHEDULER_LOCK})"],
    ["BEGIN", f"SELECT pg_advisory_xact_lock({_SYNC_OF_ROOT})"],
    ["BEGIN", "SELECT pg_try_advisory_xact_lock_shared(1)"],
    ["SELECT pg_advisory_lock(1, 2)"],
    ["SELECT pg_try_advisory_lock_shared(1, 2)"],
], ids=lambda s: s[-1][:40])
def test_the_reader_can_neither_keep_data_nor_take_clipseeks_locks(refusing_reader_url: str,
                                                                   statements: list[str]) -> None:
    with psycopg.connect(refusing_reader_url, autocommit=True) as conn:
        for statement in statements[:-1]:
            conn.execute(statement)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statements[-1])


def test_a_reader_has_at_most_five_connections(reader_url: str) -> None:
    held = [psycopg.connect(reader_url) for _ in range(5)]
    try:
        with pytest.raises(psycopg.OperationalError, match="too many connections"):
            psycopg.connect(reader_url)
    finally:
        for conn in held:
            conn.close()


def _sits_in_a_transaction(url: str) -> psycopg.Connection:
    """A reader's session that turned its own bounds off and sits in an open transaction."""
    conn = psycopg.connect(url)
    conn.execute("SET idle_in_transaction_session_timeout = 0")
    conn.execute("SET transaction_timeout = 0")
    conn.execute("SELECT count(*) FROM images").fetchall()  # BEGIN is implicit: it stays open
    return conn


def test_a_reader_idle_in_a_transaction_is_ended_whatever_it_set(reader_url: str, db: Database) -> None:
    idle = _sits_in_a_transaction(reader_url)
    quiet = psycopg.connect(reader_url, autocommit=True)  # idle, but in no transaction
    pid = idle.info.backend_pid
    ended: list[int] = []

    def end_some() -> bool:
        with db.session() as session:
            ended.extend(s.pid for s in end_overrunning_readers(session, idle_in_transaction_s=0.2))
            session.commit()
        return bool(ended)

    wait_for(end_some, 30, "the idle reader to be ended")
    assert ended == [pid]
    with pytest.raises(psycopg.OperationalError):
        idle.execute("SELECT 1")
    assert quiet.execute("SELECT 1").fetchone() == (1,)
    quiet.close()
    idle.close()


def test_the_application_role_keeps_its_locks_and_ends_overrunning_readers(
        pg_server: EmbeddedPostgres, settings: Settings, db: Database) -> None:
    """The embedded shape: the database belongs to a role that is no superuser."""
    dbname = db.engine.url.database
    app, reader = f"app_{os.getpid()}", f"slow_{os.getpid()}"
    with pg_server.admin_connection() as admin:
        admin.execute(f"CREATE ROLE {app} LOGIN PASSWORD 'app-password-1'")
        admin.execute(f'ALTER DATABASE "{dbname}" OWNER TO {app}')
    try:
        with pg_server.admin_connection(str(dbname)) as admin:
            password = create_reader_login(admin, reader)
        address = db.engine.url.set(drivername="postgresql")
        reader_address = address.set(username=reader, password=password).render_as_string(
            hide_password=False)
        app_address = address.set(drivername="postgresql+psycopg", username=app,
                                   password="app-password-1")
        idle = _sits_in_a_transaction(reader_address)
        as_app = Database.connect(settings.with_changes(database_url=app_address.render_as_string(
            hide_password=False)), migrate=False)
        try:
            with as_app.session() as session:
                assert session.scalar(text(f"SELECT pg_try_advisory_lock({SCHEDULER_LOCK})"))
                assert session.scalar(text("SELECT pg_try_advisory_xact_lock(1)"))
                ended = end_overrunning_readers(session, idle_in_transaction_s=0)
                session.commit()
        finally:
            as_app.close()
        assert [(s.pid, s.login) for s in ended] == [(idle.info.backend_pid, reader)]
        idle.close()
    finally:
        with pg_server.admin_connection(str(dbname)) as admin:
            admin.execute(f"REASSIGN OWNED BY {app}, {reader} TO postgres")
            admin.execute(f"DROP OWNED BY {app}, {reader}")
        with pg_server.admin_connection() as admin:
            admin.execute(f"DROP ROLE IF EXISTS {reader}")
            admin.execute(f"DROP ROLE IF EXISTS {app}")
