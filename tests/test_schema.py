"""The schema: migrations match the models, pgvector is installed by the first one, statuses are checked."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, insert, text
from sqlalchemy.exc import IntegrityError

from clipseek.context import open_database
from clipseek.settings import RANDOM_MODEL, Settings
from clipseek.store.db import Database
from clipseek.store.tables import Base, Image, ImageStatus
from clipseek.store.vector_indexes import include_in_autogenerate, index_name
from clipseek.switching.switch import active_model


def test_autogenerate_finds_nothing_to_change(db: Database) -> None:
    # The per-model HNSW indexes are made at run time, one per model (clipseek.store.vector_indexes).
    options = {"include_object": include_in_autogenerate}
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts=options), Base.metadata)
    assert diff == []
    with db.engine.connect() as conn:
        bare = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [change[1].name for change in bare] == [index_name(db_model(db))]


def db_model(db: Database) -> str:
    with db.session() as session:
        return active_model(session)


def test_vector_extension_and_the_active_models_own_hnsw_index_exist(db: Database) -> None:
    model = db_model(db)
    with db.engine.connect() as conn:
        assert conn.scalar(text("SELECT extversion FROM pg_extension WHERE extname='vector'"))
        indexdef = conn.scalar(text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
                               {"name": index_name(model)})
        coltype = conn.scalar(text(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'embeddings'::regclass AND attname = 'embedding'"))
        shared = conn.scalar(text("SELECT count(*) FROM pg_indexes "
                                  "WHERE indexname = 'embeddings_hnsw_cosine_idx'"))
    # One graph per model, over its own rows, at its own dimension; the column has none.
    assert "hnsw" in indexdef and "halfvec_cosine_ops" in indexdef
    assert "(embedding)::halfvec(512)" in indexdef and f"WHERE ((model)::text = '{model}'::text)" in indexdef
    assert coltype == "halfvec" and shared == 0


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


def test_migration_0008_gives_each_stored_model_its_own_index_and_keeps_every_vector(
        database_url: str, settings: Settings) -> None:
    from alembic import command

    from clipseek.store.db import _alembic_config, normalize_url

    config = _alembic_config(normalize_url(database_url))
    command.downgrade(config, "0007")  # the template is at head: back to one shared 512-d index
    engine = create_engine(normalize_url(database_url))
    old, other = "ViT-B-32/openai", "ViT-B-16/openai"
    with engine.begin() as conn:
        assert conn.scalar(text("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                                "WHERE attrelid = 'embeddings'::regclass AND attname = 'embedding'")) \
            == "halfvec(512)"
        conn.execute(text("INSERT INTO images (id, sha256, path, original_name, source, file_size, status) "
                          "SELECT g, lpad(g::text, 64, '0'), 'p', 'n', 'folder', 1, 'indexed' "
                          "FROM generate_series(1, 3) g"))
        for model in (old, other):
            conn.execute(text("INSERT INTO embeddings (image_id, model, embedding) "
                              "SELECT g, :m, array_fill(g::real, ARRAY[512])::halfvec "
                              "FROM generate_series(1, 3) g"),
                         {"m": model})
    command.upgrade(config, "head")
    with engine.connect() as conn:
        kept = {name: (state, dim) for name, state, dim in conn.execute(text(
            "SELECT name, state, dim FROM search_models"))}
        indexes = set(conn.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings'")))
        vectors = conn.scalar(text("SELECT count(*) FROM embeddings"))
    assert kept == {old: ("kept", 512), other: ("kept", 512)} and vectors == 6
    assert {index_name(old), index_name(other)} <= indexes and "embeddings_hnsw_cosine_idx" not in indexes
    # The first start picks CLIPSEEK_MODEL among them as the active one.
    db = open_database(settings.with_changes(model=other))
    try:
        with db.session() as session:
            assert active_model(session) == other
    finally:
        db.close()
    # And back: with only 512-d vectors stored, the downgrade restores the shared index.
    command.downgrade(config, "0007")
    with engine.connect() as conn:
        indexes = set(conn.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings'")))
    assert "embeddings_hnsw_cosine_idx" in indexes and index_name(old) not in indexes
    command.upgrade(config, "head")
    engine.dispose()


def test_migration_0014_makes_the_active_models_views_and_its_downgrade_drops_them(
        db: Database, database_url: str) -> None:
    from alembic import command

    from clipseek.store.active_views import views_are_current
    from clipseek.store.db import _alembic_config, normalize_url

    def views() -> list[str]:
        with db.engine.connect() as conn:
            return sorted(conn.scalars(text("SELECT viewname FROM pg_views WHERE schemaname = 'public'")))

    assert views() == ["active_embeddings", "active_query_embeddings"]  # made at the first start
    config = _alembic_config(normalize_url(database_url))
    command.downgrade(config, "0013")
    assert views() == []
    command.upgrade(config, "head")
    with db.engine.connect() as conn:
        assert views_are_current(conn, RANDOM_MODEL, 512)
        assert conn.scalar(text("SELECT kept FROM query_embeddings LIMIT 1")) is None  # the column is back
