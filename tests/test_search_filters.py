"""Filtered search on real PostgreSQL: every filter in every mode, the index/exact switch, browsing, dates."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from clipseek.clip.encoder import ClipEncoder
from clipseek.errors import BadQuery
from clipseek.search import run as search
from clipseek.search.query import parse_request
from clipseek.search.run import SearchPage, run_search
from clipseek.store.db import Database
from clipseek.store.tables import Caption, Image, ImageStatus

MODES = ("semantic", "hybrid", "text")


@pytest.fixture
def varied(db: Database, indexed_samples: list[int]) -> dict[int, dict[str, object]]:
    """The 22 sample photos, given different collections, sources, folders, dates, formats and sizes."""
    facts: dict[int, dict[str, object]] = {}
    with db.session() as s:
        ids = sorted(s.scalars(select(Image.id)))
        for n, image_id in enumerate(ids):
            fact: dict[str, object] = {
                "collection": "trips" if n % 3 == 0 else "home",
                "source": "folder" if n % 2 else "upload",
                "path": f"/photos/{'2024' if n % 4 else '2024-old'}/p{n}.jpg",
                "format": "PNG" if n % 5 == 0 else "JPEG",
                "taken_at": datetime(2020, 1 + n % 12, 1, 12) if n % 6 else None,
                "created_at": datetime(2023, 1 + n % 12, 2, 12, tzinfo=UTC),
                "display_width": 800 if n % 7 == 0 else 1000 if n % 3 else 600 + 10 * n,
                "display_height": 800 if n % 7 == 0 else 600 + 10 * n if n % 3 else 1000,
            }
            s.execute(update(Image).where(Image.id == image_id).values(**fact))
            # Every image gets a common word, so text mode sees all of them.
            s.add(Caption(image_id=image_id, text="a photo", source="user"))
            facts[image_id] = fact
        s.commit()
    return facts


def _shown_at(fact: dict[str, object]) -> datetime:
    taken = fact["taken_at"]
    created = fact["created_at"]
    assert isinstance(created, datetime)
    return taken if isinstance(taken, datetime) else created.replace(tzinfo=None)


FILTERS: list[tuple[dict[str, str], Callable[[Any], bool]]] = [
    ({"collection": "trips"}, lambda f: f["collection"] == "trips"),
    ({"source": "folder"}, lambda f: f["source"] == "folder"),
    ({"folder": "/photos/2024/"}, lambda f: str(f["path"]).startswith("/photos/2024/")),
    ({"format": "png"}, lambda f: f["format"] == "PNG"),
    ({"taken_from": "2020-03-01", "taken_to": "2020-06-01"},
     lambda f: datetime(2020, 3, 1) <= _shown_at(f) < datetime(2020, 6, 2)),
    ({"added_from": "2023-05-01", "added_to": "2023-08-31"},
     lambda f: datetime(2023, 5, 1, tzinfo=UTC) <= f["created_at"] < datetime(2023, 9, 1, tzinfo=UTC)),
    ({"orientation": "portrait"}, lambda f: f["display_height"] > f["display_width"]),
    ({"orientation": "landscape"}, lambda f: f["display_width"] > f["display_height"]),
    ({"orientation": "square"}, lambda f: f["display_width"] == f["display_height"]),
    ({"min_size": "0x800"}, lambda f: f["display_height"] >= 800),
    ({"min_size": "0.8mp"}, lambda f: f["display_width"] * f["display_height"] >= 800_000),
    ({"collection": "home", "source": "upload", "orientation": "landscape"},
     lambda f: f["collection"] == "home" and f["source"] == "upload"
     and f["display_width"] > f["display_height"]),
]


def _run(session: Session, encoder: ClipEncoder, **params: str) -> SearchPage:
    request = parse_request({k: [v] for k, v in params.items()})
    return run_search(session, encoder, request)


@pytest.mark.parametrize("mode", [*MODES, "browse"])
def test_each_filter_keeps_exactly_its_images_in_every_mode(
    db: Database, encoder: ClipEncoder, varied: dict[int, dict[str, object]], mode: str,
) -> None:
    query = {} if mode == "browse" else {"q": "photo", "mode": mode}
    for params, keeps in FILTERS:
        expected = {i for i, fact in varied.items() if keeps(fact)}
        assert 0 < len(expected) < 22, params
        with db.session() as s:
            page = _run(s, encoder, **query, **params, per_page="100")
        assert {h.image_id for h in page.hits} == expected, params
        assert page.total == len(expected), params


def test_missing_images_stay_out_of_every_mode(db: Database, encoder: ClipEncoder,
                                               varied: dict[int, dict[str, object]]) -> None:
    gone = next(iter(varied))
    with db.session() as s:
        s.execute(update(Image).where(Image.id == gone).values(status=ImageStatus.MISSING))
        s.commit()
        for query in ({"mode": "semantic", "q": "photo"}, {"mode": "hybrid", "q": "photo"},
                      {"mode": "text", "q": "photo"}, {}):
            page = _run(s, encoder, **query, per_page="100")
            assert gone not in {h.image_id for h in page.hits} and page.total == 21


@pytest.mark.parametrize("mode", ["semantic", "hybrid"])
def test_exact_scan_and_index_walk_give_the_same_results(
    db: Database, encoder: ClipEncoder, varied: dict[int, dict[str, object]],
    monkeypatch: pytest.MonkeyPatch, mode: str,
) -> None:
    with db.session() as s:  # 22 images: a filter keeps fewer than EXACT_BELOW, no filter walks the index
        assert _run(s, encoder, q="a cat", mode=mode, collection="home").scan == "exact"
        assert _run(s, encoder, q="a cat", mode=mode).scan == "index"
    answers = []
    for exact_below, exact_share in ((0, 0.0), (10**9, 1.0)):  # never exact, always exact
        monkeypatch.setattr(search, "EXACT_BELOW", exact_below)
        monkeypatch.setattr(search, "EXACT_SHARE", exact_share)
        with db.session() as s:
            page = _run(s, encoder, q="a cat on a sofa", mode=mode, collection="home", per_page="8")
        answers.append((page.scan, [(h.image_id, round(h.score or 0, 3)) for h in page.hits]))
    assert [scan for scan, _ in answers] == ["index", "exact"]
    assert answers[0][1] == answers[1][1] and len(answers[0][1]) == 8


def test_filters_past_the_count_cap_widen_the_walk_by_the_planners_estimate(
    db: Database, encoder: ClipEncoder, varied: dict[int, dict[str, object]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    everything = {"collection": "home", "source": "folder", "folder": "/photos/2024/",
                  "format": "jpeg", "taken_from": "2019-01-01", "taken_to": "2024-12-31",
                  "added_from": "2023-01-01", "added_to": "2023-12-31", "orientation": "landscape",
                  "min_size": "0.1mp"}
    cases = [params for params, _ in FILTERS] + [everything]
    with db.session() as s:  # counted exactly: 22 images are far below the cap
        exact = [{h.image_id for h in _run(s, encoder, q="photo", mode="semantic", **params,
                                           per_page="100").hits} for params in cases]
    # With the cap at 1 every filter's count is capped, so the walk asks the planner how many
    # images each filter keeps: every kind of filter must survive being estimated.
    monkeypatch.setattr(search, "CANDIDATE_CAP", 1)
    monkeypatch.setattr(search, "EXACT_BELOW", 0)
    monkeypatch.setattr(search, "EXACT_SHARE", 0.0)
    for params, expected in zip(cases, exact, strict=True):
        with db.session() as s:
            page = _run(s, encoder, q="photo", mode="semantic", **params, per_page="100")
        assert page.scan == "index" and page.total_capped, params
        assert {h.image_id for h in page.hits} == expected and expected, params


def test_date_order_sorts_matches_by_capture_date_else_added_date(
    db: Database, encoder: ClipEncoder, varied: dict[int, dict[str, object]],
) -> None:
    with db.session() as s:
        page = _run(s, encoder, q="a cat", mode="semantic", sort="date", per_page="100")
    dates = [_shown_at(varied[h.image_id]) for h in page.hits]
    assert len(dates) == 22 and dates == sorted(dates, reverse=True)


def test_browsing_pages_the_collection_newest_first(db: Database, encoder: ClipEncoder,
                                                    varied: dict[int, dict[str, object]]) -> None:
    expected = sorted(varied, key=lambda i: (_shown_at(varied[i]), i), reverse=True)
    with db.session() as s:
        first = _run(s, encoder, per_page="10")
        third = _run(s, encoder, per_page="10", page="3")
    assert first.mode == "browse" and first.total == 22 and first.pages == 3
    assert [h.image_id for h in first.hits] == expected[:10]
    assert [h.image_id for h in third.hits] == expected[20:]
    assert first.hits[0].score is None


@pytest.mark.parametrize(("params", "message"), [
    ({"colour": "red"}, "no search parameter 'colour'"),
    ({"orientation": "diagonal"}, "portrait, landscape, square"),
    ({"source": "camera"}, "must be one of coco, folder"),
    ({"format": "doc"}, "must be one of JPEG"),
    ({"taken_from": "2024-05-01", "taken_to": "2024-01-01"}, "swap the two dates"),
    ({"added_from": "yesterday"}, "YYYY-MM-DD"),
    ({"min_size": "big"}, "WIDTHxHEIGHT"),
    ({"mode": "fuzzy"}, "semantic, hybrid, text"),
    ({"sort": "name"}, "relevance, date"),
    ({"min_score": "2"}, "from -1 to 1"),
    ({"example": "not-a-hash"}, "expired, drop the picture again"),
    ({"q": "- people"}, "cannot only take things away"),
    ({"page": "0"}, "from 1 to"),
])
def test_bad_search_parameters_are_explained_in_one_sentence(params: dict[str, str],
                                                             message: str) -> None:
    with pytest.raises(BadQuery, match=message):
        parse_request({k: [v] for k, v in params.items()})


def test_text_mode_refuses_a_query_of_only_stop_words(db: Database, encoder: ClipEncoder,
                                                      varied: dict[int, dict[str, object]]) -> None:
    with db.session() as s, pytest.raises(BadQuery, match="only common words"):
        _run(s, encoder, q="the of and", mode="text")


def test_request_parameters_round_trip(varied: dict[int, dict[str, object]]) -> None:
    params = {"q": 'cat + "sunset"', "collection": "home,trips", "orientation": "portrait",
              "min_size": "800x600", "taken_from": "2020-01-01", "mode": "text", "sort": "date",
              "min_score": "0.2", "all": "1", "per_page": "12", "folder": "/photos"}
    request = parse_request({k: [v] for k, v in params.items()})
    assert parse_request({k: [v] for k, v in request.params().items()}) == request
    assert [(t.text, t.sign) for t in request.terms] == [("cat", 1), ('"sunset"', 1)]
    assert np.isfinite(request.filters.min_width or 0)


def test_a_filter_keeping_a_small_share_is_scanned_exactly_above_the_count(
    db: Database, encoder: ClipEncoder, varied: dict[int, dict[str, object]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    square = {i for i, fact in varied.items() if fact["display_width"] == fact["display_height"]}
    assert 0 < len(square) <= 22 * search.EXACT_SHARE
    # Above the count that always scans, the share decides: a narrow filter is scanned, a
    # broad one walks the index.
    monkeypatch.setattr(search, "EXACT_BELOW", 0)
    with db.session() as s:
        narrow = _run(s, encoder, q="photo", mode="semantic", orientation="square", per_page="100")
        broad = _run(s, encoder, q="photo", mode="semantic", orientation="landscape", per_page="100")
    assert narrow.scan == "exact" and {h.image_id for h in narrow.hits} == square
    assert broad.scan == "index"
    monkeypatch.setattr(search, "EXACT_SHARE", 0.0)
    with db.session() as s:
        walked = _run(s, encoder, q="photo", mode="semantic", orientation="square", per_page="100")
    assert walked.scan == "index" and {h.image_id for h in walked.hits} == square


@pytest.mark.parametrize("exact", [True, False])
def test_ranked_rows_carry_their_distance_not_their_embedding(db: Database, exact: bool) -> None:

    from clipseek.search import sql as search_sql
    from clipseek.search.query import Filters, Sort

    # A filter keeping 11,800 of 118,000 images sorted 12 MB when each row carried its
    # 1 KB embedding to the score computed after the sort (and spilled it to disk).
    statement = search_sql.ranking_statement(model="ViT-B-32/random", dim=512,
                                             filters=Filters(collections=("c1",)), exact=exact,
                                             exclude=None, hybrid=False, sort=Sort.RELEVANCE,
                                             with_cutoff=False)
    vector = np.ones(512, dtype=np.float32) / np.sqrt(512)
    with db.session() as s:
        bound = statement.params({search_sql.QUERY_VECTOR: vector, search_sql.DEPTH: 10,
                                  search_sql.PAGE_OFFSET: 0, search_sql.PAGE_LIMIT: 10})
        # The values written in, as a custom plan sees them (each search is planned for its own).
        sql = bound.compile(dialect=s.get_bind().dialect, compile_kwargs={"literal_binds": True})
        plan = s.connection().exec_driver_sql(f"EXPLAIN (VERBOSE, FORMAT JSON) {sql}").scalar_one()

    def sorted_rows(node: dict[str, Any]) -> list[str]:
        """What each sort in the plan holds of its rows (scans may pass whole rows on cheaply)."""
        found = list(node.get("Output", [])) if "Sort" in node["Node Type"] else []
        for child in node.get("Plans", []):
            found += sorted_rows(child)
        return found

    columns = sorted_rows(plan[0]["Plan"])
    assert any("<=>" in c for c in columns), columns  # the ranking's sort was found
    assert "embeddings.embedding" not in columns
