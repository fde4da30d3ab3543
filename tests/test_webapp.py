"""The Flask app through its test client: every page and API route, and their error paths."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from PIL import Image as PILImage
from sqlalchemy import event, select

from clipseek.clip.encoder import ClipEncoder
from clipseek.library.ingest import decode_pool, ingest_inline, register_candidates
from clipseek.library.register import Candidate
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image
from tests.images import photo_array

API = {"X-Requested-With": "test"}


@pytest.fixture
def indexed(app: Flask, indexed_samples: list[int]) -> list[int]:
    """The app's database holds the sample photos, indexed: their ids."""
    return indexed_samples


def _csrf(client: FlaskClient) -> str:
    page = client.get("/upload").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def _jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(photo_array(seed, (240, 320))).save(out, format="JPEG")
    return out.getvalue()


def test_search_page_shows_ranked_thumbnails_with_scores(client: FlaskClient, indexed: list[int]) -> None:
    page = client.get("/?q=a+cat&per_page=12")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert html.count('class="hit"') == 12
    assert "22 images searched in" in html and "page 1 of 2" in html
    assert 'href="/?page=2&amp;q=a+cat&amp;per_page=12"' in html or "page=2" in html
    assert "random weights" in html  # the banner for the test model
    assert re.fullmatch(r"encode;dur=[0-9.]+, query;dur=[0-9.]+", page.headers["Server-Timing"])
    second = client.get("/?q=a+cat&per_page=12&page=2").get_data(as_text=True)
    assert second.count('class="hit"') == 10 and 'start="13"' in second


def test_a_results_page_runs_the_same_few_statements_however_many_hits_it_shows(
        client: FlaskClient, app: Flask, indexed: list[int]) -> None:
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    engine = app.extensions["clipseek"].db.engine
    client.get("/?q=a+cat")  # the first request loads the model
    per_page_statements = {}
    event.listen(engine, "before_cursor_execute", record)
    try:
        for per_page in (2, 20):
            statements.clear()
            html = client.get(f"/?q=a+cat&per_page={per_page}").get_data(as_text=True)
            assert html.count('class="hit"') == per_page and 'class="caption"' in html
            per_page_statements[per_page] = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # The active model, whether captions exist, the searchable and pending counts, the
    # cutoff, the index walk's settings, the ranking, the hits with their captions, and the
    # albums (for the album filter and the selection bar's "Add to album").
    assert per_page_statements[2] == per_page_statements[20] <= 9, per_page_statements


def test_search_page_explains_bad_queries(client: FlaskClient, indexed: list[int]) -> None:
    # No query: the collection, newest first, at an address without the blank words.
    empty = client.get("/?q=++", follow_redirects=True)
    assert empty.request.path == "/" and not empty.request.query_string
    assert empty.status_code == 200 and "Newest first" in empty.get_data(as_text=True)
    long = client.get("/?q=" + "a" * 1200)
    assert long.status_code == 400 and "keep it under 1000" in long.get_data(as_text=True)
    bad_page = client.get("/?q=cat&page=x")
    assert bad_page.status_code == 400 and "whole number" in bad_page.get_data(as_text=True)


def test_empty_collection_gets_a_message_not_an_error(client: FlaskClient) -> None:
    page = client.get("/?q=a+cat")
    assert page.status_code == 200 and "No images are indexed yet" in page.get_data(as_text=True)


def test_pictures_still_being_indexed_are_announced_not_hidden(
    app: Flask, client: FlaskClient, encoder: ClipEncoder, sample_photos: list[Candidate]
) -> None:
    ctx = app.extensions["clipseek"]
    with decode_pool(ctx.settings) as pool:
        register_candidates(ctx.db, sample_photos[3:], settings=ctx.settings, pool=pool)
    for waiting in (client.get("/"), client.get("/?q=a+cat")):
        html = waiting.get_data(as_text=True)
        assert "No pictures are searchable yet: 19 are still being indexed" in html
        assert "No images are indexed yet" not in html
    ingest_inline(ctx.db, encoder, sample_photos[:3], settings=ctx.settings)
    first_screen = client.get("/").get_data(as_text=True)
    assert "3 of 22 pictures are searchable; 19 are still being indexed" in first_screen
    results = client.get("/?q=a+cat").get_data(as_text=True)
    assert "3 images searched in" in results and "19 more are still being indexed" in results


def test_an_empty_collection_says_how_to_add_pictures(client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)
    assert "No images are indexed yet" in html and "being indexed" not in html
    assert '<a href="/upload">Upload some pictures</a>' in html


def test_user_text_is_escaped(client: FlaskClient, indexed: list[int]) -> None:
    html = client.get("/?q=<script>alert(1)</script>").get_data(as_text=True)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_image_page_and_similar_images(client: FlaskClient, indexed: list[int]) -> None:
    html = client.get(f"/image/{indexed[0]}").get_data(as_text=True)
    assert "Similar images" in html and html.count('class="hit"') == 12
    assert "an astronaut in a white space suit" in html
    similar = client.get(f"/image/{indexed[0]}/similar?per_page=12&page=2").get_data(as_text=True)
    assert similar.count('class="hit"') == 9  # 21 others, 12 on page 1
    assert client.get("/image/999999").status_code == 404


def test_thumbnails_are_cached_and_served_with_caching_headers(
    client: FlaskClient, indexed: list[int], settings: Settings
) -> None:
    first = client.get(f"/thumb/{indexed[0]}.jpg")
    assert first.status_code == 200 and first.mimetype == "image/jpeg"
    assert "max-age=31536000" in first.headers["Cache-Control"] and first.headers["ETag"]
    cached = list(settings.thumbnails.rglob("*.jpg"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    again = client.get(f"/thumb/{indexed[0]}.jpg", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and cached[0].stat().st_mtime_ns == stamp
    with PILImage.open(io.BytesIO(first.data)) as thumb:
        assert max(thumb.size) == 320
    first.close()
    again.close()


def test_originals_are_served_by_id_only(client: FlaskClient, indexed: list[int]) -> None:
    original = client.get(f"/file/{indexed[0]}")
    assert original.mimetype == "image/jpeg" and original.data[:2] == b"\xff\xd8"
    original.close()
    assert client.get("/file/../../etc/passwd").status_code == 404
    assert client.get("/file/999999").status_code == 404


def test_upload_form_stores_good_files_and_rejects_bad_ones(
    client: FlaskClient, db: Database, settings: Settings
) -> None:
    token = _csrf(client)
    data = {"csrf_token": token, "files": [
        (io.BytesIO(_jpeg(1)), "one.jpg"), (io.BytesIO(_jpeg(2)), "two.jpg"),
        (io.BytesIO(b"not an image"), "notes.txt"), (io.BytesIO(_jpeg(1)), "one-again.jpg"),
    ]}
    response = client.post("/upload", data=data, content_type="multipart/form-data",
                           follow_redirects=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "notes.txt refused: not an image format ClipSeek can read" in html
    assert "one-again.jpg: already in the collection" in html
    with db.session() as s:
        images = s.scalars(select(Image)).all()
    assert sorted(i.original_name for i in images) == ["one.jpg", "two.jpg"]
    assert all(i.status == "queued" and Path(i.path).is_relative_to(settings.image_store)
               for i in images)
    assert html.count("status-queued") == 2


def test_upload_without_csrf_token_is_refused(client: FlaskClient) -> None:
    response = client.post("/upload", data={"files": [(io.BytesIO(_jpeg(3)), "x.jpg")]},
                           content_type="multipart/form-data")
    assert response.status_code == 400 and "another site" in response.get_data(as_text=True)


def test_oversized_request_is_refused_before_it_is_read(client: FlaskClient) -> None:
    # Only the declared length is large: the server must refuse without reading the body.
    response = client.post("/api/images", headers=API, data=b"--x--",
                           content_type="multipart/form-data; boundary=x",
                           environ_overrides={"CONTENT_LENGTH": str(300 * 1024 * 1024)})
    assert response.status_code == 413 and "too large" in response.get_json()["error"]


def test_api_search_image_similar_status(client: FlaskClient, indexed: list[int]) -> None:
    data = client.get("/api/search?q=a+rocket&per_page=5&page=2").get_json()
    assert data["page"] == 2 and data["total"] == 22 and len(data["results"]) == 5
    assert data["results"][0]["rank"] == 6 and data["random_weights"] is True
    with client.application.test_request_context():
        for hit in data["results"]:
            # Each URL as url_for builds it (the page fills in one template per URL).
            assert (hit["thumbnail_url"], hit["image_url"], hit["page_url"]) == tuple(
                url_for(e, image_id=hit["image_id"]) for e in ("files.thumbnail", "files.original",
                                                                 "pages.image"))
            assert hit["thumbnail_url"] == f"/thumb/{hit['image_id']}.jpg"
    image = client.get(f"/api/images/{indexed[1]}").get_json()
    assert image["status"] == "indexed" and image["captions"] == ["a cup of coffee on a saucer with a spoon"]
    similar = client.get(f"/api/images/{indexed[1]}/similar?per_page=3").get_json()
    assert len(similar["results"]) == 3 and indexed[1] not in [r["image_id"] for r in similar["results"]]
    status = client.get("/api/status").get_json()
    assert status["by_status"]["indexed"] == 22 and status["queue_depth"] == 0
    assert client.get("/api/images/999999").get_json()["error"] == "There is no image 999999."
    assert client.get("/api/search?q=").get_json()["mode"] == "browse"  # no query: newest first
    assert client.get("/api/search?q=cat&colour=red").status_code == 400


def test_api_upload_returns_each_files_outcome(client: FlaskClient) -> None:
    files = {"files": [(io.BytesIO(_jpeg(4)), "a.jpg"), (io.BytesIO(b""), "empty.jpg")]}
    response = client.post("/api/images", data=files, headers=API, content_type="multipart/form-data")
    assert response.status_code == 202
    outcomes = {u["filename"]: u for u in response.get_json()["uploads"]}
    assert outcomes["a.jpg"]["state"] == "registered" and outcomes["a.jpg"]["image_id"]
    assert outcomes["empty.jpg"] == {"filename": "empty.jpg", "image_id": None, "state": "rejected",
                                     "message": "the file is empty", "size": 0,
                                     "looks_like": None}
    not_indexed = client.get(f"/api/images/{outcomes['a.jpg']['image_id']}/similar")
    assert not_indexed.status_code == 409
    assert client.post("/api/images", headers=API).get_json()["error"].startswith("Choose one")


def test_search_by_example_image(client: FlaskClient, indexed: list[int],
                                 sample_photos: list[Candidate]) -> None:
    picture = io.BytesIO(sample_photos[2].path.read_bytes())
    data = {"csrf_token": _csrf(client), "per_page": "12", "image": (picture, "cat.jpg")}
    response = client.post("/search/by-image", data=data, content_type="multipart/form-data")
    assert response.status_code == 303 and "example=" in response.headers["Location"]
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Pictures like your example" in html and html.count('class="hit"') == 12
    second = client.get(response.headers["Location"] + "&page=2").get_data(as_text=True)
    assert second.count('class="hit"') == 10 and 'start="13"' in second
    # the same picture is in the collection, so it ranks first with a score of about 1
    first = re.search(r'class="rank">#1</span>\s*<span class="score"[^>]*>([0-9.]+)<', html)
    assert first and float(first.group(1)) > 0.99


def test_status_page_lists_counts_and_failures(client: FlaskClient, indexed: list[int]) -> None:
    html = client.get("/status").get_data(as_text=True)
    assert 'id="count-indexed">22<' in html and "ViT-B-32/random" in html
