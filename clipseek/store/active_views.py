"""Views of the active model's vectors, so SQL written against them outlives a model switch.

`active_embeddings` and `active_query_embeddings` name the active model as a literal and
cast its vectors to its dimension: a query over them is planned exactly as one written
against that model's HNSW index (clipseek.store.vector_indexes), so the index serves it.
A column's dimension cannot change in place, so a switch drops and recreates both views in
its own transaction: a reader sees the former model's views or the new one's, never none.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from clipseek.store.sql_reader import READER_ROLE, READER_VIEWS
from clipseek.store.vector_indexes import quoted


def _comment(model: str, dim: int) -> str:
    # The comment tells a reader what the view holds, and tells startup whether it is current.
    return f"The active model {model} ({int(dim)} dimensions), cast so that its HNSW index serves it"


def views_sql(model: str, dim: int) -> list[str]:
    """The statements that (re)create both views for `model` and let the reader role read them."""
    cast = f"embedding::halfvec({int(dim)})"
    about = quoted(_comment(model, dim))
    return [
        "DROP VIEW IF EXISTS active_embeddings, active_query_embeddings",
        f"CREATE VIEW active_embeddings AS SELECT image_id, model, {cast} AS embedding, created_at "
        f"FROM embeddings WHERE model = {quoted(model)}",
        f"CREATE VIEW active_query_embeddings AS SELECT text, model, {cast} AS embedding, "
        f"created_at, last_used_at, kept FROM query_embeddings WHERE model = {quoted(model)}",
        f"COMMENT ON VIEW active_embeddings IS {about}",
        f"COMMENT ON VIEW active_query_embeddings IS {about}",
        # A view made anew has no grants; the role exists only where a migration or
        # `clipseek db reader` could make it.
        f"""DO $$ BEGIN
              IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
                GRANT SELECT ON {', '.join(READER_VIEWS)} TO {READER_ROLE};
              END IF;
            END $$""",
    ]


def views_are_current(connection: Connection | Session, model: str, dim: int) -> bool:
    """Whether both views exist and serve `model` at `dim` dimensions."""
    found = connection.execute(text(
        "SELECT count(*) FROM pg_class c WHERE c.relkind = 'v' AND c.relnamespace = 'public'::regnamespace "
        "AND c.relname = ANY(:names) AND obj_description(c.oid, 'pg_class') = :comment"),
        {"names": list(READER_VIEWS), "comment": _comment(model, dim)}).scalar()
    return found == len(READER_VIEWS)


def replace_active_views(connection: Connection | Session, model: str, dim: int) -> None:
    """Point both views at `model`, in the caller's transaction (which commits)."""
    conn = connection.connection() if isinstance(connection, Session) else connection
    for statement in views_sql(model, dim):
        # Run as written: a model's name is no place for bound parameters to be looked for.
        conn.exec_driver_sql(statement)
