"""Alembic environment: the URL comes from the caller, or from ClipSeek's settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from clipseek.store.tables import Base
from clipseek.store.vector_indexes import include_in_autogenerate

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url")
    if url:
        return str(url)
    # Run as plain `alembic upgrade head`: use the same database ClipSeek would.
    from clipseek.settings import Settings
    from clipseek.store.db import database_url

    return database_url(Settings.from_env())


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      compare_type=True, include_object=include_in_autogenerate)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run migrations on a live connection."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def run_migrations_offline() -> None:
    """Emit the migrations as SQL."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
