"""Text queries as vectors: kept per model, encoded once, printed, served by the API, ranked by in SQL."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text, update

from clipseek.clip.encoder import ClipEncoder
from clipseek.context import Context
from clipseek.indexing.encoding import index_images
from clipseek.search import query_vectors
from clipseek.search.query_vectors import recent_query_vectors, text_vectors
from clipseek.settings import RANDOM_MODEL, Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image, QueryEmbedding
from clipseek.store.vector_indexes import index_name
from clipseek.switching.switch import active_model, finish_if_covered, use_model
from tests.cli import run_in_process
from tests.test_model_switch import OTHER, other_encoder  # noqa: F401 (a fixture)
from tests.test_readme import _sql_blocks
from tests.test_sql_reader import reader_url  # noqa: F401 (a fixture)

TEXT = "a dog on a beach"
HEADERS = {"X-Requested-With": "test"}


@pytest.fixture
def indexed(db: Database, indexed_samples: list[int]) -> list[int]:
    """The sample photos, indexed by the active model."""
    return indexed_samples


def _stored(db: Database) -> dict[tuple[str, str], QueryEmbedding]:
    with db.session() as session:
        return {(row.model, row.text): row for row in session.scalars(select(QueryEmbedding))}


def _count_encodings(monkeypatch: pytest.MonkeyPatch, encoder: ClipEncoder) -> list[Sequence[str]]:
    """The texts `encoder` is asked to encode from now on, one list per call."""
    calls: list[Sequence[str]] = []
    encode = encoder.encode_texts

    def counted(texts: Sequence[str]) -> np.ndarray:
        calls.append(list(texts))
        return encode(texts)

    monkeypatch.setattr(encoder, "encode_texts", counted)
    return calls


def _search(client: FlaskClient, **params: object) -> dict[str, Any]:
    """GET /api/search's answer: semantic, nothing hidden below the cutoff, unless said otherwise."""
    answer = client.get("/api/search", query_string={"mode": "semantic", "all": "1", **params})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    data: dict[str, Any] = answer.get_json()
    return data


def test_embed_prints_the_active_models_vector_as_json_or_as_sql_and_stores_only_when_asked(
        cli_env: dict[str, str], db: Database) -> None:
    plain = run_in_process(cli_env, "embed", f"  {TEXT} ")
    assert plain.returncode == 0, plain.stderr
    vector = json.loads(plain.stdout)
    assert len(vector) == 512 and abs(float(np.linalg.norm(vector)) - 1) < 1e-2
    described = json.loads(run_in_process(cli_env, "embed", TEXT, "--json").stdout)
    assert (described["model"], described["dim"], described["text"]) == (RANDOM_MODEL, 512, TEXT)
    assert described["embedding"] == vector
    literal = run_in_process(cli_env, "embed", TEXT, "--sql").stdout.strip()
    assert re.fullmatch(r"'\[[-0-9.e,]+\]'::halfvec\(512\)", literal)
    with db.engine.connect() as conn:
        # PostgreSQL reads the literal back as the same numbers.
        read = conn.execute(text(f"SELECT vector_dims({literal}), {literal}::text")).one()
    assert read[0] == 512 and np.allclose(json.loads(read[1]), vector)
    assert _stored(db) == {}  # printed, not kept
    stored = run_in_process(cli_env, "embed", TEXT, "--store")
    assert stored.returncode == 0 and "active_query_embeddings" in stored.stderr
    row = _stored(db)[(RANDOM_MODEL, TEXT)]
    assert row.kept and np.allclose(np.asarray(row.embedding, dtype=np.float32), vector)
    both = run_in_process(cli_env, "embed", TEXT, "--sql", "--json")
    assert both.returncode == 2 and "not both" in both.stderr


def test_a_searched_text_is_kept_and_never_encoded_twice(
        client: FlaskClient, app: Flask, indexed: list[int], monkeypatch: pytest.MonkeyPatch,
        db: Database) -> None:
    context: Context = app.extensions["clipseek"]
    calls = _count_encodings(monkeypatch, context.encoder_for(RANDOM_MODEL))
    recent_query_vectors.clear()
    first = _search(client, q=TEXT)
    assert calls == [[TEXT]]
    row = _stored(db)[(RANDOM_MODEL, TEXT)]
    assert not row.kept
    # The same text again, from the page, the API, and another process (nothing in memory).
    assert client.get("/", query_string={"q": TEXT}).status_code == 200
    again = _search(client, q=TEXT)
    recent_query_vectors.clear()
    with db.session() as session:
        session.execute(update(QueryEmbedding).values(last_used_at=text("now() - interval '2 days'")))
        session.commit()
    later = _search(client, q=TEXT)
    assert calls == [[TEXT]]
    assert [r["image_id"] for r in first["results"]] == [r["image_id"] for r in again["results"]] \
        == [r["image_id"] for r in later["results"]]
    # Its use is written, so a text in use is never pruned.
    assert _stored(db)[(RANDOM_MODEL, TEXT)].last_used_at > row.last_used_at
    # A combined query keeps each of its texts, encoding only the new one.
    _search(client, q=f'{TEXT} - "people"')
    assert calls == [[TEXT], ["people"]]
    assert set(_stored(db)) == {(RANDOM_MODEL, TEXT), (RANDOM_MODEL, "people")}


def test_texts_unused_for_a_week_go_unless_kept(db: Database, encoder: ClipEncoder,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with db.session() as session:
        text_vectors(session, encoder, ["searched long ago"])
        text_vectors(session, encoder, ["stored long ago"], keep=True)
        session.execute(update(QueryEmbedding).values(last_used_at=text("now() - interval '8 days'")))
        session.commit()
        # A process prunes at most every PRUNE_EVERY_S: not at each new text.
        text_vectors(session, encoder, ["a new text"])
        session.commit()
        assert (RANDOM_MODEL, "searched long ago") in _stored(db)
        monkeypatch.setattr(query_vectors, "_pruned_at", {})  # as if the last prune were long ago
        text_vectors(session, encoder, ["a newer text"])
        session.commit()
    assert set(_stored(db)) == {(RANDOM_MODEL, "stored long ago"), (RANDOM_MODEL, "a new text"),
                                (RANDOM_MODEL, "a newer text")}


def test_api_embed_gives_the_vector_that_post_search_ranks_as_the_text(
        client: FlaskClient, indexed: list[int], db: Database) -> None:
    answer = client.get("/api/embed", query_string={"q": TEXT})
    assert answer.status_code == 200
    data = answer.get_json()
    assert (data["model"], data["dim"], data["text"]) == (RANDOM_MODEL, 512, TEXT)
    assert len(data["embedding"]) == 512 and (RANDOM_MODEL, TEXT) in _stored(db)
    by_text = _search(client, q=TEXT, per_page=8, page=2)
    by_vector = client.post("/api/search", headers=HEADERS, json={
        "embedding": data["embedding"], "all": True, "per_page": 8, "page": 2}).get_json()
    assert by_vector["total"] == by_text["total"] and by_vector["pages"] == 3
    assert [(r["image_id"], r["score"]) for r in by_vector["results"]] \
        == [(r["image_id"], r["score"]) for r in by_text["results"]]
    assert len(by_vector["results"]) == 8
    # The filters of a search apply as they do to words.
    with db.session() as session:
        session.execute(update(Image).where(Image.id.in_(indexed[:3])).values(collection="trips"))
        session.commit()
    filtered = client.post("/api/search", headers=HEADERS, json={
        "embedding": data["embedding"], "collection": ["trips"], "all": 1}).get_json()
    assert sorted(r["image_id"] for r in filtered["results"]) == indexed[:3]
    # Words may be POSTed too.
    words = client.post("/api/search", headers=HEADERS, json={"q": TEXT, "mode": "semantic", "all": True,
                                                              "per_page": 8, "page": 2}).get_json()
    assert words["results"] == by_text["results"]


@pytest.mark.parametrize(("body", "message"), [
    ({"embedding": [0.1] * 1024}, "1024 numbers, but the active model ViT-B-32/random makes vectors of 512"),
    ({"embedding": [0.0] * 512}, "not all zero"),
    ({"embedding": ["0.1"] * 512}, "must be a list of numbers"),
    ({"embedding": [True] * 512}, "must be a list of numbers"),
    ({"embedding": {"x": 1}}, "must be a list of numbers"),
    ({"embedding": [1e308] * 511 + [10**400]}, "must be finite numbers"),
    ({"embedding": [0.1] * 512, "q": "a cat"}, "either q (words) or embedding"),
    ({"embedding": [0.1] * 512, "mode": "text"}, "searches caption words"),
    ({"embedding": [0.1] * 512, "colour": "red"}, "There is no search parameter 'colour'"),
    ({"embedding": [0.1] * 512, "per_page": {"a": 1}}, "must be text, a number"),
    ([1, 2], "Send the search as a JSON object"),
])
def test_a_bad_vector_or_body_is_refused_with_one_sentence(client: FlaskClient,
                                                          body: object, message: str) -> None:
    answer = client.post("/api/search", headers=HEADERS, json=body)
    assert answer.status_code == 400
    assert message in answer.get_json()["error"]


def test_api_embed_refuses_an_empty_text(client: FlaskClient, db: Database) -> None:
    answer = client.get("/api/embed?q=%20")
    assert answer.status_code == 400 and "Type a description" in answer.get_json()["error"]


def _text_ranking_sql() -> str:
    """docs/sql.md's one-statement ranking by a stored text, as written there."""
    [block] = [b for b in _sql_blocks() if "active_query_embeddings" in b and "semantic AS" not in b]
    assert "ViT-B-32" not in block  # the same statement whatever the model
    return block.strip().rstrip(";")


def _as_reader(url: str, statement: str) -> tuple[list[tuple[int, float]], str]:
    """The statement's rows and its plan, run by a reader login, with every way but an index closed."""
    with psycopg.connect(url) as conn:
        rows = [(int(r[0]), float(r[2])) for r in conn.execute(statement).fetchall()]
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_sort = off")
        plan = "\n".join(str(r[0]) for r in conn.execute("EXPLAIN " + statement).fetchall())
    return rows, plan


def test_a_reader_ranks_by_a_stored_text_in_one_statement_before_and_after_a_switch(
        reader_url: str, cli_env: dict[str, str], db: Database,  # noqa: F811
        indexed: list[int], other_encoder: ClipEncoder, settings: Settings) -> None:  # noqa: F811
    statement = _text_ranking_sql()
    assert run_in_process(cli_env, "embed", "--store", TEXT).returncode == 0
    before, plan = _as_reader(reader_url, statement)
    assert len(before) == 10 and index_name(RANDOM_MODEL) in plan
    assert [s for _, s in before] == sorted((s for _, s in before), reverse=True)
    # Move to a model of another dimension; the text is stored while the switch is under way.
    use_model(db.engine, OTHER, force=False, batch_size=8, enqueue=lambda ids, model: None)
    stored = run_in_process(cli_env, "embed", "--store", TEXT)
    assert stored.returncode == 0, stored.stderr
    with db.session() as session, ThreadPoolExecutor(2) as pool:
        index_images(session, other_encoder, indexed, pool=pool, batch_size=8,
                     max_pixels=settings.max_image_pixels)
        session.commit()
        assert finish_if_covered(session) == OTHER and active_model(session) == OTHER
    after, plan = _as_reader(reader_url, statement)
    assert len(after) == 10 and index_name(OTHER) in plan and index_name(RANDOM_MODEL) not in plan
    # The new model's own ranking of the text: what ClipSeek's search of it answers.
    with db.session() as session:
        expected = session.execute(text(
            "SELECT image_id FROM embeddings WHERE model = :m ORDER BY embedding::halfvec(1024) <=> "
            "(SELECT embedding::halfvec(1024) FROM query_embeddings WHERE model = :m AND text = :t) "
            "LIMIT 10"), {"m": OTHER, "t": TEXT}).scalars().all()
    assert [i for i, _ in after] == expected and after != before


def test_a_text_is_kept_once_whatever_its_spacing(db: Database, encoder: ClipEncoder) -> None:
    with db.session() as session:
        first = text_vectors(session, encoder, [" a  cat ", "a cat"])
        session.commit()
    assert first.shape == (2, 512) and np.array_equal(first[0], first[1])
    assert set(_stored(db)) == {(RANDOM_MODEL, "a cat")}


def test_a_text_too_long_to_keep_is_encoded_each_time_and_searched_all_the_same(
        db: Database, encoder: ClipEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    long = "海" * 1000  # 3,000 bytes: more than a B-tree entry may hold
    calls = _count_encodings(monkeypatch, encoder)
    with db.session() as session:
        vectors = text_vectors(session, encoder, [long, "a cat"])
        again = text_vectors(session, encoder, [long])
        session.commit()
    assert calls == [[long], ["a cat"], [long]] and np.array_equal(vectors[0], again[0])
    assert set(_stored(db)) == {(RANDOM_MODEL, "a cat")}


def test_a_search_commits_its_new_text_without_waiting_for_the_disk_and_nothing_else_does(
    db: Database, encoder: ClipEncoder, indexed: list[int]
) -> None:
    from clipseek.search.query import Mode, SearchRequest, Term
    from clipseek.search.run import all_matches, run_search

    def request(words: str) -> SearchRequest:
        return SearchRequest(query=words, terms=(Term(words),), mode=Mode.SEMANTIC, show_all=True)

    with db.session() as session:
        run_search(session, encoder, request("a text searched once"))
        assert session.scalar(text("SHOW synchronous_commit")) == "off"
        session.commit()
        # A bulk action on every match writes more in its transaction: that waits.
        all_matches(session, encoder, request("a text acted on"), limit=100)
        assert session.scalar(text("SHOW synchronous_commit")) == "on"
        session.commit()
        text_vectors(session, encoder, ["a text stored on purpose"], keep=True, lazy=True)
        assert session.scalar(text("SHOW synchronous_commit")) == "on"
        session.commit()
    assert {(RANDOM_MODEL, "a text searched once"), (RANDOM_MODEL, "a text acted on"),
            (RANDOM_MODEL, "a text stored on purpose")} <= set(_stored(db))
