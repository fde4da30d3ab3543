"""One HNSW index per model: a partial index over the model's rows, cast to its dimension.

A single graph over every model's vectors would make neighbours of vectors from different
embedding spaces (meaningless) and would force a model filter on every walk; a partial
index per model holds one space only, and a model of any dimension gets one. Searches must
write their ORDER BY and WHERE exactly as the index does, so both come from here.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np
from pgvector.sqlalchemy import HALFVEC
from sqlalchemy import BindParameter, ColumnElement, Engine, bindparam, cast, text

from clipseek.store.lock_waits import BlockerReport
from clipseek.store.tables import Embedding

INDEX_PREFIX = "embeddings_hnsw_"
# pgvector's defaults m=16, ef_construction=64: with ef_search 200 they gave recall@10
# 0.94-0.98 at 118,000 images (BENCHMARKS.md), and 0.98-0.99 at 300, so the default search
# is 250 (clipseek.settings.DEFAULT_EF_SEARCH) rather than a bigger graph; past a few
# hundred thousand images a bigger graph is needed (docs/deployment.md).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
# PostgreSQL cuts identifiers at 63 bytes.
_MAX_IDENTIFIER = 63


def index_name(model: str) -> str:
    """The name of `model`'s HNSW index: readable, and unique through a short hash of the name."""
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")
    digest = hashlib.sha256(model.encode()).hexdigest()[:8]
    room = _MAX_IDENTIFIER - len(INDEX_PREFIX) - len(digest) - 1
    return f"{INDEX_PREFIX}{slug[:room]}_{digest}"


def quoted(model: str) -> str:
    """`model` as an SQL string literal."""
    # Model names come from the catalogue, but a quote must never end the literal anyway.
    return "'" + model.replace("'", "''") + "'"


def index_sql(model: str, dim: int, *, concurrently: bool, m: int = HNSW_M,
              ef_construction: int = HNSW_EF_CONSTRUCTION) -> str:
    """The CREATE INDEX statement of `model`'s index (CONCURRENTLY: searches and writes go on)."""
    how = "CONCURRENTLY " if concurrently else ""
    return (f"CREATE INDEX {how}IF NOT EXISTS {index_name(model)} ON embeddings USING hnsw "
            f"((embedding::halfvec({int(dim)})) halfvec_cosine_ops) "
            f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)}) "
            f"WHERE model = {quoted(model)}")


def of_model(model: str) -> ColumnElement[bool]:
    """`embeddings.model = 'NAME'` with the name written into the SQL text.

    The planner uses a partial index only where it can prove the index's WHERE from the
    query's: a bound parameter proves nothing once PostgreSQL plans the statement generically.
    """
    return Embedding.model == bindparam(None, model, literal_execute=True)


def distance_to(vector: np.ndarray | BindParameter[Any]) -> ColumnElement[Any]:
    """Each row's cosine distance to `vector` (or a bound parameter of a halfvec type), cast to
    its dimension as the model's index is."""
    dim = int(getattr(vector.type, "dim", 0)) if isinstance(vector, BindParameter) else int(vector.shape[-1])
    distance: ColumnElement[Any] = cast(Embedding.embedding, HALFVEC(dim)).cosine_distance(vector)
    return distance


def index_state(engine: Engine, model: str) -> str | None:
    """'valid', 'invalid' (a concurrent build that failed half-way) or None (no index)."""
    with engine.connect() as conn:
        valid = conn.execute(text("SELECT i.indisvalid FROM pg_index i "
                                  "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = :name"),
                             {"name": index_name(model)}).scalar()
    return None if valid is None else ("valid" if valid else "invalid")


def create_index(engine: Engine, model: str, dim: int) -> None:
    """Build `model`'s index without blocking searches or writes; a half-built one is rebuilt.

    CREATE INDEX CONCURRENTLY cannot run inside a transaction, hence the autocommit
    connection; if it fails (or was interrupted) it leaves an invalid index behind, which
    is dropped first so that no search or retry meets a half-built one.
    """
    if index_state(engine, model) == "invalid":
        drop_index(engine, model)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        pid = int(conn.scalar(text("SELECT pg_backend_pid()")) or 0)
        try:
            # It waits for every transaction older than itself: say which, if it must.
            with BlockerReport(engine, pid, what=f"Building the search index of {model}"):
                conn.execute(text(index_sql(model, dim, concurrently=True)))
        except Exception:
            conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {index_name(model)}"))
            raise


def drop_index(engine: Engine, model: str) -> None:
    """Drop `model`'s index without blocking searches of the other models."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {index_name(model)}"))


def include_in_autogenerate(obj: object, name: str | None, type_: str, reflected: bool,
                            compare_to: object | None) -> bool:
    """Alembic's filter: the per-model indexes are made at run time, not by migrations."""
    return not (type_ == "index" and reflected and compare_to is None
                and (name or "").startswith(INDEX_PREFIX))
