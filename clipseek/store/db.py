"""Connecting to PostgreSQL: the URL to use, engines, sessions and schema migrations."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from clipseek.errors import DatabaseUnavailable
from clipseek.settings import Settings
from clipseek.store.embedded_db import EmbeddedPostgres
from clipseek.store.replicas import ReplicaSet, ReplicaState, parse_lsn

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def normalize_url(url: str) -> str:
    """Use the psycopg 3 driver for plain postgres:// and postgresql:// URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def database_url(settings: Settings) -> str:
    """Return DATABASE_URL, or start (or reuse) the embedded server and return its URL."""
    if settings.database_url:
        return normalize_url(settings.database_url)
    return EmbeddedPostgres(settings.pgdata).ensure_running()


def make_engine(url: str) -> Engine:
    """Create an engine whose pool survives a database restart."""
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    return config


def upgrade_schema(url: str) -> None:
    """Apply every pending migration."""
    from alembic import command

    command.upgrade(_alembic_config(url), "head")


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is at the newest migration."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current == heads


@dataclass
class Database:
    """An engine and its session factory, built once per process and passed around."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    # The read-only replicas of DATABASE_READ_URL; None without it (every read on the primary).
    replicas: ReplicaSet | None = field(default=None, repr=False)

    @classmethod
    def connect(cls, settings: Settings, *, migrate: bool = True) -> Database:
        """Reach the configured database, bringing its schema up to date on first use."""
        url = database_url(settings)
        engine = make_engine(url)
        try:
            if migrate and not schema_is_current(engine):
                upgrade_schema(url)
        except OperationalError as exc:
            engine.dispose()
            raise DatabaseUnavailable(
                f"Cannot reach the database at {engine.url.render_as_string(hide_password=True)}: "
                f"{str(exc.orig).strip()}. Check DATABASE_URL, or unset it to use the embedded one."
            ) from None
        replicas = (ReplicaSet([normalize_url(u) for u in settings.database_read_urls], engine,
                               max_lag_s=settings.replica_max_lag_s)
                    if settings.database_read_urls else None)
        return cls(url=url, engine=engine, sessions=sessionmaker(engine, expire_on_commit=False),
                   replicas=replicas)

    def session(self) -> Session:
        """Open a new session on the primary (use it as a context manager)."""
        return self.sessions()

    def read_session(self, *, after_lsn: int | None = None) -> Session:
        """A session for read-only work: on a replica that is up and has replayed past
        `after_lsn` (the reader's own last write), else on the primary.

        A replica's session carries it in `session.info["replica"]`, so that a caller whose
        read fails there can mark it down (`replica_failed`) and read again on the primary.
        """
        if self.replicas is not None:
            session = self.replicas.read_session(after_lsn=after_lsn)
            if session is not None:
                return session
        return self.sessions()

    def replica_failed(self, session: Session, error: BaseException) -> bool:
        """Mark down the replica a failed read session was on; False if it was on the primary."""
        replica = session.info.get("replica")
        if replica is None or self.replicas is None:
            return False
        self.replicas.mark_down(replica, error)
        return True

    def replica_states(self) -> list[ReplicaState]:
        """Each replica's state and lag (none without DATABASE_READ_URL)."""
        return [] if self.replicas is None else self.replicas.states()

    def write_position(self) -> int:
        """The primary's current WAL position: a read that must see the writes made so far
        waits for a replica to replay past it."""
        with self.engine.connect() as conn:
            return parse_lsn(conn.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one())

    def ping(self) -> None:
        """Run a trivial query; raises if the database is unreachable."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()
        if self.replicas is not None:
            self.replicas.close()
