"""The read-only SQL role on real PostgreSQL: it runs the README's examples and nothing else."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from clipseek.catalog import Candidate
from clipseek.db import Database
from clipseek.embedded_db import EmbeddedPostgres
from clipseek.encoder import ClipEncoder
from clipseek.ingest import ingest_inline
from clipseek.settings import Settings
from clipseek.sql_reader import READER_TABLES
from tests.test_readme import _sql_blocks


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


def _rows(conn: psycopg.Connection, statement: str) -> list[Any] | None:
    cursor = conn.execute(statement)
    return None if cursor.description is None else cursor.fetchall()  # None: a SET


def test_the_reader_runs_every_readme_example(reader_url: str, db: Database, encoder: ClipEncoder,
                                              settings: Settings, sample_photos: list[Candidate]) -> None:
    ingest_inline(db, encoder, sample_photos, settings=settings)
    assert reader_url.startswith("postgresql://analyst_")
    statements = [s.strip().replace("ViT-B-32/openai", "ViT-B-32/random")
                  for block in _sql_blocks() for s in block.split(";") if s.strip()]
    with psycopg.connect(db.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)) as owner:
        expected = [_rows(owner, statement) for statement in statements]
    with psycopg.connect(reader_url) as conn:
        assert [_rows(conn, statement) for statement in statements] == expected
        answers = [rows for rows in expected if rows is not None]
        assert len(answers) == 5 and all(answers[:4])
        for table in READER_TABLES:
            conn.execute(f"SELECT * FROM {table} LIMIT 1").fetchall()
        assert conn.execute("SHOW statement_timeout").fetchone() == ("30s",)


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
def test_the_reader_cannot_write_or_read_beyond_the_documented_tables(reader_url: str,
                                                                      statement: str) -> None:
    with psycopg.connect(reader_url) as conn, pytest.raises(psycopg.errors.Error):
        conn.execute(statement)


def test_a_bad_reader_name_is_one_sentence(cli_env: dict[str, str]) -> None:
    answer = subprocess.run(["clipseek", "db", "reader", "Robert'; DROP"], env=cli_env,
                            capture_output=True, text=True, timeout=120)
    assert answer.returncode == 1 and "cannot name a database login" in answer.stderr
