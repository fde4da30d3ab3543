"""Pages of results kept by the library's WAL position: a repeat is served from memory, and
any change to what a search could show (the trash, a restore, a caption) is seen at once."""

from __future__ import annotations

import pytest

from clipseek.clip.encoder import ClipEncoder
from clipseek.library.captions import add_caption, parse_caption_text
from clipseek.library.deletion import Selection, trash_images
from clipseek.library.trash import restore_images
from clipseek.search.query import Mode
from clipseek.search.run import PAGES, SearchPage, search_images
from clipseek.store.db import Database

QUERY = "a dog running on the beach"


@pytest.fixture
def indexed(db: Database, indexed_samples: list[int]) -> None:
    """The sample photos, indexed; no page kept from an earlier test."""
    PAGES.clear()


def _search(db: Database, encoder: ClipEncoder, *, page: int = 1, mode: Mode | None = Mode.SEMANTIC,
            query: str = QUERY) -> SearchPage:
    with db.session() as session:
        result = search_images(session, encoder, query, per_page=5, page=page, mode=mode)
        session.commit()  # as the web app does: the query's text is kept
    return result


def _ids(page: SearchPage) -> list[int]:
    return [hit.image_id for hit in page.hits]


def test_a_repeated_search_is_served_from_memory_as_it_was(db: Database, encoder: ClipEncoder,
                                                            indexed: None) -> None:
    _search(db, encoder)  # a new text: it is kept in query_embeddings, which moves the position
    first = _search(db, encoder)
    hits = PAGES.hits
    again = _search(db, encoder)
    assert PAGES.hits == hits + 1
    assert _ids(again) == _ids(first) and again.total == first.total
    assert [h.score for h in again.hits] == [h.score for h in first.hits]
    assert again.timings_ms["encode"] == 0.0
    # Another page, another mode or another text is another page of results.
    for other in ({"page": 2}, {"mode": None}, {"query": "a red motorcycle"}):
        before = PAGES.hits
        _search(db, encoder, **other)
        assert PAGES.hits == before, other
    # What a caller does to its page is its own: the kept one is unchanged.
    again.hits.clear()
    assert _ids(_search(db, encoder)) == _ids(first)


def test_the_trash_a_restore_and_a_caption_are_seen_at_once(db: Database, encoder: ClipEncoder,
                                                             indexed: None) -> None:
    _search(db, encoder)
    first = _search(db, encoder)
    top = first.hits[0].image_id
    with db.session() as session:
        trash_images(session, Selection(image_ids=(top,)))
        session.commit()
    trashed = _search(db, encoder)
    assert top not in _ids(trashed)
    with db.session() as session:
        restore_images(session, Selection(image_ids=(top,)), model=encoder.model_id)
        session.commit()
    assert _ids(_search(db, encoder))[0] == top
    # A caption that holds the words lifts the picture in the default (hybrid) ranking.
    _search(db, encoder, mode=None)
    before = _ids(_search(db, encoder, mode=None))
    last = first.hits[-1].image_id
    with db.session() as session:
        add_caption(session, image_id=last, text=parse_caption_text(QUERY))
        session.commit()
    after = _ids(_search(db, encoder, mode=None))
    assert last in after and after.index(last) < (before.index(last) if last in before else len(before))
