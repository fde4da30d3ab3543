"""Search: pgvector's ranking agrees with numpy, pages are consistent, bad queries explained."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select, text

from clipseek.clip.encoder import ClipEncoder
from clipseek.errors import BadQuery
from clipseek.search.query import Mode
from clipseek.search.run import rank_by_vector, search_images, similar_images
from clipseek.store.db import Database
from clipseek.store.tables import Embedding
from tests.ranking import SCORE_TOLERANCE, assert_ranking_agrees, assert_scores_descend


@pytest.fixture
def indexed(db: Database, indexed_samples: list[int]) -> dict[int, np.ndarray]:
    """The sample photos, indexed: each one's stored embedding."""
    with db.session() as s:
        rows = s.execute(select(Embedding.image_id, Embedding.embedding)).all()
    return {i: np.asarray(v, dtype=np.float32) for i, v in rows}


def _numpy_scores(stored: dict[int, np.ndarray], query: np.ndarray) -> dict[int, float]:
    """Exact cosines of the stored vectors with the query as PostgreSQL gets it (a halfvec)."""
    q = query.astype(np.float16).astype(np.float64)
    q /= np.linalg.norm(q)
    return {i: float(v @ q / np.linalg.norm(v)) for i, v in stored.items()}


def test_an_images_own_embedding_ranks_it_first(db: Database,
                                                indexed: dict[int, np.ndarray]) -> None:
    for image_id, vector in list(indexed.items())[:5]:
        with db.session() as s:
            ranked, total = rank_by_vector(s, vector, model="ViT-B-32/random", per_page=3)
        assert ranked[0][0] == image_id
        assert ranked[0][1] == pytest.approx(1.0, abs=1e-3)
        assert total == len(indexed) == 22


def test_scores_are_sorted_and_equal_one_minus_cosine_distance(
    db: Database, encoder: ClipEncoder, indexed: dict[int, np.ndarray]
) -> None:
    with db.session() as s:
        # Semantic mode: the sample photos have captions, which would otherwise be fused in.
        page = search_images(s, encoder, "a dog running on the beach", per_page=22, mode=Mode.SEMANTIC)
        top = search_images(s, encoder, "a dog running on the beach", per_page=8, mode=Mode.SEMANTIC)
    expected = _numpy_scores(indexed, encoder.encode_texts(["a dog running on the beach"])[0])
    # Random weights score some images within 1e-5 of each other; the order is checked only
    # where scores differ by more than PostgreSQL's float32 arithmetic, and most pairs here do.
    assert max(expected.values()) - min(expected.values()) > 20 * SCORE_TOLERANCE
    scores = [h.score or 0.0 for h in page.hits]
    assert len(scores) == 22
    assert_scores_descend(scores)
    for hit in page.hits:
        assert hit.score == pytest.approx(expected[hit.image_id], abs=SCORE_TOLERANCE)
    assert_ranking_agrees([h.image_id for h in page.hits], expected)
    assert_ranking_agrees([h.image_id for h in top.hits], expected)


def test_ranking_checks_forgive_near_ties_only() -> None:
    expected = {1: 0.30, 2: 0.2999, 3: 0.25, 4: 0.10}
    assert_ranking_agrees([2, 1, 3], expected)  # 1 and 2 are tied within SCORE_TOLERANCE
    assert_scores_descend([0.2999, 0.30, 0.25])
    for wrong in ([1, 3, 2], [1, 2, 4], [3, 1, 2]):
        with pytest.raises(AssertionError):
            assert_ranking_agrees(wrong, expected)
    with pytest.raises(AssertionError):
        assert_scores_descend([0.30, 0.25, 0.2999])


def test_pages_continue_the_same_ranking(db: Database, encoder: ClipEncoder,
                                         indexed: dict[int, np.ndarray]) -> None:
    with db.session() as s:
        whole = search_images(s, encoder, "a cat", per_page=10)
        second = search_images(s, encoder, "a cat", page=2, per_page=5)
        last = search_images(s, encoder, "a cat", page=5, per_page=5)
    assert [h.image_id for h in second.hits] == [h.image_id for h in whole.hits[5:10]]
    assert len(last.hits) == 2 and last.pages == 5
    assert second.to_dict()["results"][0]["rank"] == 6  # type: ignore[index]


def test_only_the_active_models_vectors_are_compared(db: Database, encoder: ClipEncoder,
                                                     indexed: dict[int, np.ndarray]) -> None:
    first = next(iter(indexed))
    with db.session() as s:
        s.add(Embedding(image_id=first, model="other/model", embedding=-indexed[first]))
        s.commit()
        page = search_images(s, encoder, "a cat", per_page=30)
    assert page.total == 22 and len(page.hits) == 22


def test_captions_and_paths_come_with_each_hit(db: Database, encoder: ClipEncoder,
                                               indexed: dict[int, np.ndarray]) -> None:
    with db.session() as s:
        page = search_images(s, encoder, "coffee", per_page=22)
    by_name = {h.path.rsplit("/", 1)[1]: h for h in page.hits}
    assert by_name["coffee.jpg"].captions == ["a cup of coffee on a saucer with a spoon"]
    assert page.meaningless  # random weights are flagged


def test_similar_images_exclude_the_image_itself(db: Database,
                                                 indexed: dict[int, np.ndarray]) -> None:
    target = next(iter(indexed))
    with db.session() as s:
        page = similar_images(s, target, model="ViT-B-32/random", per_page=5)
        missing = similar_images(s, 10**9, model="ViT-B-32/random")
    assert page is not None and missing is None
    assert target not in [h.image_id for h in page.hits] and page.total == 21


@pytest.mark.parametrize(("query", "page", "per_page", "message"), [
    ("   ", 1, 10, "Type a description"),
    ("x" * 1001, 1, 10, "keep it under 1000"),
    ("a cat", 0, 10, "numbered from 1"),
    ("a cat", 1, 500, "between 1 and 100"),
])
def test_bad_queries_are_explained(db: Database, encoder: ClipEncoder, query: str, page: int,
                                   per_page: int, message: str) -> None:
    with db.session() as s, pytest.raises(BadQuery, match=message):
        search_images(s, encoder, query, page=page, per_page=per_page)


def test_empty_collection_gives_an_empty_page(db: Database, encoder: ClipEncoder) -> None:
    with db.session() as s:
        page = search_images(s, encoder, "a cat")
    assert page.total == 0 and page.hits == [] and page.pages == 1


def test_a_ranking_statement_built_once_ranks_each_request_by_its_own_vector(
    db: Database, encoder: ClipEncoder, indexed: dict[int, np.ndarray]
) -> None:
    from clipseek.search import sql as search_sql

    search_sql.ranking_statement.cache_clear()
    pages = []
    for query in ("a dog running on the beach", "a red car in the city", "a dog running on the beach"):
        with db.session() as s:
            pages.append(search_images(s, encoder, query, per_page=5, mode=Mode.SEMANTIC))
    # One shape, one statement: built by the first request, reused by the other two.
    info = search_sql.ranking_statement.cache_info()
    assert (info.misses, info.hits) == (1, 2)
    for page, query in zip(pages, ("a dog running on the beach", "a red car in the city"), strict=False):
        expected = _numpy_scores(indexed, encoder.encode_texts([query])[0])
        assert len(page.hits) == 5
        assert all(abs((h.score or 0.0) - expected[h.image_id]) < SCORE_TOLERANCE for h in page.hits)
        assert (page.hits[0].score or 0.0) >= max(expected.values()) - SCORE_TOLERANCE
    assert [h.image_id for h in pages[0].hits] == [h.image_id for h in pages[2].hits]
    assert [h.score for h in pages[0].hits] != [h.score for h in pages[1].hits]


def test_each_ranking_is_planned_for_its_own_vector_and_depth(
    db: Database, encoder: ClipEncoder, indexed: dict[int, np.ndarray]
) -> None:
    # The driver prepares a statement run five times on a connection, and PostgreSQL then
    # tries a generic plan, which knows neither the vector nor the depth: at 20,000 images it
    # ranked by scanning every embedding (60-77 ms a search) instead of walking the index.
    with db.session() as s:
        for n in range(20):
            search_images(s, encoder, f"a photo of scene {n}", per_page=5, mode=Mode.SEMANTIC)
        plans = s.execute(text("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                               "WHERE statement LIKE '%semantic%'")).all()
    assert plans, "the ranking statement was never prepared: the check below would see nothing"
    assert [generic for generic, _ in plans] == [0] * len(plans)
    assert sum(custom for _, custom in plans) >= 10
