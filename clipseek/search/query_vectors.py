"""A text's vector under a model, encoded once: from memory, else from `query_embeddings`, else encoded.

Each text searched is kept in `query_embeddings` (so SQL can rank by it, and so no process
encodes it again); its `last_used_at` says when it was last asked for, so unused texts can go
after a week, except those kept on purpose (`clipseek embed --store`). A process also keeps
its recent vectors in memory, and writes a remembered text's use at most once a minute.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from pgvector.sqlalchemy import HALFVEC
from sqlalchemy import Executable, bindparam, delete, func, or_, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from clipseek.clip.encoder import Encoder
from clipseek.errors import BadQuery
from clipseek.store.tables import QueryEmbedding, table_of
from clipseek.util.lru import BoundedLRU

# Searched texts unused this long are pruned, as example pictures are.
KEEP_FOR = timedelta(days=7)
# A remembered text's use is written at most this often per process: pruning counts in days.
TOUCH_EVERY_S = 60.0
# Unused texts are pruned at most this often per process and database: a prune per new
# text was a round trip in each new search, for rows that age in days.
PRUNE_EVERY_S = 600.0
# Vectors remembered per process (2 KiB each at 512 dimensions).
REMEMBERED = 2048
# Texts longer than this in UTF-8 are encoded each time and not kept: the primary key's
# B-tree refuses entries over about 2,700 bytes (a 1,000-character query in Chinese is 3,000).
MAX_KEPT_BYTES = 2000


@dataclass
class _Remembered:
    vector: np.ndarray
    touched: float


class RecentQueryVectors:
    """The latest query vectors a process used, per database and model (least recent first)."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self._entries: BoundedLRU[tuple[str, str, str], _Remembered] = BoundedLRU(size)

    def get(self, key: tuple[str, str, str]) -> _Remembered | None:
        """The remembered entry for `key`, now the most recent; None if forgotten."""
        return self._entries.get(key)

    def put(self, key: tuple[str, str, str], vector: np.ndarray, touched: float) -> None:
        """Remember `vector`, written to the table at `touched` (monotonic seconds)."""
        self._entries.put(key, _Remembered(vector, touched))

    def clear(self) -> None:
        """Forget everything (the next use of each text reads the table)."""
        self._entries.clear()


# The one per process: an empty mapping until the first search (nothing is built on import).
recent_query_vectors = RecentQueryVectors()
# When this process last pruned each database's unused texts (monotonic seconds).
_pruned_at: dict[str, float] = {}


def normalise_text(raw: str) -> str:
    """A text as it is kept: runs of white space as one space, none at either end."""
    return " ".join(raw.split())


def _database(session: Session) -> str:
    # Vectors belong to a database (tests, and a process that opens another, use several).
    return str(session.get_bind().engine.url)


def text_vectors(session: Session, encoder: Encoder, texts: Sequence[str], *,
                 keep: bool = False, lazy: bool = False) -> np.ndarray:
    """The encoder's model's vectors of `texts` (normalised first), one row each, in order.

    Texts this process used lately cost nothing; texts in `query_embeddings` cost one read;
    only the others are encoded, all at once. Each is written to `query_embeddings` (new, or
    its use) in one statement; `keep` marks them kept for good. The caller commits; `lazy`
    says its transaction writes nothing else that must outlive a crash (a search), so that
    commit need not wait for the disk.
    """
    model, database = encoder.model_id, _database(session)
    wanted = [normalise_text(t) for t in texts]
    now = time.monotonic()
    found: dict[str, np.ndarray] = {}
    stale: set[str] = set()
    for text in dict.fromkeys(wanted):
        remembered = recent_query_vectors.get((database, model, text))
        if remembered is None:
            continue
        found[text] = remembered.vector
        if keep or now - remembered.touched >= TOUCH_EVERY_S:
            stale.add(text)
    missing = sorted(t for t in set(wanted) - found.keys() if len(t.encode()) <= MAX_KEPT_BYTES)
    unkept = sorted(t for t in set(wanted) - found.keys() if len(t.encode()) > MAX_KEPT_BYTES)
    if unkept:
        found.update(zip(unkept, _encoded(encoder, unkept), strict=True))
    if missing:
        # One statement reads them and writes their use; sorted, as every write here is, so
        # two searches of the same texts cannot deadlock.
        # Through the table, not the ORM class: the ORM's bulk update costs a millisecond more.
        table = table_of(QueryEmbedding)
        rows = session.execute(
            update(table)
            .where(tuple_(table.c.model, table.c.text).in_([(model, t) for t in missing]))
            .values({"last_used_at": func.now()} | ({"kept": True} if keep else {}))
            .returning(table.c.text, table.c.embedding)).all()
        for row in rows:
            found[row.text] = np.asarray(row.embedding, dtype=np.float32)
        unknown = [t for t in missing if t not in found]
        if unknown:
            found.update(zip(unknown, _encoded(encoder, unknown), strict=True))
            stale.update(unknown)
            if now - _pruned_at.get(database, -PRUNE_EVERY_S) >= PRUNE_EVERY_S:
                _pruned_at[database] = now
                _prune(session)
    if stale:
        _write(session, model, {t: found[t] for t in sorted(stale)}, keep=keep, lazy=lazy and not keep)
    for text in stale | set(missing):  # each one just written
        recent_query_vectors.put((database, model, text), found[text], now)
    return np.stack([found[t] for t in wanted]) if wanted else np.zeros((0, encoder.dim), np.float32)


def _encoded(encoder: Encoder, texts: list[str]) -> list[np.ndarray]:
    # Rounded as the table keeps them (halfvec), so a first search ranks as every later one.
    return [np.asarray(v, dtype=np.float16).astype(np.float32) for v in encoder.encode_texts(texts)]


@functools.cache
def _upsert(*, lazy: bool) -> Executable:
    """The statement that stores one text (bound parameters), built once.

    Through the table, not the ORM class, and built once: the ORM's bulk insert built and
    compiled a new statement each time, 2-3 ms of a new search's 15.
    """
    table = table_of(QueryEmbedding)
    statement = insert(table).values(model=bindparam("model"), text=bindparam("text"),
                                     embedding=bindparam("embedding", type_=HALFVEC()),
                                     kept=bindparam("kept"))
    upsert = statement.on_conflict_do_update(
        index_elements=[table.c.model, table.c.text],
        set_={"last_used_at": func.now(), "kept": or_(table.c.kept, statement.excluded.kept)})
    # The rows are a cache: a search's commit need not wait for the disk for them (0.5 ms of
    # a new search; a crash loses at most the last few, encoded again when next asked).
    # RETURNING evaluates the setting, once per row, in this statement. Never where the
    # transaction writes more (a bulk action on every match of a search).
    return upsert.returning(func.set_config("synchronous_commit", "off", True)) if lazy else upsert


def _write(session: Session, model: str, vectors: dict[str, np.ndarray], *, keep: bool,
           lazy: bool) -> None:
    """Insert the texts, or mark their use (and `keep`) where another process stored them first."""
    statement = _upsert(lazy=lazy)
    for text, vector in vectors.items():  # sorted by the caller: no deadlock between two searches
        session.execute(statement, {"model": model, "text": text, "embedding": vector, "kept": keep})


def _prune(session: Session) -> None:
    """Delete the searched texts unused for a week (by the index on their last use)."""
    session.execute(delete(QueryEmbedding).where(
        QueryEmbedding.last_used_at < func.now() - KEEP_FOR, ~QueryEmbedding.kept))


def parse_embedding(raw: object, *, dim: int, model: str) -> np.ndarray:
    """A query vector sent in place of a text: `dim` finite numbers, not all zero; L2-normalised.

    BadQuery says what is wrong, so that a vector of another model is never ranked.
    """
    if not isinstance(raw, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in raw):
        raise BadQuery("The embedding must be a list of numbers, as GET /api/embed returns it.")
    if len(raw) != dim:
        raise BadQuery(f"The embedding has {len(raw)} numbers, but the active model {model} makes "
                       f"vectors of {dim}: embed the text with it (GET /api/embed?q=...).")
    try:
        with np.errstate(over="ignore"):
            vector = np.asarray(raw, dtype=np.float32)
            norm = float(np.linalg.norm(vector)) if np.isfinite(vector).all() else float("nan")
    except OverflowError:  # a whole number too large for any float
        norm = float("nan")
    if not np.isfinite(norm) or norm < 1e-6:
        raise BadQuery("The embedding must be finite numbers, not all zero.")
    # Normalised as a text query's vector is (clipseek.search.run.query_vector): the same
    # numbers rank exactly as the text does.
    return (vector / norm).astype(np.float32)
