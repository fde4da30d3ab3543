"""Every file refused at upload is kept with its reason; failed images are tried again on request."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from flask.testing import FlaskClient
from PIL import Image as PILImage
from sqlalchemy import select

from clipseek.clip.encoder import ClipEncoder
from clipseek.indexing.encoding import index_images
from clipseek.library.ingest import decode_pool
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image, ImageStatus
from tests.images import photo_array

API = {"X-Requested-With": "test"}


def _jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(photo_array(seed, (120, 160))).save(out, format="JPEG")
    return out.getvalue()


def _upload(client: FlaskClient, files: list[tuple[bytes, str]], **fields: object) -> list[dict[str, object]]:
    data: dict[str, object] = {"files": [(io.BytesIO(body), name) for body, name in files], **fields}
    response = client.post("/api/images", data=data, headers=API, content_type="multipart/form-data")
    assert response.status_code == 202, response.get_data(as_text=True)
    uploads: list[dict[str, object]] = response.get_json()["uploads"]
    return uploads


def test_rejected_uploads_are_remembered_on_the_upload_page_status_page_and_api(client: FlaskClient) -> None:
    outcomes = _upload(client, [(_jpeg(1), "fine.jpg"), (b"just some words\n", "notes-renamed.jpg")],
                       collection="trip",
                       too_large=json.dumps({"name": "huge.tif", "size": 60 * 1024 * 1024}))
    assert [(o["filename"], o["state"]) for o in outcomes] == [
        ("huge.tif", "rejected"), ("fine.jpg", "registered"), ("notes-renamed.jpg", "rejected")]

    # A later request, as after a reload: the rejections are still there, with their reasons.
    upload_page = client.get("/upload").get_data(as_text=True)
    assert "notes-renamed.jpg" in upload_page and "not an image format ClipSeek can read" in upload_page
    assert "huge.tif" in upload_page and "larger than the 50 MB limit" in upload_page
    status_page = client.get("/status").get_data(as_text=True)
    assert "Files refused at upload" in status_page and "notes-renamed.jpg" in status_page
    rejections = client.get("/api/status").get_json()["recent_rejections"]
    assert [(r["filename"], r["collection"], r["size"]) for r in rejections] == [
        ("notes-renamed.jpg", "trip", 16), ("huge.tif", "trip", 60 * 1024 * 1024)]
    assert "fine.jpg" not in {r["filename"] for r in rejections}


def test_a_malformed_too_large_field_is_a_clear_400(client: FlaskClient) -> None:
    response = client.post("/api/images", data={"too_large": "huge.tif"}, headers=API,
                           content_type="multipart/form-data")
    assert response.status_code == 400
    assert "too_large" in response.get_json()["error"]


def _index_now(db: Database, encoder: ClipEncoder, settings: Settings, ids: list[int]) -> None:
    with db.session() as session, decode_pool(settings) as pool:
        index_images(session, encoder, ids, pool=pool, batch_size=8, max_pixels=settings.max_image_pixels)


def _statuses(db: Database) -> dict[str, tuple[str, str | None]]:
    with db.session() as session:
        return {i.original_name: (i.status, i.error) for i in session.scalars(select(Image))}


def test_retry_queues_again_only_the_failures_another_try_can_mend(
    client: FlaskClient, db: Database, encoder: ClipEncoder, settings: Settings
) -> None:
    whole = _jpeg(3)
    truncated = whole[: len(whole) // 3]  # its header reads, its data does not: fails at indexing
    outcomes = _upload(client, [(_jpeg(2), "moved-away.jpg"), (truncated, "truncated.jpg")])
    ids = [int(str(o["image_id"])) for o in outcomes]
    with db.session() as session:
        stored = Path(session.scalars(select(Image.path).where(Image.id == ids[0])).one())
    aside = stored.with_name("aside")
    stored.rename(aside)  # the drive was away while a worker tried it
    _index_now(db, encoder, settings, ids)
    before = _statuses(db)
    assert before["moved-away.jpg"][0] == before["truncated.jpg"][0] == ImageStatus.FAILED
    assert "no longer exists" in str(before["moved-away.jpg"][1])
    listed = client.get(f"/api/images?ids={ids[0]},{ids[1]}").get_json()["images"]
    assert [i["retryable"] for i in listed] == [True, False]  # the page offers "Retry failed" by this

    aside.rename(stored)
    response = client.post("/api/images/retry", json={"ids": [*ids, 999]}, headers=API)
    assert response.status_code == 200
    assert response.get_json() == {"queued": [ids[0]], "not_retryable": [ids[1]], "not_failed": [999]}
    assert _statuses(db)["moved-away.jpg"] == (ImageStatus.QUEUED, None)
    _index_now(db, encoder, settings, ids)
    after = _statuses(db)
    assert after["moved-away.jpg"] == (ImageStatus.INDEXED, None)
    assert after["truncated.jpg"] == before["truncated.jpg"]


def test_retry_takes_form_ids_and_without_ids_is_a_clear_400(client: FlaskClient) -> None:
    response = client.post("/api/images/retry", data={"ids": "5,6"}, headers=API)
    assert response.get_json() == {"queued": [], "not_retryable": [], "not_failed": [5, 6]}
    response = client.post("/api/images/retry", json={"ids": []}, headers=API)
    assert response.status_code == 400
    assert "ids" in response.get_json()["error"]


def test_images_are_found_by_checksum_as_the_upload_page_asks_after_a_reload(client: FlaskClient) -> None:
    body = _jpeg(7)
    [stored] = _upload(client, [(body, "arrived.jpg")])
    sha = hashlib.sha256(body).hexdigest()
    unknown = hashlib.sha256(b"never sent").hexdigest()
    found = client.get(f"/api/images?sha256={sha.upper()},{unknown}").get_json()["images"]
    assert [(i["image_id"], i["sha256"], i["original_name"]) for i in found] == [
        (stored["image_id"], sha, "arrived.jpg")]
    bad = client.get("/api/images?sha256=abc")
    assert bad.status_code == 400 and "64 hexadecimal digits" in bad.get_json()["error"]
