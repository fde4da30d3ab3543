"""The SQL of a search: filters as conditions, and one statement per mode that ranks and counts."""

from __future__ import annotations

import functools
import unicodedata
from datetime import UTC
from typing import Any

import numpy as np
from pgvector.sqlalchemy import HALFVEC
from sqlalchemy import (
    CTE,
    BindParameter,
    ColumnElement,
    Float,
    Integer,
    Select,
    Subquery,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import TSQUERY, aggregate_order_by
from sqlalchemy.orm import InstrumentedAttribute

from clipseek.library.albums import split_album_refs
from clipseek.library.captions import listed
from clipseek.search.query import Filters, Orientation, Sort, day_after, day_start
from clipseek.store.tables import (
    DERIVED_SOURCES,
    Album,
    AlbumImage,
    Caption,
    Embedding,
    EmbeddingCount,
    Face,
    Image,
    ImageStatus,
    Person,
    ScoreCutoff,
    in_library,
)
from clipseek.store.vector_indexes import distance_to, of_model

# Reciprocal Rank Fusion's constant, as in Cormack et al. (2009): it damps the top ranks so
# that neither list alone decides the order.
RRF_K = 60
ENGLISH: ColumnElement[Any] = literal_column("'english'::regconfig")


def shown_at() -> ColumnElement[Any]:
    """The capture time, else the time the image was added (the expression images_shown_at_idx holds)."""
    # The zone is a literal, not a bound parameter, so that the planner matches the index.
    return func.coalesce(Image.taken_at, func.timezone(literal_column("'UTC'"), Image.created_at))


def filter_conditions(filters: Filters, *, exclude: int | None = None) -> list[ColumnElement[bool]]:
    """The conditions on `images` for these filters; missing images and those in the trash are
    always left out, and so is the image `exclude` (the picture a "more like this" search starts from)."""
    out: list[ColumnElement[bool]] = [Image.status != ImageStatus.MISSING, in_library()]
    if exclude is not None:
        out.append(Image.id != exclude)
    if filters.collections:
        out.append(Image.collection.in_(filters.collections))
    if filters.albums:
        ids, names = split_album_refs(filters.albums)
        chosen = select(Album.id).where(or_(Album.id.in_(ids), func.lower(Album.name).in_(names)))
        # (An album keeps the places of its pictures in the trash, for a restore; the
        # condition above leaves those out.)
        out.append(Image.id.in_(select(AlbumImage.image_id).where(AlbumImage.album_id.in_(chosen))))
    for ref in filters.people:
        ids, names = split_album_refs([ref])
        person = select(Person.id).where(or_(Person.id.in_(ids), func.lower(Person.name).in_(names)))
        out.append(Image.id.in_(select(Face.image_id).where(Face.person_id.in_(person))))
    if filters.sources:
        out.append(Image.source.in_(filters.sources))
    if filters.folder:
        # A folder, not a string prefix: /photos/2024 must not match /photos/2024-old.
        out.append(Image.path.startswith(filters.folder.rstrip("/") + "/", autoescape=True))
    if filters.formats:
        out.append(Image.format.in_(filters.formats))
    if filters.taken_from:
        out.append(shown_at() >= day_start(filters.taken_from))
    if filters.taken_to:
        out.append(shown_at() < day_after(filters.taken_to))
    if filters.added_from:
        out.append(Image.created_at >= day_start(filters.added_from).replace(tzinfo=UTC))
    if filters.added_to:
        out.append(Image.created_at < day_after(filters.added_to).replace(tzinfo=UTC))
    if filters.place:
        # Any of the names, whatever the case and accents: place=Portugal, place=lisbon,
        # place=PT, place=Krakow for "Kraków".
        wanted = plain_name(filters.place)
        out.append(or_(*(plain_name(column) == wanted for column in (
            Image.place_city, Image.place_region, Image.place_country, Image.place_country_code))))
    width = func.coalesce(Image.display_width, Image.width)
    height = func.coalesce(Image.display_height, Image.height)
    if filters.orientation is Orientation.PORTRAIT:
        out.append(height > width)
    elif filters.orientation is Orientation.LANDSCAPE:
        out.append(width > height)
    elif filters.orientation is Orientation.SQUARE:
        out.append(width == height)
    if filters.min_width:
        out.append(width >= filters.min_width)
    if filters.min_height:
        out.append(height >= filters.min_height)
    if filters.min_megapixels:
        out.append(cast(width, Float) * height >= filters.min_megapixels * 1_000_000)
    return out


def _accent_table() -> tuple[str, str]:
    """Latin letters with accents (either case) and their plain letters, for translate()."""
    accented, plain = [], []
    for code in range(0xC0, 0x250):  # Latin-1 Supplement and Latin Extended-A and -B
        letter = chr(code)
        base = unicodedata.normalize("NFD", letter)[0]
        if base != letter and base.isascii() and base.isalpha():
            accented.append(letter)
            plain.append(base)
    # Letters with a stroke do not decompose: people type them plain all the same.
    for letter, base in ("łl", "ŁL", "øo", "ØO", "đd", "ĐD", "ħh", "ĦH", "ıi"):
        accented.append(letter)
        plain.append(base)
    return "".join(accented), "".join(plain)


_ACCENTED, _PLAIN = _accent_table()


def plain_name(name: str | ColumnElement[Any] | InstrumentedAttribute[Any]) -> ColumnElement[Any]:
    """A place name in lower case without its accents, as the place filter compares them.

    translate() first, so that lower() meets plain letters only: it lowers accented ones
    only under a locale that knows them, which a server in the C locale does not.
    """
    return func.lower(func.translate(name, _ACCENTED, _PLAIN))


@functools.lru_cache(maxsize=256)
def count_candidates(filters: Filters, *, cap: int, exclude: int | None = None) -> Select[Any]:
    """How many indexed images the filters keep, counting no further than `cap`.

    Indexed images are those with an embedding from the active model (bar the moments after a
    model change), and counting them needs no join with the embeddings. Built once per filter
    (a filtered search asks on every page).
    """
    return select(func.count()).select_from(kept_images(filters, exclude=exclude).limit(cap).subquery())


def kept_images(filters: Filters, *, exclude: int | None = None) -> Select[Any]:
    """The indexed images the filters keep (uncounted: for the planner's estimate of their number)."""
    return select(literal(1)).select_from(Image).where(Image.status == ImageStatus.INDEXED,
                                                       *filter_conditions(filters, exclude=exclude))


def semantic_ranking(vector: np.ndarray | BindParameter[Any], filters: Filters, *, model: str,
                     depth: int | BindParameter[int], exact: bool, exclude: int | None = None) -> CTE:
    """The `depth` images nearest to `vector` among those the filters keep, with their rank.

    `exact` computes every kept image's distance (for filters that keep a small share of the
    images); else the HNSW index is walked, with iterative scans filling the depth despite the
    filters. `vector` and `depth` may be bound parameters (see ranking_statement).
    """
    # Exact: "+ 0" keeps the planner from ordering through the HNSW index. A plain join (not
    # the kept ids materialised first) lets the planner run it in parallel: the kept images
    # through their own indexes, their embeddings by primary key. A filter keeping 10% of
    # 118,000 images took 2.0x the numpy floor so, against 4.4x through a materialised list
    # of ids and 5x by the index walk (bench/filtered.py).
    distance = distance_to(vector) + 0 if exact else distance_to(vector)
    nearest = (select(Embedding.image_id, distance.label("distance"))
               .join(Image, Image.id == Embedding.image_id)
               .where(of_model(model), *filter_conditions(filters, exclude=exclude))
               .order_by(distance).limit(depth).subquery("nearest"))
    # The score and the rank are computed above the LIMIT, from the distance the sort kept.
    # Computed beside it, the planner put off the score until after the sort, so each sorted
    # row carried its whole embedding (1 KB): a filter keeping 11,800 images sorted 12 MB,
    # spilling to disk.
    return select(nearest.c.image_id, (1 - nearest.c.distance).label("score"),
                  func.row_number().over(order_by=(nearest.c.distance, nearest.c.image_id))
                  .label("position")).cte("semantic")


def hidden_ids() -> Select[Any]:
    """The ids of the images no search shows although their embeddings stay: missing or in the trash."""
    # A file that comes back or a picture restored then needs no model; few are hidden at a
    # time (each side has its own index), so this set is small and hashed once.
    return select(Image.id).where((Image.status == ImageStatus.MISSING) | ~in_library())


def searchable_count(model: str) -> ColumnElement[Any]:
    """How many images in the library have an embedding from `model` and a file.

    The triggers' count includes the embeddings of missing images and of those in the
    trash; those few are counted and taken off rather than counting the whole table.
    """
    embedded = select(EmbeddingCount.images).where(EmbeddingCount.model == model).scalar_subquery()
    hidden = select(func.count()).select_from(Embedding).where(
        Embedding.model == model, Embedding.image_id.in_(hidden_ids())).scalar_subquery()
    return func.coalesce(embedded, 0) - hidden


@functools.lru_cache(maxsize=64)
def search_facts(model: str, *, ef_search: int, ef_search_cut: int) -> Select[Any]:
    """What a vector search reads before it ranks, in one statement: whether any caption is
    stored (hybrid is the default only then), how many images `model` can rank, and its
    calibrated cutoff; and the walk's settings for the transaction (is_local), so that pooled
    connections stay clean: `ef_search`, or `ef_search_cut` where the model has a cutoff (the
    matches are then counted to a deeper window), and a plan made for each ranking's values.

    One round trip instead of four: on a loaded machine each costs a wait for the CPU. Built
    once per model and settings: building it and its cache key anew took about a millisecond.
    """
    cutoff = select(ScoreCutoff.cutoff).where(ScoreCutoff.model == model).scalar_subquery()
    ef = case((cutoff.is_(None), str(ef_search)), else_=str(ef_search_cut))
    return select(any_captions().scalar_subquery().label("captions"),
                  searchable_count(model).label("searchable"), cutoff.label("cutoff"),
                  func.set_config("hnsw.ef_search", ef, True).label("ef_search"),
                  # Iterative scans keep filters (and the model column) from emptying a page;
                  # strict order keeps the ranking exact in the order the index returns it.
                  func.set_config("hnsw.iterative_scan", "strict_order", True).label("scan"),
                  # The ranking statement's vector and depth are bound parameters: a generic
                  # plan (tried once the driver prepares a statement run five times) knows
                  # neither, and at 20,000 images scanned every embedding instead of walking
                  # the index (60-77 ms a search, against a few).
                  func.set_config("plan_cache_mode", "force_custom_plan", True).label("plans"))


# The names of a ranking statement's parameters (ranking_statement).
QUERY_VECTOR, DEPTH, PAGE_OFFSET, PAGE_LIMIT, CUTOFF, WORDS = (
    "query_vector", "depth", "page_offset", "page_limit", "cutoff", "words")


@functools.lru_cache(maxsize=256)
def ranking_statement(*, model: str, dim: int, filters: Filters, exact: bool, exclude: int | None,
                      hybrid: bool, sort: Sort, with_cutoff: bool) -> Select[Any]:
    """The statement of a semantic (or hybrid) search of one shape, built once.

    What changes from one request to the next (the query vector, the depth, the page, the
    cutoff, a hybrid search's caption words) is a bound parameter named above, so a repeated
    shape costs neither building the statement nor compiling it (SQLAlchemy's cache finds
    the same statement object).
    """
    vector = bindparam(QUERY_VECTOR, type_=HALFVEC(dim))
    depth = bindparam(DEPTH, type_=Integer)
    semantic = semantic_ranking(vector, filters, model=model, depth=depth, exact=exact, exclude=exclude)
    words = bindparam(WORDS, type_=Text)
    ranking = fused_ranking(semantic, text_ranking(words, filters, depth=depth, exclude=exclude), vector,
                            model=model) if hybrid else semantic
    return page_of(ranking, cutoff=bindparam(CUTOFF, type_=Float) if with_cutoff else None, sort=sort,
                   offset=bindparam(PAGE_OFFSET, type_=Integer), limit=bindparam(PAGE_LIMIT, type_=Integer),
                   fused=hybrid)


def is_derived() -> ColumnElement[bool]:
    """Whether a caption is derived (captions_derived_words_idx's condition, so that it is used)."""
    # Constants, not bound parameters: a generic plan could not tell that the index applies.
    return Caption.source.in_([literal(source.value, literal_execute=True) for source in DERIVED_SOURCES])


def caption_documents(words: str | BindParameter[str]) -> Subquery:
    """What a text search for `words` matches: each caption by itself; and, for pictures whose
    derived captions (their place, the words read in them) hold one of the words, each of
    their other captions together with those, and those together alone.

    So "beach Lisbon" finds a picture captioned "a beach" that was taken in Lisbon. Derived
    captions describe the whole picture, so they may complete any caption of it; two captions
    that people or files gave are not joined, as each may describe another part.
    """
    # Every caption by itself: text_ranking's condition on the words reaches in here, where
    # the index on them finds the captions that hold the whole query.
    alone = select(Caption.image_id, Caption.words)
    # Any one word of the query (plainto_tsquery joins them with "&"): only derived captions
    # and captions that hold part of the query can complete each other, and the indexes find
    # those without reading the others.
    any_word = cast(func.replace(cast(func.plainto_tsquery(ENGLISH, words), Text), " & ", " | "), TSQUERY)
    touched = select(Caption.image_id).where(is_derived(), Caption.words.bool_op("@@")(any_word))
    derived = (select(Caption.image_id, func.to_tsvector(ENGLISH, func.string_agg(
                   Caption.text, aggregate_order_by(literal(" "), Caption.id))).label("words"))
               .where(is_derived(), Caption.image_id.in_(touched))
               .group_by(Caption.image_id).cte("derived"))
    completed = (select(Caption.image_id, Caption.words.op("||")(derived.c.words).label("words"))
                 .join(derived, derived.c.image_id == Caption.image_id)
                 .where(listed(), Caption.words.bool_op("@@")(any_word)))
    return union_all(alone, completed, select(derived.c.image_id, derived.c.words)).subquery("documents")


def text_ranking(words: str | BindParameter[str], filters: Filters, *, depth: int | BindParameter[int] | None,
                 exclude: int | None = None) -> CTE:
    """The images whose captions hold every word of `words` (web-search syntax), best first
    (see caption_documents for what counts as one image's captions)."""
    query = func.websearch_to_tsquery(ENGLISH, words)
    documents = caption_documents(words)
    best = func.max(func.ts_rank(documents.c.words, query))
    ranked = (select(documents.c.image_id, cast(best, Float).label("score"),
                     func.row_number().over(order_by=(best.desc(), documents.c.image_id)).label("position"))
              .join(Image, Image.id == documents.c.image_id)
              .where(documents.c.words.bool_op("@@")(query), *filter_conditions(filters, exclude=exclude))
              .group_by(documents.c.image_id).order_by(best.desc(), documents.c.image_id))
    return (ranked if depth is None else ranked.limit(depth)).cte("textual")


def fused_ranking(semantic: CTE, textual: CTE, vector: np.ndarray | BindParameter[Any], *,
                  model: str) -> CTE:
    """Reciprocal Rank Fusion of the two rankings, with each image's cosine score."""
    image_id = func.coalesce(semantic.c.image_id, textual.c.image_id)
    rrf = (func.coalesce(1.0 / (RRF_K + semantic.c.position), 0.0)
           + func.coalesce(1.0 / (RRF_K + textual.c.position), 0.0))
    joined = semantic.join(textual, semantic.c.image_id == textual.c.image_id, full=True)
    fused = (select(image_id.label("image_id"), rrf.label("fused"),
                    (textual.c.image_id.is_not(None)).label("text_match"),
                    semantic.c.score.label("semantic_score"))
             .select_from(joined).cte("fused"))
    # Text matches outside the semantic depth still get their true cosine score.
    cosine = 1 - distance_to(vector)
    return (select(fused.c.image_id, fused.c.fused, fused.c.text_match,
                   func.coalesce(fused.c.semantic_score, cosine).label("score"))
            .select_from(fused.outerjoin(Embedding, and_(Embedding.image_id == fused.c.image_id,
                                                         of_model(model))))
            .cte("scored"))


def page_of(ranking: CTE, *, cutoff: float | BindParameter[float] | None, sort: Sort,
            offset: int | BindParameter[int], limit: int | BindParameter[int],
            fused: bool = False) -> Select[Any]:
    """One page of a ranking's matches, and how many rows it had and how many match.

    Every answer has at least one row (the counts), so an empty page still says how many.
    """
    if cutoff is None:
        keep: ColumnElement[bool] = true()
    else:
        keep = ranking.c.score >= cutoff
        if fused:
            keep = or_(ranking.c.text_match, keep)
    kept = select(ranking).where(keep).cte("kept")
    counts = select(select(func.count()).select_from(ranking).scalar_subquery().label("ranked"),
                    select(func.count()).select_from(kept).scalar_subquery().label("matches")
                    ).cte("counts")
    order: list[ColumnElement[Any]]
    if sort is Sort.DATE:
        order = [shown_at().desc(), kept.c.image_id.desc()]
    elif fused:
        order = [kept.c.fused.desc(), kept.c.score.desc().nulls_last(), kept.c.image_id]
    else:
        order = [kept.c.score.desc(), kept.c.image_id]
    page = (select(kept.c.image_id, kept.c.score).join(Image, Image.id == kept.c.image_id)
            .order_by(*order).offset(offset).limit(limit).subquery().lateral("page"))
    return select(counts.c.ranked, counts.c.matches, page.c.image_id, page.c.score).select_from(
        counts.outerjoin(page, true()))


def browse_page(filters: Filters, *, offset: int, limit: int, cap: int) -> Select[Any]:
    """Indexed images newest first (capture date, else added date), with a capped count."""
    conditions = [Image.status == ImageStatus.INDEXED, *filter_conditions(filters)]
    counted = select(literal(1)).select_from(Image).where(*conditions).limit(cap).subquery()
    counts = select(select(func.count()).select_from(counted).scalar_subquery().label("ranked")
                    ).cte("counts")
    page = (select(Image.id.label("image_id"), null().label("score")).where(*conditions)
            .order_by(shown_at().desc(), Image.id.desc()).offset(offset).limit(limit)
            .subquery().lateral("page"))
    return select(counts.c.ranked, counts.c.ranked.label("matches"), page.c.image_id,
                  page.c.score).select_from(counts.outerjoin(page, true()))


def only_stop_words(words: str) -> Select[Any]:
    """Whether `words` leave nothing to look for once English stop words are dropped."""
    return select(func.numnode(func.websearch_to_tsquery(ENGLISH, words)) == 0)


def any_captions() -> Select[Any]:
    """Whether any caption is stored (hybrid search is the default only then)."""
    return select(select(Caption.id).limit(1).exists())

