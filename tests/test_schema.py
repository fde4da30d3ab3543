"""The schema: migrations match the models, pgvector is installed by the first one, statuses are checked."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError

from clipseek.db import Database
from clipseek.models import Base, Image, ImageStatus


def test_autogenerate_finds_nothing_to_change(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_vector_extension_and_hnsw_index_exist(db: Database) -> None:
    with db.engine.connect() as conn:
        assert conn.scalar(text("SELECT extversion FROM pg_extension WHERE extname='vector'"))
        indexdef = conn.scalar(text(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'embeddings_hnsw_cosine_idx'"))
        coltype = conn.scalar(text(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'embeddings'::regclass AND attname = 'embedding'"))
    assert "hnsw" in indexdef and "halfvec_cosine_ops" in indexdef
    assert coltype == "halfvec(512)"


def test_the_database_accepts_exactly_the_image_statuses(db: Database) -> None:
    # Autogenerate does not compare check constraints: ask the database what it enforces.
    allowed = []
    with db.engine.connect() as conn:
        for status in [*ImageStatus, "lost"]:
            try:
                with conn.begin_nested():
                    conn.execute(insert(Image).values(sha256=status.rjust(64, "0"), path=status,
                                                      original_name=status, source="folder",
                                                      file_size=0, status=status))
                allowed.append(status)
            except IntegrityError:
                pass
        conn.rollback()
    assert allowed == list(ImageStatus)
