"""Searching the stored images: by text, example or stored image, fused with caption text, filtered."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy import Select, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from clipseek.clip.encoder import Encoder, is_random_model
from clipseek.errors import BadQuery
from clipseek.library.captions import listed
from clipseek.search import sql as search_sql
from clipseek.search.examples import example_vector, image_vector
from clipseek.search.page_cache import PageCache, library_position
from clipseek.search.query import MAX_PAGE as MAX_PAGE  # re-exported: the web app's paging reads them here
from clipseek.search.query import MAX_PER_PAGE as MAX_PER_PAGE
from clipseek.search.query import MAX_QUERY_CHARS, Filters, Mode, SearchRequest, Sort, Term
from clipseek.search.query_vectors import text_vectors
from clipseek.settings import DEFAULT_EF_SEARCH
from clipseek.store.tables import Caption, Embedding, Image
from clipseek.store.vector_indexes import distance_to, of_model

# pgvector caps hnsw.ef_search at 1000; iterative scans reach further pages beyond it.
MAX_EF_SEARCH = 1000
# A filter that keeps fewer embedded images than this is searched by an exact scan of those
# images: at this size it costs a few milliseconds and cannot miss (bench/filtered.py).
EXACT_BELOW = 2_000
# So is a filter that keeps at most this share of the images the model can rank: the scan's
# cost grows with the images kept, the index walk's with the share dropped (its ef_search is
# widened in proportion). At 118,000 images a filter keeping 10% took 2.0x the numpy floor
# by the exact scan (recall 1.0) and 5x by the walk (recall 0.94); one keeping 50% took 1.7x
# by the walk (recall 0.99) and 3.3-4.9x by the scan (bench/filtered.py).
EXACT_SHARE = 0.2
# Counts of matches stop here ("1,000+"): counting further costs as much as ranking everything.
COUNT_CAP = 1_000
# The images a filter keeps are counted up to here ("10,000+"); counting is what decides
# between the exact scan and the index, and a broad filter reaches the cap within a few ms.
CANDIDATE_CAP = 10_000
# How deep each list of a hybrid search goes before fusion.
HYBRID_DEPTH = 200


@dataclass(frozen=True)
class SearchHit:
    """One ranked image; `rank` counts from 1 across pages."""

    rank: int
    image_id: int
    path: str
    # Cosine similarity (semantic, hybrid), caption text rank (text), None when browsing.
    score: float | None
    captions: list[str]
    width: int | None
    height: int | None
    source: str
    # The file's name as it arrived (an upload's stored path names only its content hash).
    name: str = ""


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
    mode: str = Mode.SEMANTIC.value
    sort: str = Sort.RELEVANCE.value
    filters: dict[str, object] = field(default_factory=dict)
    # Matches below the cutoff, left out unless asked for (the count may be capped, see below).
    hidden: int = 0
    cutoff: float | None = None
    # True when `total` (or `hidden`) counted up to a cap and stopped: "1,000+".
    total_capped: bool = False
    hidden_capped: bool = False
    # How the CLIP ranking was found: "index" (HNSW walk) or "exact" (a scan of the kept rows).
    scan: str | None = None
    # The request's parameters, so that links to other pages repeat it.
    params: dict[str, str] = field(default_factory=dict)
    # How many images the model can rank (count_searchable), where the search counted them
    # anyway; None where it did not, so that a page needing the number counts it itself.
    searchable: int | None = None

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
            "total_capped": self.total_capped,
            "mode": self.mode,
            "sort": self.sort,
            "filters": self.filters,
            "cutoff": None if self.cutoff is None else round(self.cutoff, 6),
            "hidden": self.hidden,
            "hidden_capped": self.hidden_capped,
            "scan": self.scan,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "results": [
                {"rank": h.rank, "image_id": h.image_id,
                 "path": h.path, "score": None if h.score is None else round(h.score, 6),
                 "captions": h.captions,
                 "width": h.width, "height": h.height, "source": h.source}
                for h in self.hits
            ],
        }


# Pages of results, by request and library position (page_cache.py): one per process.
PAGES: PageCache[SearchPage] = PageCache()


def _encoding(encoder: Encoder) -> tuple[object, ...]:
    """What decides a query's vector besides its text: the model and the precisions it runs in."""
    choice = getattr(encoder, "precision_choice", None)
    return (encoder.model_id, getattr(encoder, "precision", None), getattr(choice, "query_precision", None))


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
    distance = distance_to(vector)
    statement = select(Embedding.image_id, distance.label("distance")).where(
        of_model(model), Embedding.image_id.not_in(search_sql.hidden_ids()))
    if exclude_id is not None:
        statement = statement.where(Embedding.image_id != exclude_id)
    rows = session.execute(statement.order_by(distance).limit(per_page).offset(offset)).all()
    total = count_searchable(session, model)
    if exclude_id is not None and total:
        total -= 1
    return [(row.image_id, 1.0 - float(row.distance)) for row in rows], total


def count_searchable(session: Session, model: str) -> int:
    """How many images in the library have an embedding from `model` and a file (the number a
    search ranks); one statement: every results page asks."""
    return int(session.scalar(select(search_sql.searchable_count(model))) or 0)


@functools.cache
def _hit_columns() -> Select[Any]:
    """The columns a hit shows, captions included, of the images with the ids bound as "ids"."""
    # Every results page runs this: one statement rather than whole Image objects and a second
    # query for their captions, built once. Words read in the picture and its place are
    # searched, but are no caption to show.
    captions = (select(func.array_agg(aggregate_order_by(Caption.text, Caption.id)))
                .where(Caption.image_id == Image.id, listed()).scalar_subquery())
    return select(Image.id, Image.path, Image.width, Image.height, Image.source, Image.original_name,
                  captions.label("captions")).where(Image.id.in_(bindparam("ids", expanding=True)))


def hydrate(session: Session, ranked: Sequence[tuple[int, float | None]], *,
            first_rank: int = 1) -> list[SearchHit]:
    """Attach ranks, paths, sizes and captions to ranked ids, keeping their order."""
    ids = [image_id for image_id, _ in ranked]
    if not ids:
        return []
    images = {row.id: row for row in session.execute(_hit_columns(), {"ids": ids})}
    present = [(i, score) for i, score in ranked if i in images]
    return [
        SearchHit(rank=first_rank + n, image_id=i, path=images[i].path, score=score,
                  captions=list(images[i].captions or ()), width=images[i].width,
                  height=images[i].height, source=images[i].source, name=images[i].original_name)
        for n, (i, score) in enumerate(present)
    ]


def search_images(
    session: Session, encoder: Encoder, query: str, *, page: int = 1, per_page: int = 10,
    ef_search: int = DEFAULT_EF_SEARCH, mode: Mode | None = None,
) -> SearchPage:
    """Embed a text query and return one page of the images that match it best."""
    cleaned = check_query(query)
    check_paging(page, per_page)
    request = SearchRequest(query=cleaned, terms=(Term(cleaned),), mode=mode, page=page,
                            per_page=per_page)
    return run_search(session, encoder, request, ef_search=ef_search)


def run_search(session: Session, encoder: Encoder, request: SearchRequest, *,
               ef_search: int = DEFAULT_EF_SEARCH, vector: np.ndarray | None = None,
               texts_session: Session | None = None) -> SearchPage:
    """Answer one search request: rank (or browse), filter, cut off and page, in one statement.

    `vector` stands in for the request's own query embedding (the benchmarks plant one).
    `texts_session` keeps the query's texts (query_embeddings) where `session` cannot write:
    a search read on a replica keeps them on the primary. The caller commits both.
    """
    check_paging(request.page, request.per_page)
    started = time.perf_counter()
    key: tuple[object, ...] | None = None
    if vector is None:
        # A page already ranked while the library stood where it stands now is that page again
        # (page_cache.py says why the position proves it): a repeated query, or a page
        # revisited, costs one round trip instead of encoding, ranking and hydrating.
        position = library_position(session)
        if position is not None:
            key = (*_encoding(encoder), ef_search, request, position)
            kept = PAGES.get(key)
            if kept is not None:
                kept.timings_ms = {"encode": 0.0, "query": (time.perf_counter() - started) * 1000}
                return kept
    # A search writes nothing but its texts: their commit need not wait for the disk.
    result, ranked, encode_ms = _rank(session, encoder, request, ef_search=ef_search, vector=vector,
                                      texts_session=texts_session, lazy_texts=True)
    result.hits = hydrate(session, ranked, first_rank=(request.page - 1) * request.per_page + 1)
    result.timings_ms = {"encode": encode_ms,
                         "query": (time.perf_counter() - started) * 1000 - encode_ms}
    if key is not None:
        PAGES.put(key, result)
    return result


def all_matches(session: Session, encoder: Encoder, request: SearchRequest, *, limit: int,
                ef_search: int = DEFAULT_EF_SEARCH) -> list[int]:
    """The ids of every match of a request, all its pages at once, in its order.

    What its pages count as matches (`total`); BadQuery when they are more than `limit`, or
    counted only up to a cap, so that acting on "all matches" never acts on a guess.
    """
    whole = replace(request, page=1, per_page=limit)
    result, ranked, _ = _rank(session, encoder, whole, ef_search=ef_search)
    if result.total > limit or result.total_capped:
        total = f"{result.total:,}{'+' if result.total_capped else ''}"
        raise BadQuery(f"The search has {total} matches; act on at most {limit:,} at once: narrow it "
                       "with words or filters.")
    return [image_id for image_id, _ in ranked]


@dataclass(frozen=True)
class _Facts:
    """What a vector search reads before it ranks (search_sql.search_facts), and the
    ef_search that statement set for the walk."""

    captions: bool
    searchable: int
    cutoff: float | None
    walk_ef: int


def _rank(session: Session, encoder: Encoder, request: SearchRequest, *, ef_search: int,
          vector: np.ndarray | None = None, texts_session: Session | None = None,
          lazy_texts: bool = False) -> tuple[SearchPage, list[tuple[int, float | None]], float]:
    """The request's page as ranked ids (not yet hydrated), and the milliseconds its embedding took."""
    model = encoder.model_id
    started = time.perf_counter()
    if vector is None and not request.browsing:
        vector = query_vector(session, encoder, request, texts_session=texts_session,
                              lazy_texts=lazy_texts)
    encoded = time.perf_counter()
    facts = None
    if vector is not None and request.mode is not Mode.TEXT:
        facts = _facts(session, request, model=model, ef_search=ef_search)
    mode = _mode(session, request, facts)
    offset = (request.page - 1) * request.per_page
    result = SearchPage(query=_label(request), model=model, page=request.page,
                        per_page=request.per_page, total=0, hits=[], mode=mode.value,
                        sort=request.sort.value, filters=request.filters.to_dict(),
                        params=request.params())
    if vector is None and mode is not Mode.TEXT:
        statement = search_sql.browse_page(request.filters, offset=offset, limit=request.per_page,
                                           cap=CANDIDATE_CAP)
        result.mode = "browse"
        rows = session.execute(statement).all()
        result.total, result.total_capped = rows[0].ranked, rows[0].ranked >= CANDIDATE_CAP
    else:
        rows = _ranked_rows(session, request, vector, mode, result, facts, offset=offset,
                            ef_search=ef_search)
    ranked = [(row.image_id, row.score) for row in rows if row.image_id is not None]
    return result, ranked, (encoded - started) * 1000


def _window(request: SearchRequest, *, cutoff: bool) -> int:
    """How many ranked images a request needs: its pages so far, or, where the matches must be
    one fixed set for every page (a cutoff, or date order), the count's cap."""
    window = request.page * request.per_page
    return max(window, COUNT_CAP) if cutoff or request.sort is Sort.DATE else window


def _facts(session: Session, request: SearchRequest, *, model: str, ef_search: int) -> _Facts:
    # The walk's ef_search is set in the same statement, for the semantic search it most
    # likely is; _ranked_rows sets it again where the search turns out otherwise.
    cut_if_stored = request.min_score is None and not request.show_all
    plain = _walk_ef(_window(request, cutoff=request.min_score is not None), ef_search)
    cut = _walk_ef(_window(request, cutoff=request.min_score is not None or cut_if_stored), ef_search)
    row = session.execute(search_sql.search_facts(model, ef_search=plain, ef_search_cut=cut)).one()
    return _Facts(captions=bool(row.captions), searchable=int(row.searchable or 0), cutoff=row.cutoff,
                  walk_ef=int(row.ef_search))


def _ranked_rows(session: Session, request: SearchRequest, vector: np.ndarray | None, mode: Mode,
                 result: SearchPage, facts: _Facts | None, *, offset: int,
                 ef_search: int) -> Sequence[Any]:
    filters, model = request.filters, result.model
    exclude = request.like  # "more like this" never offers the picture itself
    words = text_words(request.terms)
    if mode is not Mode.SEMANTIC and not words:
        raise BadQuery(f"The {mode.value} mode searches caption words: type some words, "
                       "or choose the semantic mode.")
    if mode is Mode.TEXT:
        if session.scalar(search_sql.only_stop_words(words)):
            raise BadQuery("The query has only common words such as 'the' or 'of', which captions "
                           "are not searched for; add a word that describes the pictures.")
        statement = search_sql.page_of(search_sql.text_ranking(words, filters, depth=None,
                                                               exclude=exclude), cutoff=None,
                                       sort=request.sort, offset=offset, limit=request.per_page)
        rows = session.execute(statement).all()
        result.total = rows[0].matches
        return rows
    assert vector is not None
    if facts is None:  # a vector search in the text mode's place (mode=text without words fails above)
        facts = _facts(session, request, model=model, ef_search=ef_search)
    result.searchable = facts.searchable
    exact = False
    if filters.active:
        candidates = int(session.scalar(search_sql.count_candidates(
            filters, cap=CANDIDATE_CAP, exclude=exclude)) or 0)
        # Past the count's cap the planner's estimate says how many are kept.
        kept = candidates if candidates < CANDIDATE_CAP else _estimated_kept(session, filters)
        exact = candidates < EXACT_BELOW or kept <= facts.searchable * EXACT_SHARE
    else:
        candidates = facts.searchable
        if exclude is not None:
            candidates = max(0, candidates - 1)
    cutoff = request.min_score
    if cutoff is None and not request.show_all:
        cutoff = facts.cutoff
    result.cutoff = cutoff
    window = _window(request, cutoff=cutoff is not None)
    result.scan = "exact" if exact else "index"
    depth = max(window, HYBRID_DEPTH) if mode is Mode.HYBRID else window
    if not exact:
        if filters.active:
            # The walk passes over the images a filter drops: widen it in proportion, so that
            # about as many kept images are compared as an unfiltered search compares. Left at
            # the default, a filter keeping 10% of 118,000 images had recall@10 0.77
            # (bench/filtered.py).
            searchable = max(kept, facts.searchable)
            ef_search = round(ef_search * searchable / max(kept, 1))
        if _walk_ef(depth, ef_search) != facts.walk_ef:
            _walk_index(session, depth, ef_search)
    statement = search_sql.ranking_statement(model=model, dim=int(vector.shape[-1]), filters=filters,
                                             exact=exact, exclude=exclude, hybrid=mode is Mode.HYBRID,
                                             sort=request.sort, with_cutoff=cutoff is not None)
    rows = session.execute(statement, {
        search_sql.QUERY_VECTOR: vector, search_sql.DEPTH: depth, search_sql.PAGE_OFFSET: offset,
        search_sql.PAGE_LIMIT: request.per_page, search_sql.CUTOFF: cutoff, search_sql.WORDS: words,
    }).all()
    matches, seen = rows[0].matches, rows[0].ranked
    if cutoff is None and request.sort is Sort.RELEVANCE:
        result.total, result.total_capped = candidates, candidates >= CANDIDATE_CAP
    else:
        result.total = min(matches, window)
        result.total_capped = matches >= window and seen >= depth
    if cutoff is not None:
        result.hidden = max(0, candidates - matches)
        result.hidden_capped = candidates >= CANDIDATE_CAP or result.total_capped
    return rows


def _estimated_kept(session: Session, filters: Filters) -> int:
    """The planner's estimate of how many indexed images the filters keep (costs no scan)."""
    compiled = search_sql.kept_images(filters).compile(
        dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True})
    # The statement's own bound parameters, passed to the driver as they are: no value is
    # ever written into the SQL text.
    plan = session.connection().exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}",
                                                compiled.params).scalar_one()
    return max(1, int(plan[0]["Plan"]["Plan Rows"]))


def _walk_ef(depth: int, ef_search: int) -> int:
    """The walk's ef_search for `depth` ranked images: never fewer candidates than the depth."""
    return min(MAX_EF_SEARCH, max(ef_search, depth + 1))


def _walk_index(session: Session, depth: int, ef_search: int) -> None:
    # Transaction-local settings (is_local=true), so pooled connections stay clean. Iterative
    # scans keep filters (and the model column) from emptying a page; strict order keeps the
    # ranking exact in the order the index returns it.
    session.execute(text("SELECT set_config('hnsw.ef_search', :ef, true), "
                         "set_config('hnsw.iterative_scan', 'strict_order', true)"),
                    {"ef": str(_walk_ef(depth, ef_search))})


def _mode(session: Session, request: SearchRequest, facts: _Facts | None) -> Mode:
    if request.mode is not None:
        if request.mode is not Mode.SEMANTIC and not request.terms:
            raise BadQuery(f"The {request.mode.value} mode searches caption words: type some words "
                           "to look for, or choose the semantic mode.")
        return request.mode
    # Caption words join in only where something is asked for, not merely taken away.
    if any(t.sign > 0 for t in request.terms) and (
            facts.captions if facts is not None else session.scalar(search_sql.any_captions())):
        return Mode.HYBRID
    return Mode.SEMANTIC


def text_words(terms: Sequence[Term]) -> str:
    """A combined query as web-search syntax for the captions: added terms required, others excluded."""
    parts = []
    for term in terms:
        if term.sign > 0:
            parts.append(term.text)
        else:
            parts.append("-" + (term.text if term.text.startswith('"') else f'"{term.text}"'))
    return " ".join(parts)


def query_vector(session: Session, encoder: Encoder, request: SearchRequest, *,
                 texts_session: Session | None = None, lazy_texts: bool = False) -> np.ndarray:
    """The request's query embedding: the example or image, plus and minus each text term.

    The texts' vectors are read and kept through `texts_session` when given (the primary,
    where `session` reads on a replica); `lazy_texts`: see text_vectors' `lazy`.
    """
    model = encoder.model_id
    total = np.zeros(0, dtype=np.float32)
    if request.example is not None:
        total = example_vector(session, request.example, model=model)
    elif request.like is not None:
        total = image_vector(session, request.like, model=model)
    if request.terms:
        texts = text_vectors(texts_session or session, encoder,
                             [t.text.strip('"') or t.text for t in request.terms], lazy=lazy_texts)
        signs = np.array([t.sign for t in request.terms], dtype=np.float32)[:, None]
        combined = (texts * signs).sum(axis=0)
        total = combined if total.size == 0 else total / np.linalg.norm(total) + combined
    norm = float(np.linalg.norm(total))
    if norm < 1e-3:
        raise BadQuery("Nothing is left of the query once its parts are taken away from each "
                       "other; remove a '-' term.")
    return (total / norm).astype(np.float32)


def _label(request: SearchRequest) -> str:
    if request.example is not None:
        return "pictures like the example" + (f" {request.query}" if request.query else "")
    if request.like is not None:
        return f"pictures like image {request.like}" + (f" {request.query}" if request.query else "")
    return request.query


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
