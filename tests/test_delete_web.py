"""Deleting (into the trash) and collections on the web: the image page's button, DELETE
/api/images/<id>, /api/collections."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image as PILImage
from sqlalchemy import select

from clipseek.clip.encoder import ClipEncoder
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate
from clipseek.settings import Settings
from clipseek.store.tables import Image
from tests.images import photo_array

API = {"X-Requested-With": "test"}


@pytest.fixture
def indexed(app: Flask, encoder: ClipEncoder, sample_photos: list[Candidate]) -> list[int]:
    ctx = app.extensions["clipseek"]
    return sorted(ingest_inline(ctx.db, encoder, sample_photos[:4], settings=ctx.settings).indexed.indexed)


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def _jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(photo_array(seed, (240, 320))).save(out, format="JPEG")
    return out.getvalue()


def _image(app: Flask, image_id: int) -> Image | None:
    with app.extensions["clipseek"].db.session() as session:
        return session.get(Image, image_id)  # type: ignore[no-any-return]


def test_image_page_delete_button_asks_first_and_returns_to_search(
    client: FlaskClient, app: Flask, indexed: list[int], sample_photos: list[Candidate],
) -> None:
    page = client.get(f"/image/{indexed[0]}").get_data(as_text=True)
    form = re.search(r'<form class="delete" action="([^"]+)" method="post"\s+data-confirm="([^"]+)"', page)
    assert form and form.group(1) == f"/image/{indexed[0]}/delete" and "to the trash" in form.group(2)
    assert "onsubmit" not in page  # the confirmation lives in confirm.js, loaded in <head>
    head = page.split("</head>")[0]
    assert re.search(r'<script src="/static/confirm\.js"></script>', head)  # not deferred
    script = client.get("/static/confirm.js")
    body = script.get_data(as_text=True)
    script.close()
    assert "dataset.confirm" in body and "window.confirm" in body
    assert client.post(form.group(1)).status_code == 400  # no CSRF token
    answer = client.post(form.group(1), data={"csrf_token": _csrf(page)})
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    assert f"(image {indexed[0]}) to the trash" in client.get("/").get_data(as_text=True)
    trashed = _image(app, indexed[0])
    assert trashed is not None and trashed.trashed_at is not None and sample_photos[0].path.exists()
    gone = client.get(f"/image/{indexed[0]}")
    assert gone.status_code == 404 and "is in the trash" in gone.get_data(as_text=True)


def test_api_delete_moves_an_upload_to_the_trash_and_keeps_its_stored_file_until_emptied(
        client: FlaskClient, app: Flask, settings: Settings) -> None:
    sent = client.post("/api/images", headers=API, data={
        "files": [(io.BytesIO(_jpeg(1)), "one.jpg"), (io.BytesIO(_jpeg(2)), "two.jpg")],
        "collection": "Garden"})
    ids = [u["image_id"] for u in sent.get_json()["uploads"]]
    assert sent.status_code == 202 and len(ids) == 2
    stored = Path(_image(app, ids[0]).path)  # type: ignore[union-attr]
    assert stored.is_relative_to(settings.image_store) and stored.exists()
    assert client.delete(f"/api/images/{ids[0]}").status_code == 400  # no header, no token
    answer = client.delete(f"/api/images/{ids[0]}", headers=API)
    assert answer.status_code == 200
    assert answer.get_json() == {"deleted": [ids[0]], "in_trash": True, "removed_files": [],
                                 "removed_derived_files": 0, "kept_originals": 0, "not_removed": {}}
    assert stored.exists()
    gone = client.delete(f"/api/images/{ids[0]}", headers=API)
    assert gone.status_code == 404
    assert gone.get_json()["error"] == f"Image {ids[0]} is in the trash; the Trash page restores it."
    emptied = client.post("/api/trash/empty", headers=API)
    assert emptied.get_json()["removed_files"] == [str(stored)] and not stored.exists()
    missing = client.delete(f"/api/images/{ids[0]}", headers=API)
    assert missing.status_code == 404 and missing.get_json()["error"] == f"There is no image {ids[0]}."
    assert client.get("/api/collections").get_json() == {"collections": [
        {"name": "Garden", "images": 1,
         "by_status": {"registered": 0, "queued": 1, "indexed": 0, "failed": 0,
                       "missing": 0}}]}


def test_uploads_go_to_the_uploads_collection_unless_the_form_names_one(
    client: FlaskClient, app: Flask,
) -> None:
    page = client.get("/upload").get_data(as_text=True)
    assert 'name="collection" value="uploads"' in page
    token = _csrf(page)
    client.post("/upload", data={"csrf_token": token, "files": [(io.BytesIO(_jpeg(3)), "a.jpg")]})
    client.post("/upload", data={"csrf_token": token, "collection": "Cats",
                                 "files": [(io.BytesIO(_jpeg(4)), "b.jpg")]})
    with app.extensions["clipseek"].db.session() as session:
        assert sorted(session.scalars(select(Image.collection))) == ["Cats", "uploads"]
    bad = client.post("/api/images", headers=API, data={"collection": "a\x00b",
                                                       "files": [(io.BytesIO(_jpeg(5)), "c.jpg")]})
    assert bad.status_code == 400
    # Refused at the edge, as every request holding a NUL is.
    assert bad.get_json()["error"].startswith("Text in a request cannot contain a NUL character")
    tabbed = client.post("/api/images", headers=API, data={"collection": "a\x07b",
                                                          "files": [(io.BytesIO(_jpeg(5)), "c.jpg")]})
    assert tabbed.status_code == 400
    assert "collection name cannot contain" in tabbed.get_json()["error"]
