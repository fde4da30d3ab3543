"""Ranking stored images against a query vector with pgvector's cosine distance."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from clipseek.encoder import Encoder, is_random_model
from clipseek.errors import BadQuery
from clipseek.models import Caption, Embedding, EmbeddingCount, Image, ImageStatus
from clipseek.settings import DEFAULT_EF_SEARCH

MAX_QUERY_CHARS = 1000
MAX_PER_PAGE = 100
# Nobody reads further, and it keeps the row offset far inside PostgreSQL's bigint.
MAX_PAGE = 100_000
# pgvector caps hnsw.ef_search at 1000; iterative scans reach further pages beyond it.
MAX_EF_SEARCH = 1000


@dataclass(frozen=True)
class SearchHit:
    """One ranked image; `rank` counts from 1 across pages."""

    rank: int
    image_id: int
    path: str
    score: float
    captions: list[str]
    width: int | None
    height: int | None
    source: str


@dataclass
class SearchPage:
    """One page of ranked results and what it cost."""

    query: str
    model: str
    page: int
    per_page: int
    total: int
    hits: list[SearchHit]
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def meaningless(self) -> bool:
        """True when the model has random weights, so the ranking says nothing."""
        return is_random_model(self.model)

    @property
    def pages(self) -> int:
        """How many pages the whole ranking has."""
        return max(1, -(-self.total // self.per_page))

    def to_dict(self) -> dict[str, object]:
        """The JSON form used by the CLI and the API."""
        return {
            "query": self.query,
            "model": self.model,
            "random_weights": self.meaningless,
            "page": self.page,
            "per_page": self.per_page,
            "pages": self.pages,
            "total": self.total,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "results": [
                {"rank": h.rank, "image_id": h.image_id,
                 "path": h.path, "score": round(h.score, 6), "captions": h.captions,
                 "width": h.width, "height": h.height, "source": h.source}
                for h in self.hits
            ],
        }


def check_query(query: str) -> str:
    """Return the cleaned query, or raise BadQuery with what to change."""
    cleaned = " ".join(query.split())
    if not cleaned:
        raise BadQuery("Type a description of the pictures you are looking for.")
    if len(cleaned) > MAX_QUERY_CHARS:
        raise BadQuery(f"The query is {len(cleaned)} characters long; keep it under "
                       f"{MAX_QUERY_CHARS} (CLIP reads only about the first 60 words anyway).")
    return cleaned


def check_paging(page: int, per_page: int) -> None:
    """Raise BadQuery for page numbers or sizes ClipSeek does not serve."""
    if not 1 <= page <= MAX_PAGE:
        raise BadQuery(f"Pages are numbered from 1 to {MAX_PAGE:,}.")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise BadQuery(f"Ask for between 1 and {MAX_PER_PAGE} results per page.")


def rank_by_vector(
    session: Session,
    vector: np.ndarray,
    *,
    model: str,
    page: int = 1,
    per_page: int = 10,
    exclude_id: int | None = None,
    ef_search: int = DEFAULT_EF_SEARCH,
) -> tuple[list[tuple[int, float]], int]:
    """Return (image id, score) for one page, best first, and how many images were ranked.

    The score is the cosine similarity, 1 - (embedding <=> query).
    """
    check_paging(page, per_page)
    offset = (page - 1) * per_page
    ef = min(MAX_EF_SEARCH, max(ef_search, offset + per_page + 1))
    # Transaction-local settings (is_local=true), so pooled connections stay clean; one round
    # trip for both. The index holds every model's vectors: iterative scans keep the model
    # filter from emptying a page.
    session.execute(text("SELECT set_config('hnsw.ef_search', :ef, true), "
                         "set_config('hnsw.iterative_scan', 'strict_order', true)"), {"ef": str(ef)})
    distance = Embedding.embedding.cosine_distance(vector)
    statement = select(Embedding.image_id, distance.label("distance")).where(
        Embedding.model == model, Embedding.image_id.not_in(_missing_ids()))
    if exclude_id is not None:
        statement = statement.where(Embedding.image_id != exclude_id)
    rows = session.execute(statement.order_by(distance).limit(per_page).offset(offset)).all()
    total = count_searchable(session, model)
    if exclude_id is not None and total:
        total -= 1
    return [(row.image_id, 1.0 - float(row.distance)) for row in rows], total


def _missing_ids() -> Select[int]:
    # Missing images keep their embeddings, so a file that comes back needs no model, but
    # no search may show them: few are missing at a time, so this set is small and hashed once.
    return select(Image.id).where(Image.status == ImageStatus.MISSING)


def count_searchable(session: Session, model: str) -> int:
    """How many images have an embedding from `model` and a file (the number a search ranks).

    The triggers' count includes missing images' embeddings; those few are counted and
    taken off rather than counting the whole table.
    """
    embedded = session.scalar(select(EmbeddingCount.images).where(EmbeddingCount.model == model)) or 0
    missing = session.scalar(select(func.count()).select_from(Embedding).where(
        Embedding.model == model, Embedding.image_id.in_(_missing_ids()))) or 0
    return int(embedded) - int(missing)


def hydrate(session: Session, ranked: list[tuple[int, float]], *, first_rank: int = 1) -> list[SearchHit]:
    """Attach ranks, paths, sizes and captions to ranked ids, keeping their order."""
    ids = [image_id for image_id, _ in ranked]
    images = {img.id: img for img in session.scalars(select(Image).where(Image.id.in_(ids)))}
    captions: dict[int, list[str]] = {}
    for image_id, caption in session.execute(
        select(Caption.image_id, Caption.text).where(Caption.image_id.in_(ids)).order_by(Caption.id)
    ):
        captions.setdefault(image_id, []).append(caption)
    present = [(i, score) for i, score in ranked if i in images]
    return [
        SearchHit(rank=first_rank + n, image_id=i, path=images[i].path, score=score,
                  captions=captions.get(i, []), width=images[i].width, height=images[i].height,
                  source=images[i].source)
        for n, (i, score) in enumerate(present)
    ]


def search_images(
    session: Session, encoder: Encoder, query: str, *, page: int = 1, per_page: int = 10,
    ef_search: int = DEFAULT_EF_SEARCH,
) -> SearchPage:
    """Embed a text query and return one page of the images that match it best."""
    cleaned = check_query(query)
    check_paging(page, per_page)
    started = time.perf_counter()
    vector = encoder.encode_texts([cleaned])[0]
    return _ranked_page(session, vector, cleaned, encoder.model_id, page, per_page,
                        encode_ms=(time.perf_counter() - started) * 1000, ef_search=ef_search)


def _ranked_page(session: Session, vector: np.ndarray, label: str, model: str, page: int,
                 per_page: int, *, encode_ms: float, ef_search: int) -> SearchPage:
    started = time.perf_counter()
    ranked, total = rank_by_vector(session, vector, model=model, page=page, per_page=per_page,
                                   ef_search=ef_search)
    hits = hydrate(session, ranked, first_rank=(page - 1) * per_page + 1)
    return SearchPage(query=label, model=model, page=page, per_page=per_page, total=total, hits=hits,
                      timings_ms={"encode": encode_ms, "query": (time.perf_counter() - started) * 1000})


def similar_images(
    session: Session, image_id: int, *, model: str, page: int = 1, per_page: int = 10,
    ef_search: int = DEFAULT_EF_SEARCH,
) -> SearchPage | None:
    """The nearest neighbours of a stored image's own embedding; None if it has none."""
    vector = session.scalar(
        select(Embedding.embedding).where(Embedding.image_id == image_id, Embedding.model == model)
    )
    if vector is None:
        return None
    started = time.perf_counter()
    ranked, total = rank_by_vector(session, np.asarray(vector, dtype=np.float32),
                                   model=model, page=page, per_page=per_page, exclude_id=image_id,
                                   ef_search=ef_search)
    hits = hydrate(session, ranked, first_rank=(page - 1) * per_page + 1)
    return SearchPage(query=f"similar to image {image_id}", model=model, page=page,
                      per_page=per_page, total=total, hits=hits,
                      timings_ms={"query": (time.perf_counter() - started) * 1000})


def search_by_image(
    session: Session, encoder: Encoder, image: PILImage.Image, *, page: int = 1, per_page: int = 10,
    ef_search: int = DEFAULT_EF_SEARCH,
) -> SearchPage:
    """Rank the stored images by similarity to an example picture (which is not stored)."""
    check_paging(page, per_page)
    started = time.perf_counter()
    vector = encoder.encode_images([image])[0]
    return _ranked_page(session, vector, "pictures like the example", encoder.model_id, page, per_page,
                        encode_ms=(time.perf_counter() - started) * 1000, ef_search=ef_search)
