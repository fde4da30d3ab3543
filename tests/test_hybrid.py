"""Hybrid and text search, the relevance cutoff, stored examples and combined queries."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from clipseek.clip.encoder import ClipEncoder
from clipseek.errors import BadQuery
from clipseek.library.register import Candidate
from clipseek.search import cutoff
from clipseek.search.examples import store_example
from clipseek.search.query import SearchRequest, Term, parse_request
from clipseek.search.run import SearchPage, query_vector, run_search
from clipseek.store.db import Database
from clipseek.store.tables import Caption, Embedding, ScoreCutoff


@pytest.fixture
def indexed(db: Database, indexed_samples: list[int]) -> list[int]:
    """The sample photos, indexed: their ids."""
    return indexed_samples


def _run(db: Database, encoder: ClipEncoder, **params: str) -> SearchPage:
    with db.session() as s:
        page = run_search(s, encoder, parse_request({k: [v] for k, v in params.items()}))
        s.commit()
        return page


def test_the_only_zebra_caption_ranks_first_in_hybrid_and_text_but_not_semantic(
    db: Database, encoder: ClipEncoder, indexed: list[int],
) -> None:
    semantic = _run(db, encoder, q="zebra", mode="semantic", per_page="22")
    # The image the random model likes least for "zebra" is the one captioned with it.
    zebra = semantic.hits[-1].image_id
    with db.session() as s:
        s.add(Caption(image_id=zebra, text="a zebra grazing in tall grass", source="user"))
        s.commit()
    for mode in ("hybrid", "text"):
        page = _run(db, encoder, q="zebra", mode=mode)
        assert page.hits[0].image_id == zebra and page.mode == mode
    assert _run(db, encoder, q="zebra", mode="text").total == 1
    assert _run(db, encoder, q="zebra").mode == "hybrid"  # the default once captions exist
    assert _run(db, encoder, q="zebra", mode="semantic", per_page="22").hits[-1].image_id == zebra


def test_quoted_words_must_appear_together_in_a_caption(db: Database, encoder: ClipEncoder,
                                                        indexed: list[int]) -> None:
    with db.session() as s:
        s.add(Caption(image_id=indexed[0], text="a red bus on a bridge", source="user"))
        s.add(Caption(image_id=indexed[1], text="a bus painted red", source="user"))
        s.commit()
    assert {h.image_id for h in _run(db, encoder, q="red bus", mode="text").hits} == set(indexed[:2])
    assert [h.image_id for h in _run(db, encoder, q='"red bus"', mode="text").hits] == [indexed[0]]


def _plant_cutoff(db: Database, value: float) -> None:
    with db.session() as s:
        s.merge(ScoreCutoff(model="ViT-B-32/random", cutoff=value, images=22))
        s.commit()


def test_matches_below_the_cutoff_are_hidden_and_counted(db: Database, encoder: ClipEncoder,
                                                         indexed: list[int]) -> None:
    everything = _run(db, encoder, q="a cat", mode="semantic", per_page="22")
    scores = [h.score or 0.0 for h in everything.hits]
    _plant_cutoff(db, (scores[4] + scores[5]) / 2)  # between the 5th and 6th best
    page = _run(db, encoder, q="a cat", mode="semantic", per_page="3")
    assert page.total == 5 and page.pages == 2 and page.hidden == 17
    assert [h.image_id for h in page.hits] == [h.image_id for h in everything.hits[:3]]
    last = _run(db, encoder, q="a cat", mode="semantic", per_page="3", page="2")
    assert [h.image_id for h in last.hits] == [h.image_id for h in everything.hits[3:5]]
    shown = _run(db, encoder, q="a cat", mode="semantic", per_page="22", all="1")
    assert shown.total == 22 and shown.hidden == 0 and shown.cutoff is None
    lower = _run(db, encoder, q="a cat", mode="semantic", min_score=f"{scores[9] - 1e-4:.6f}")
    assert lower.total == 10 and lower.hidden == 12
    by_date = _run(db, encoder, q="a cat", mode="semantic", sort="date", per_page="22")
    assert {h.image_id for h in by_date.hits} == {h.image_id for h in everything.hits[:5]}
    assert page.to_dict()["hidden"] == 17


def test_hybrid_keeps_caption_matches_below_the_cutoff(db: Database, encoder: ClipEncoder,
                                                       indexed: list[int]) -> None:
    everything = _run(db, encoder, q="zebra", mode="semantic", per_page="22")
    weakest = everything.hits[-1]
    with db.session() as s:
        s.add(Caption(image_id=weakest.image_id, text="a zebra", source="user"))
        s.commit()
    _plant_cutoff(db, (everything.hits[0].score or 0.0) - 1e-4)
    page = _run(db, encoder, q="zebra", mode="hybrid", per_page="22")
    assert {h.image_id for h in page.hits} == {everything.hits[0].image_id, weakest.image_id}


def test_calibration_stores_a_cutoff_from_generic_prompts(db: Database, encoder: ClipEncoder,
                                                          indexed: list[int],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cutoff, "MIN_IMAGES", 10)
    with db.session() as s:
        assert cutoff.needs_calibration(s, encoder.model_id)
        value = cutoff.calibrate(s, encoder)
        s.commit()
        assert value is not None and cutoff.stored_cutoff(s, encoder.model_id) == pytest.approx(value)
        assert not cutoff.needs_calibration(s, encoder.model_id)
        # The background pass never calibrates the random-weights model: its scores mean nothing.
        assert cutoff.calibrate_if_due(s, encoder) is None
        stored = np.asarray(s.scalars(select(Embedding.embedding)).all(), dtype=np.float32)
    generic = stored @ encoder.encode_texts(list(cutoff.GENERIC_PROMPTS)).T
    assert np.mean(generic <= value + 1e-3) >= 0.98


def _example(db: Database, encoder: ClipEncoder, photo: Candidate) -> str:
    data = photo.path.read_bytes()
    with db.session() as s:
        example_id = store_example(s, encoder, PILImage.open(io.BytesIO(data)).convert("RGB"), data)
        s.commit()
    return example_id


def test_an_example_picture_is_stored_and_pages_like_any_search(
    db: Database, encoder: ClipEncoder, indexed: list[int], sample_photos: list[Candidate],
) -> None:
    example_id = _example(db, encoder, sample_photos[2])
    assert _example(db, encoder, sample_photos[2]) == example_id  # the same picture, the same id
    whole = _run(db, encoder, example=example_id, per_page="10")
    second = _run(db, encoder, example=example_id, per_page="5", page="2")
    assert whole.hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert [h.image_id for h in second.hits] == [h.image_id for h in whole.hits[5:10]]
    like = _run(db, encoder, like=str(whole.hits[0].image_id), per_page="10")
    # More like this leaves the picture itself out: everything else is ranked.
    assert whole.hits[0].image_id not in [h.image_id for h in like.hits]
    assert len(like.hits) == 10 and like.total == whole.total - 1
    with pytest.raises(BadQuery, match="expired"):
        _run(db, encoder, example="0" * 64)
    with pytest.raises(BadQuery, match="not indexed"):
        _run(db, encoder, like="999999")


def test_combined_queries_add_and_subtract_embeddings(db: Database, encoder: ClipEncoder,
                                                      indexed: list[int],
                                                      sample_photos: list[Candidate]) -> None:
    # Each text's vector as query_embeddings keeps it (halfvec), so every search of it ranks alike.
    texts = encoder.encode_texts(["cat", "sunset", "people"]).astype(np.float16).astype(np.float32)
    expected = texts[0] + texts[1] - texts[2]
    with db.session() as s:
        vector = query_vector(s, encoder, parse_request({"q": ['cat + "sunset" - "people"']}))
        np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), atol=1e-5)
        with pytest.raises(BadQuery, match="Nothing is left"):
            query_vector(s, encoder, SearchRequest(terms=(Term("cat"), Term("cat", -1))))
    example_id = _example(db, encoder, sample_photos[0])
    page = _run(db, encoder, example=example_id, q='- "people"', mode="semantic")
    assert page.hits and page.query.startswith("pictures like the example")
