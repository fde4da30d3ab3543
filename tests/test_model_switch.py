"""Several models in one database, each with its own index, and a switch without downtime."""

from __future__ import annotations

import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from PIL import Image as PILImage
from sqlalchemy import func, select, text

from clipseek.clip.encoder import ClipEncoder
from clipseek.context import loaded_models, open_database, shared_encoder
from clipseek.indexing.encoding import index_images
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate
from clipseek.search import sql as search_sql
from clipseek.search.query import Filters
from clipseek.search.run import similar_images
from clipseek.settings import RANDOM_MODEL, Settings
from clipseek.store.db import Database
from clipseek.store.tables import Embedding, Image, SearchModel
from clipseek.store.vector_indexes import index_name, index_state
from clipseek.switching.switch import (
    SwitchError,
    active_model,
    drop_model,
    register_model,
    resume_stalled_switch,
    use_model,
)
from tests.cli import run_in_process
from tests.conftest import TEST_PRECISION
from tests.waiting import wait_for
from tests.workers import WorkerProcess

# A second architecture of another dimension: OpenAI's ResNet-50 CLIP embeds in 1,024-d.
OTHER = "RN50/random"


def _cli(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["clipseek", *args], env=env, capture_output=True, text=True, timeout=600,
                            check=False)
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return result


def _index_scans(db: Database, model: str) -> int:
    with db.engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
        return int(conn.scalar(text("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = :n"),
                               {"n": index_name(model)}) or 0)


def _embedded(db: Database, model: str) -> set[int]:
    with db.session() as session:
        return set(session.scalars(select(Embedding.image_id).where(Embedding.model == model)))


@pytest.fixture(scope="module")
def other_encoder() -> ClipEncoder:
    """RN50 with seeded random weights: the real architecture, 1,024-d."""
    enc = ClipEncoder(OTHER, allow_download=False, precision=TEST_PRECISION)
    enc.load()
    return enc


def test_two_models_of_different_dimensions_each_searched_through_its_own_index(
        db: Database, settings: Settings, encoder: ClipEncoder, other_encoder: ClipEncoder,
        indexed_samples: list[int]) -> None:
    assert register_model(db.engine, OTHER) == 1024
    with db.session() as session, ThreadPoolExecutor(2) as pool:
        ids = sorted(session.scalars(select(Image.id)))
        index_images(session, other_encoder, ids, pool=pool, batch_size=8,
                     max_pixels=settings.max_image_pixels)
        session.commit()
        dims = {model: dim for model, dim in session.execute(text(
            "SELECT model, min(vector_dims(embedding)) FROM embeddings GROUP BY model"))}
    assert dims == {RANDOM_MODEL: 512, OTHER: 1024}
    with db.engine.connect() as conn:
        defs = {m: conn.scalar(text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
                               {"n": index_name(m)}) for m in (RANDOM_MODEL, OTHER)}
    assert "halfvec(512)" in defs[RANDOM_MODEL] and f"'{RANDOM_MODEL}'" in defs[RANDOM_MODEL]
    assert "halfvec(1024)" in defs[OTHER] and f"'{OTHER}'" in defs[OTHER]

    for model, enc in ((RANDOM_MODEL, encoder), (OTHER, other_encoder)):
        before = {m: _index_scans(db, m) for m in (RANDOM_MODEL, OTHER)}
        with db.session() as session:
            # On 22 images the planner would rather sort them all: forbid that, so the query
            # can only be answered through an index, and it must be this model's.
            session.execute(text("SET LOCAL enable_seqscan = off"))
            session.execute(text("SET LOCAL enable_sort = off"))
            similar = similar_images(session, ids[0], model=model, per_page=5)
            query = enc.encode_texts(["a cat on a sofa"])[0]
            ranking = search_sql.semantic_ranking(query, Filters(), model=model, depth=5, exact=False)
            ranked = session.execute(select(ranking.c.image_id)).scalars().all()
        assert similar is not None and len(similar.hits) == 5 and len(ranked) == 5
        assert all(hit.image_id != ids[0] for hit in similar.hits)
        after = {m: _index_scans(db, m) for m in (RANDOM_MODEL, OTHER)}
        wait_for(lambda m=model, b=before: _index_scans(db, m) >= b[m] + 2, 10,  # type: ignore[misc]
                 f"{model}'s index to be scanned")
        others = [m for m in (RANDOM_MODEL, OTHER) if m != model]
        assert all(after[m] == before[m] for m in others), (before, after)


def test_an_index_that_cannot_be_built_is_not_left_half_built(db: Database, encoder: ClipEncoder,
                                                              settings: Settings,
                                                              sample_photos: list[Candidate]) -> None:
    ingest_inline(db, encoder, sample_photos[:2], settings=settings)
    with db.session() as session:
        first = session.scalars(select(Image.id)).first()
        # A stray vector of the wrong size for ViT-B-16 (512-d): its index build must fail.
        session.execute(text("INSERT INTO embeddings (image_id, model, embedding) "
                             f"VALUES ({first}, 'ViT-B-16/random', '[1,2,3]')"))
        session.commit()
    with pytest.raises(Exception, match="dimensions"):
        register_model(db.engine, "ViT-B-16/random")
    assert index_state(db.engine, "ViT-B-16/random") is None


def test_a_process_keeps_at_most_the_configured_number_of_models(settings: Settings) -> None:
    one = settings.with_changes(models_in_memory=1, offline=True)
    first = shared_encoder(one.with_changes(model="ViT-B-16/random"))
    assert loaded_models()[-1] == "ViT-B-16/random"
    shared_encoder(one.with_changes(model=OTHER))
    assert "ViT-B-16/random" not in loaded_models() and loaded_models()[-1] == OTHER
    two = one.with_changes(models_in_memory=2)
    assert shared_encoder(two.with_changes(model="ViT-B-16/random")) is not first  # built again
    shared_encoder(two.with_changes(model=OTHER))
    assert loaded_models()[-2:] == ["ViT-B-16/random", OTHER]


def _add_photos(folder: Path, sample_photos: list[Candidate], count: int) -> None:
    folder.mkdir()
    for n, candidate in enumerate(sample_photos[:count]):
        with PILImage.open(candidate.path) as img:
            w, h = img.size
            img.convert("RGB").crop((w // 6, h // 6, w - w // 6, h - h // 6)).save(folder / f"new{n}.jpg")


@pytest.mark.slow
def test_switch_under_search_load_never_fails_nor_empties_and_keeps_the_old_vectors(
        app: Flask, db: Database, settings: Settings, encoder: ClipEncoder, cli_env: dict[str, str],
        redis_url: str, indexed_samples: list[int], sample_photos: list[Candidate],
        tmp_path: Path) -> None:
    env = cli_env | {"REDIS_URL": redis_url, "CLIPSEEK_BATCH_SIZE": "4"}
    outcomes: list[tuple[str, int, int]] = []
    failures: list[str] = []
    switched = threading.Event()
    stop = threading.Event()

    def search_load() -> None:
        client = app.test_client()
        n = 0
        while not stop.is_set():
            n += 1
            response = client.get(f"/api/search?q=a+photo+number+{n}&all=1&per_page=5")
            if response.status_code != 200:
                failures.append(f"{response.status_code}: {response.get_data(as_text=True)[:200]}")
                continue
            data = response.get_json()
            outcomes.append((data["model"], data["total"], len(data["results"])))
            # Twenty searches a second at most: enough to catch a moment without results,
            # and the CPU left over embeds the collection instead of new queries.
            stop.wait(0.05)

    worker = WorkerProcess(env, tmp_path / "worker.log")
    load = threading.Thread(target=search_load)
    try:
        worker.wait_ready()
        load.start()
        wait_for(lambda: len(outcomes) >= 3, 60, "searches before the switch")
        started = _cli(env, "model", "use", OTHER)
        assert "Embedding 22 image(s) with RN50/random (1024-d)" in started.stdout
        # Photos arriving during the switch are embedded by both models.
        _add_photos(tmp_path / "arriving", sample_photos, 4)
        _cli(env, "ingest", str(tmp_path / "arriving"))

        def done() -> bool:
            with db.session() as session:
                return active_model(session) == OTHER
        wait_for(done, 300, f"the switch to {OTHER}")
        switched.set()
        seen_after = len(outcomes)
        wait_for(lambda: len(outcomes) >= seen_after + 3, 60, "searches after the switch")
        wait_for(lambda: _embedded(db, OTHER) == _embedded(db, RANDOM_MODEL), 120,
                 "the arriving photos embedded by both models")
    finally:
        stop.set()
        if load.is_alive():
            load.join(timeout=60)
        worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert failures == [], failures
    assert {model for model, _, _ in outcomes} == {RANDOM_MODEL, OTHER}
    # Never a moment without results: every search found and showed images.
    assert min(total for _, total, _ in outcomes) >= 22 and min(shown for _, _, shown in outcomes) == 5
    # The order: the old model until the switch, the new one from then on, never back.
    models = [model for model, _, _ in outcomes]
    assert models == sorted(models, key=lambda m: m == OTHER)
    assert len(_embedded(db, OTHER)) == 26 and "now covers every image" in log
    with db.session() as session:
        states = {name: state for name, state in session.execute(select(SearchModel.name, SearchModel.state))}
    assert states == {OTHER: "active", RANDOM_MODEL: "kept"}

    refused = run_in_process(env, "model", "drop", OTHER, "--yes")
    assert refused.returncode == 1 and "is the active model" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    dropped = run_in_process(env, "model", "drop", RANDOM_MODEL, "--yes")
    assert dropped.returncode == 0, dropped.stderr
    assert "26 vector(s)" in dropped.stdout
    assert _embedded(db, RANDOM_MODEL) == set() and index_state(db.engine, RANDOM_MODEL) is None


def test_switch_refusals_are_one_sentence_and_change_nothing(
        db: Database, cli_env: dict[str, str], settings: Settings, encoder: ClipEncoder,
        sample_photos: list[Candidate]) -> None:
    ingest_inline(db, encoder, sample_photos[:2], settings=settings)

    def states() -> dict[str, str]:
        with db.session() as session:
            rows = session.execute(select(SearchModel.name, SearchModel.state))
            return {name: state for name, state in rows}

    before = states()
    cases = (
        (("model", "use", "ViT-B-33/openai"), "did you mean ViT-B-32/openai"),
        (("model", "use", "ViT-B-16/openai"), "ViT-B-16 weights are not on this machine"),
        (("model", "use", RANDOM_MODEL), "already the active model"),
        (("model", "drop", RANDOM_MODEL, "--yes"), "is the active model"),
        (("model", "drop", "ViT-L-14/openai", "--yes"), "No vectors of ViT-L-14/openai are stored here"),
        (("model", "use", "MobileCLIP-B/datacompdr"), "cannot load"),
        # The model asked for is named, not the catalogue entry its architecture shares.
        (("model", "use", "xlm-roberta-base-ViT-B-32/random"),
         "cannot load xlm-roberta-base-ViT-B-32/random on this machine"),
    )
    for args, expected in cases:
        result = run_in_process(cli_env, *args)
        assert result.returncode == 1 and expected in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert states() == before and index_state(db.engine, "ViT-B-16/openai") is None
    # A second switch while one is under way is refused, naming the way out.
    sent: list[tuple[list[int], str]] = []
    assert not use_model(db.engine, OTHER, force=False, batch_size=4,
                         enqueue=lambda ids, m: sent.append((ids, m))).switched
    with pytest.raises(SwitchError, match=f"A switch to {OTHER} is under way"):
        use_model(db.engine, "ViT-B-16/random", force=False, batch_size=4,
                  enqueue=lambda ids, m: None)
    assert drop_model(db.engine, OTHER).cancelled_switch
    assert states() == before


def test_a_forced_switch_searches_what_is_covered_and_a_stalled_one_is_queued_again(
        db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate]) -> None:
    ingest_inline(db, encoder, sample_photos[:6], settings=settings)
    sent: list[tuple[list[int], str]] = []
    started = use_model(db.engine, OTHER, force=False, batch_size=4,
                        enqueue=lambda ids, m: sent.append((ids, m)))
    assert not started.switched and started.queued_images == 6
    assert [m for _, m in sent] == [OTHER] and len(sent[0][0]) == 6
    with db.session() as session:
        # Nothing embedded it yet, but it was queued just now: not stalled.
        assert resume_stalled_switch(session, batch_size=4,
                                     enqueue=lambda ids, m: sent.append((ids, m))) == 0
        session.execute(text("UPDATE search_models SET queued_at = now() - interval '1 hour', "
                             "switch_started_at = now() - interval '1 hour' WHERE state = 'incoming'"))
        session.commit()
        assert resume_stalled_switch(session, batch_size=4,
                                     enqueue=lambda ids, m: sent.append((ids, m))) == 6
    assert len(sent) == 2 and sent[1] == sent[0]
    vector = np.ones(1024, dtype=np.float32)
    with db.session() as session:
        session.execute(Embedding.__table__.insert().values(  # type: ignore[attr-defined]
            image_id=sent[0][0][0], model=OTHER, embedding=vector / np.linalg.norm(vector)))
        session.commit()
    forced = use_model(db.engine, OTHER, force=True, batch_size=4, enqueue=lambda ids, m: None)
    assert forced.switched and forced.queued_images == 5
    with db.session() as session:
        assert active_model(session) == OTHER
        count = session.scalar(select(func.count()).select_from(Embedding).where(Embedding.model == OTHER))
    assert count == 1


def test_clipseek_model_decides_while_the_active_model_has_no_vectors(
        settings: Settings, encoder: ClipEncoder, sample_photos: list[Candidate]) -> None:
    # A first start with a model whose weights were missing left it active with nothing embedded.
    first = open_database(settings.with_changes(model="ViT-B-16/random"))
    first.close()
    db = open_database(settings)
    try:
        with db.session() as session:
            assert active_model(session) == RANDOM_MODEL
            assert session.get(SearchModel, "ViT-B-16/random") is None
        assert index_state(db.engine, "ViT-B-16/random") is None
        # Once it has vectors, the database decides: another CLIPSEEK_MODEL changes nothing.
        ingest_inline(db, encoder, sample_photos[:1], settings=settings)
    finally:
        db.close()
    again = open_database(settings.with_changes(model="ViT-B-16/random"))
    try:
        with again.session() as session:
            assert active_model(session) == RANDOM_MODEL
    finally:
        again.close()
