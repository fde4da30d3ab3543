"""Words in pictures: read by the real PP-OCR models after indexing, kept as an `ocr` caption,
searched like captions, shown apart from them, and counted by status."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import select, update

from clipseek.clip.encoder import ClipEncoder
from clipseek.errors import ConfigError
from clipseek.indexing.broker import (
    READ_QUEUE,
    broker_client,
    create_celery,
    ids_read_in_broker,
    indexing_waits,
    send_index_task,
    send_read_task,
)
from clipseek.indexing.reading import make_way_for_indexing, read_words, reading_counts
from clipseek.indexing.text_reader import TextReader
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Caption, Image
from clipseek.upkeep.recovery import requeue_lost_reading
from clipseek.upkeep.status import collection_status
from tests.cli import run_in_process
from tests.images import photo_with_sign


@pytest.fixture(scope="module")
def reader() -> TextReader:
    """The real text reader, its models loaded once for this file."""
    text_reader = TextReader()
    text_reader.load()
    return text_reader


@pytest.fixture
def pictures(tmp_path: Path, sample_photos: list[Candidate]) -> dict[str, Path]:
    """A real photo with a sign whose words run together, and two real photos without text."""
    by_name = {c.path.name: c.path for c in sample_photos}
    folder = tmp_path / "pictures"
    sign = photo_with_sign(by_name["astronaut.jpg"], "FARMERSMARKET", folder / "IMG_0042.jpg")
    plain = {}
    for name in ("coffee.jpg", "cat.jpg"):
        plain[name] = folder / name
        plain[name].write_bytes(by_name[name].read_bytes())
    return {"sign": sign, **plain}


@pytest.fixture
def indexed(db: Database, encoder: ClipEncoder, settings: Settings,
            pictures: dict[str, Path]) -> dict[str, int]:
    """The pictures indexed by CLIP in this process, their words not read yet."""
    ingest_inline(db, encoder, [Candidate(path=p, source="folder") for p in pictures.values()],
                  settings=settings)
    with db.session() as s:
        ids = {Path(path).name: image_id for image_id, path in s.execute(select(Image.id, Image.path))}
    return {key: ids[path.name] for key, path in pictures.items()}


@pytest.fixture
def broker(settings: Settings, redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis, as the recovery and the worker read it."""
    client = broker_client(settings.with_changes(redis_url=redis_url))
    yield client
    client.close()


def _read(db: Database, reader: TextReader | None, ids: list[int]) -> None:
    with db.session() as s:
        read_words(s, reader, ids, max_pixels=100_000_000)


def _ocr_captions(db: Database) -> dict[int, Caption]:
    with db.session() as s:
        return {c.image_id: c for c in s.scalars(select(Caption).where(Caption.source == "ocr"))}


def test_a_sign_on_a_real_photo_is_kept_as_an_ocr_caption_and_a_photo_without_text_as_none(
    db: Database, reader: TextReader, indexed: dict[str, int],
) -> None:
    with db.session() as s:
        assert {i.ocr_state for i in s.scalars(select(Image))} == {None}  # indexed, waiting
    _read(db, reader, list(indexed.values()))
    found = _ocr_captions(db)
    assert set(found) == {indexed["sign"]}
    sign = found[indexed["sign"]]
    assert sign.text == "FARMERS MARKET"  # read as FARMERSMARKET, the words recovered
    assert sign.confidence is not None and 0.75 <= sign.confidence <= 1
    assert sign.boxes is not None and len(sign.boxes) == 1 and len(sign.boxes[0]) == 4
    assert all(0 <= x <= 512 and 0 <= y <= 512 for x, y in sign.boxes[0])  # in the photo's pixels
    with db.session() as s:
        images = s.scalars(select(Image)).all()
        assert {i.ocr_state for i in images} == {"read"} and {i.status for i in images} == {"indexed"}
        assert all(i.ocr_at is not None and i.ocr_error is None for i in images)
        counts = reading_counts(s)
    assert (counts.read, counts.with_text, counts.waiting, counts.failed) == (3, 1, 0, 0)
    _read(db, reader, list(indexed.values()))  # read twice: nothing changes
    assert list(_ocr_captions(db)) == [indexed["sign"]]


def test_the_sign_is_found_by_its_quoted_words_in_text_mode_and_first_in_hybrid_mode(
    db: Database, reader: TextReader, indexed: dict[str, int], cli_env: dict[str, str],
) -> None:
    _read(db, reader, list(indexed.values()))
    text = run_in_process(cli_env, "search", '"farmers market"', "--mode", "text", "--json")
    assert text.returncode == 0, text.stderr
    results = json.loads(text.stdout)["results"]
    assert [r["image_id"] for r in results] == [indexed["sign"]]
    assert results[0]["captions"] == []  # the words read are searched, not shown as a caption
    hybrid = run_in_process(cli_env, "search", "farmers market", "--mode", "hybrid", "--json")
    assert json.loads(hybrid.stdout)["results"][0]["image_id"] == indexed["sign"]


def test_a_file_unreadable_when_its_turn_comes_fails_reading_with_its_reason_and_stays_searchable(
    db: Database, reader: TextReader, indexed: dict[str, int], pictures: dict[str, Path],
    settings: Settings,
) -> None:
    pictures["coffee.jpg"].write_bytes(b"no longer a picture")
    _read(db, reader, list(indexed.values()))
    with db.session() as s:
        coffee = s.get(Image, indexed["coffee.jpg"])
        assert coffee is not None
        assert (coffee.status, coffee.ocr_state) == ("indexed", "failed")
        assert coffee.ocr_error == "not an image format ClipSeek can read" and coffee.error is None
        report = collection_status(s, model=settings.model)
    assert report.by_status["indexed"] == 3 and report.by_status["failed"] == 0
    assert report.reading is not None and report.reading.failed == 1
    assert [(f.image_id, f.error) for f in report.reading.recent_failures] == [
        (indexed["coffee.jpg"], "not an image format ClipSeek can read")]
    assert report.to_dict()["words_in_pictures"]["failed"] == 1  # type: ignore[index]


def test_with_reading_off_pictures_are_skipped_and_reindex_ocr_sends_them_again(
    db: Database, indexed: dict[str, int], cli_env: dict[str, str], redis_url: str,
    broker: redis.Redis,
) -> None:
    _read(db, None, list(indexed.values()))
    with db.session() as s:
        assert {i.ocr_state for i in s.scalars(select(Image))} == {"skipped"}
    assert _ocr_captions(db) == {}
    env = cli_env | {"REDIS_URL": redis_url, "CLIPSEEK_OCR": "1"}
    off = run_in_process(env | {"CLIPSEEK_OCR": "0"}, "reindex", "--ocr")
    assert off.returncode == 1 and "CLIPSEEK_OCR=0" in off.stderr
    status = run_in_process(env | {"CLIPSEEK_OCR": "0"}, "status")
    assert "Words in pictures: 0 picture(s) read (0 with text), 0 waiting, 0 failed, 3 skipped; " \
           "reading is off" in status.stdout
    again = run_in_process(env, "reindex", "--ocr")
    assert again.returncode == 0, again.stderr
    assert "Sent 3 picture(s) to be read for words." in again.stdout
    assert ids_read_in_broker(broker) == set(indexed.values())
    with db.session() as s:
        assert {i.ocr_state for i in s.scalars(select(Image))} == {None}


def test_reading_hands_the_rest_back_when_indexing_waits(
    db: Database, reader: TextReader, indexed: dict[str, int],
) -> None:
    asked = []

    def hand_over() -> bool:
        asked.append(1)
        return len(asked) > 1  # an index task arrives while the first picture is read

    ids = sorted(indexed.values())
    with db.session() as s:
        report = read_words(s, reader, ids, max_pixels=100_000_000, hand_over=hand_over)
    assert report.read == ids[:1] and report.handed_back == ids[1:]


def test_recovery_sends_waiting_pictures_that_nothing_holds_once(
    db: Database, indexed: dict[str, int], broker: redis.Redis, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A whole collection may wait (after an upgrade): ids go to the database in slices.
    monkeypatch.setattr("clipseek.indexing.reading.IDS_PER_STATEMENT", 2)
    sent: list[list[int]] = []

    def enqueue(ids: list[int]) -> None:
        sent.append(ids)
        broker.lpush(READ_QUEUE, json.dumps({
            "headers": {"task": "clipseek.read_words", "id": f"t{len(sent)}"},
            "properties": {"body_encoding": "utf-8"}, "body": json.dumps([[ids], {}, {}])}))

    with db.session() as s:
        lost = requeue_lost_reading(s, broker, enqueue=enqueue, grace_s=0)
    assert sorted(lost) == sorted(indexed.values()) and sent == [sorted(indexed.values())]
    with db.session() as s:  # now the broker holds them: nothing is sent twice
        assert requeue_lost_reading(s, broker, enqueue=enqueue, grace_s=0) == []
    assert len(sent) == 1


def test_the_image_page_and_the_api_show_the_text_found_apart_from_the_captions(
    db: Database, reader: TextReader, indexed: dict[str, int], client: FlaskClient,
) -> None:
    _read(db, reader, list(indexed.values()))
    sign = indexed["sign"]
    details = client.get(f"/api/images/{sign}").get_json()
    assert details["captions"] == [] and details["caption_details"] == []
    assert details["text_found"]["lines"] == ["FARMERS MARKET"]
    assert details["text_found"]["state"] == "read" and details["text_found"]["confidence"] > 0.75
    page = client.get(f"/image/{sign}").get_data(as_text=True)
    assert "Text found in the picture" in page and "FARMERS MARKET" in page
    assert 'alt="IMG_0042.jpg"' in page and "No captions yet." in page
    # A derived caption is no caption to edit or delete.
    caption_id = _ocr_captions(db)[sign].id
    api = {"X-Requested-With": "test"}
    assert client.put(f"/api/captions/{caption_id}", headers=api, json={"text": "changed"}).status_code == 404
    assert client.delete(f"/api/captions/{caption_id}", headers=api).status_code == 404
    assert _ocr_captions(db)[sign].text == "FARMERS MARKET"
    status = client.get("/api/status").get_json()["words_in_pictures"]
    assert (status["read"], status["with_text"], status["waiting"]) == (3, 1, 0)
    assert "Words in pictures" in client.get("/status").get_data(as_text=True)


def test_reading_is_on_unless_clipseek_ocr_says_off() -> None:
    home = {"CLIPSEEK_HOME": "/tmp/clipseek-settings-test"}
    assert Settings.from_env(home).ocr is True
    assert Settings.from_env(home | {"CLIPSEEK_OCR": "0"}).ocr is False
    assert Settings.from_env(home | {"CLIPSEEK_OCR": "off"}).ocr is False
    with pytest.raises(ConfigError, match=re.escape("CLIPSEEK_OCR must be 1 (on) or 0 (off), not 'maybe'.")):
        Settings.from_env(home | {"CLIPSEEK_OCR": "maybe"})


def test_a_reading_worker_sees_an_index_task_waiting_in_the_broker(
    settings: Settings, redis_url: str, broker: redis.Redis,
) -> None:
    assert indexing_waits(broker) is False
    app = create_celery(settings.with_changes(redis_url=redis_url))
    try:
        send_index_task(app, [1, 2], settings.model)
        assert indexing_waits(broker) is True
        send_read_task(app, [1, 2])
        assert ids_read_in_broker(broker) == {1, 2}
    finally:
        app.close()


def test_reading_makes_way_while_pictures_wait_to_be_indexed(db: Database, indexed: dict[str, int]) -> None:
    with db.session() as s:
        assert make_way_for_indexing(s, lambda: False) is False  # nothing waits: read on
        assert make_way_for_indexing(s, lambda: True) is True  # an index task waits
        # A picture registered but not yet sent (an import under way): wait for its task,
        # and hand the turn over when it comes ...
        s.execute(update(Image).where(Image.id == indexed["cat.jpg"]).values(status="registered"))
        s.commit()
        calls = iter([False, False, True])
        assert make_way_for_indexing(s, lambda: next(calls), poll_s=0.01) is True
        # ... or when waiting has lasted long enough.
        started = time.monotonic()
        assert make_way_for_indexing(s, lambda: False, patience_s=0.2, poll_s=0.01) is True
        assert time.monotonic() - started >= 0.2
