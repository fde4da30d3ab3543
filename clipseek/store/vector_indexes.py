"""One HNSW index per model: a partial index over the model's rows, cast to its dimension.

A single graph over every model's vectors would make neighbours of vectors from different
embedding spaces (meaningless) and would force a model filter on every walk; a partial
index per model holds one space only, and a model of any dimension gets one. Searches must
write their ORDER BY and WHERE exactly as the index does, so both come from here.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pgvector.sqlalchemy import HALFVEC
from sqlalchemy import BindParameter, ColumnElement, Engine, bindparam, cast, text
from sqlalchemy.exc import DBAPIError

from clipseek.errors import ClipSeekError
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
              ef_construction: int = HNSW_EF_CONSTRUCTION, name: str | None = None) -> str:
    """The CREATE INDEX statement of `model`'s index (CONCURRENTLY: searches and writes go on)."""
    how = "CONCURRENTLY " if concurrently else ""
    return (f"CREATE INDEX {how}IF NOT EXISTS {name or index_name(model)} ON embeddings USING hnsw "
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


@dataclass(frozen=True)
class IndexGraph:
    """A model's HNSW index as it stands: its graph's parameters, its size, whether it is usable."""

    name: str
    m: int
    ef_construction: int
    size_bytes: int
    valid: bool


def index_graph(engine: Engine, model: str) -> IndexGraph | None:
    """`model`'s index with the parameters it was built with (None: it has no index)."""
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT c.reloptions, pg_relation_size(c.oid), i.indisvalid FROM pg_class c "
            "JOIN pg_index i ON i.indexrelid = c.oid WHERE c.relname = :name"),
            {"name": index_name(model)}).first()
    if row is None:
        return None
    # pgvector's defaults apply to any parameter the index was built without.
    options = dict(item.split("=", 1) for item in (row[0] or []))
    return IndexGraph(name=index_name(model), m=int(options.get("m", 16)),
                      ef_construction=int(options.get("ef_construction", 64)),
                      size_bytes=int(row[1]), valid=bool(row[2]))


# pgvector's limits on the graph (m 2-100, ef_construction 4-1000, at least 2m).
MAX_M = 100
MAX_EF_CONSTRUCTION = 1000


def check_graph(m: int, ef_construction: int) -> None:
    """Refuse graph parameters pgvector would refuse, in a sentence rather than its error."""
    if not 2 <= m <= MAX_M:
        raise ClipSeekError(f"m must be between 2 and {MAX_M}, not {m}.")
    if not 4 <= ef_construction <= MAX_EF_CONSTRUCTION:
        raise ClipSeekError(f"ef_construction must be between 4 and {MAX_EF_CONSTRUCTION}, "
                            f"not {ef_construction}.")
    if ef_construction < 2 * m:
        raise ClipSeekError(f"ef_construction must be at least twice m ({2 * m}), not {ef_construction}.")


def rebuild_index(engine: Engine, model: str, dim: int, *, m: int, ef_construction: int,
                  progress: Callable[[str, int, int | None], None] | None = None,
                  memory: str | None = None, poll_s: float = 1.0) -> IndexGraph:
    """Build `model`'s index again with another graph, while searches go on using the old one.

    The new graph is built CONCURRENTLY under a second name; only then is the old index
    dropped (CONCURRENTLY) and the new one renamed, so that at every moment a search finds
    a valid index. `progress(phase, done, total)` is told how the build goes, from
    PostgreSQL's pg_stat_progress_create_index, every `poll_s` seconds. `memory` sets
    maintenance_work_mem for the build ('2GB'): a graph that outgrows it is finished on disk,
    many times slower.
    """
    check_graph(m, ef_construction)
    final = index_name(model)
    building = _building_name(model)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # A rebuild interrupted before its swap leaves its half-built index: start afresh.
        conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {building}"))
        builder = int(conn.scalar(text("SELECT pg_backend_pid()")) or 0)
        if memory is not None:
            try:
                conn.execute(text("SELECT set_config('maintenance_work_mem', :v, false)"), {"v": memory})
            except DBAPIError as exc:
                raise ClipSeekError(f"PostgreSQL refused maintenance_work_mem {memory!r}: "
                                    f"{str(exc.orig).splitlines()[0]}") from exc
        failed: list[BaseException] = []
        statement = index_sql(model, dim, concurrently=True, m=m, ef_construction=ef_construction,
                              name=building)

        def build() -> None:
            try:
                with BlockerReport(engine, builder, what=f"Rebuilding the search index of {model}"):
                    conn.execute(text(statement))
            except BaseException as exc:  # handed to the calling thread below
                failed.append(exc)

        thread = threading.Thread(target=build, name="index-rebuild", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(poll_s)
            if progress is not None and thread.is_alive():
                _report_build(engine, builder, progress)
        if failed:
            conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {building}"))
            raise failed[0]
        conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {final}"))
        conn.execute(text(f"ALTER INDEX {building} RENAME TO {final}"))
    graph = index_graph(engine, model)
    assert graph is not None
    return graph


def _building_name(model: str) -> str:
    """The name a rebuilt index has until it replaces the old one (within 63 bytes)."""
    return INDEX_PREFIX + "new_" + index_name(model)[len(INDEX_PREFIX) + 4:]


def _report_build(engine: Engine, builder: int,
                  progress: Callable[[str, int, int | None], None]) -> None:
    """Tell `progress` the phase of the CREATE INDEX running in backend `builder`."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT phase, tuples_done, tuples_total, blocks_done, blocks_total "
                                "FROM pg_stat_progress_create_index WHERE pid = :pid"),
                           {"pid": builder}).first()
    if row is None:
        return
    phase, tuples_done, tuples_total, blocks_done, blocks_total = row
    if tuples_total:
        progress(str(phase), int(tuples_done or 0), int(tuples_total))
    elif blocks_total:
        progress(str(phase), int(blocks_done or 0), int(blocks_total))
    else:
        progress(str(phase), int(tuples_done or 0), None)


def drop_index(engine: Engine, model: str) -> None:
    """Drop `model`'s index without blocking searches of the other models."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {index_name(model)}"))


def include_in_autogenerate(obj: object, name: str | None, type_: str, reflected: bool,
                            compare_to: object | None) -> bool:
    """Alembic's filter: the per-model indexes are made at run time, not by migrations."""
    return not (type_ == "index" and reflected and compare_to is None
                and (name or "").startswith(INDEX_PREFIX))
