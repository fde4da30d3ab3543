"""Uploads file by file: a bad name or a row that cannot be written costs no other file, and
no stored file is ever left without its row."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image as PILImage
from sqlalchemy import select, text

from clipseek.library.store import LOCK_NAME
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image
from tests.images import photo_array
from webapp import create_app

API = {"X-Requested-With": "test"}

# A test-only trigger: the database refuses rows by their name, at insert or at commit.
REFUSING_TRIGGERS = """
CREATE FUNCTION refuse_now() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.original_name LIKE 'refused-now%' THEN RAISE EXCEPTION 'refused by the test'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_now BEFORE INSERT ON images FOR EACH ROW EXECUTE FUNCTION refuse_now();
CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.original_name LIKE 'refused-at-commit%' THEN RAISE EXCEPTION 'refused by the test'; END IF;
  RETURN NEW;
END $$;
CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON images DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION refuse_at_commit();
"""


def _make_app(settings: Settings, redis_url: str, *, testing: bool) -> Iterator[Flask]:
    application = create_app({"TESTING": testing}, settings=settings.with_changes(redis_url=redis_url))
    yield application
    application.extensions["clipseek"].close()


@pytest.fixture
def client(settings: Settings, redis_url: str) -> Iterator[FlaskClient]:
    for application in _make_app(settings, redis_url, testing=True):
        yield application.test_client()


@pytest.fixture
def refusing_db(db: Database) -> Database:
    with db.engine.begin() as conn:
        conn.execute(text(REFUSING_TRIGGERS))
    return db


def _jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(photo_array(seed, (120, 160))).save(out, format="JPEG")
    return out.getvalue()


def _store_files(settings: Settings) -> set[Path]:
    """Every stored picture: not the upload area, not the store's lock file."""
    store = settings.image_store
    return {p for p in store.rglob("*") if p.is_file() and p.name != LOCK_NAME
            and ".incoming" not in p.relative_to(store).parts}


def _incoming(settings: Settings) -> list[Path]:
    return list((settings.image_store / ".incoming").glob("*"))


def _rows(db: Database) -> dict[str, Image]:
    with db.session() as s:
        return {i.original_name: i for i in s.scalars(select(Image))}


def test_a_nul_in_one_file_name_costs_no_other_file(
    client: FlaskClient, db: Database, settings: Settings
) -> None:
    files = {"files": [(io.BytesIO(_jpeg(1)), "one.jpg"), (io.BytesIO(_jpeg(2)), "t\x00wo.jpg"),
                       (io.BytesIO(_jpeg(3)), "three.jpg")]}
    response = client.post("/api/images", data=files, headers=API, content_type="multipart/form-data")
    assert response.status_code == 202
    outcomes = response.get_json()["uploads"]
    assert [(o["filename"], o["state"]) for o in outcomes] == [
        ("one.jpg", "registered"), ("two.jpg", "registered"), ("three.jpg", "registered")]
    rows = _rows(db)
    assert sorted(rows) == ["one.jpg", "three.jpg", "two.jpg"]
    assert _store_files(settings) == {Path(i.path) for i in rows.values()}
    assert _incoming(settings) == []


def test_upload_form_cleans_control_characters_and_paths_from_names(
    client: FlaskClient, db: Database
) -> None:
    page = client.get("/upload").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    files = [(io.BytesIO(_jpeg(4)), "a\x00b\x1b[31m.jpg"),
             (io.BytesIO(_jpeg(5)), "\x00\x01"), (io.BytesIO(_jpeg(6)), "../../etc/\u202epasswd.jpg")]
    response = client.post("/upload", data={"csrf_token": token, "files": files},
                           content_type="multipart/form-data")
    assert response.status_code == 302
    assert sorted(_rows(db)) == ["ab[31m.jpg", "passwd.jpg", "upload"]


def test_a_file_whose_row_is_refused_is_removed_and_the_others_are_kept(
    client: FlaskClient, refusing_db: Database, settings: Settings
) -> None:
    files = {"files": [(io.BytesIO(_jpeg(7)), "kept.jpg"), (io.BytesIO(_jpeg(8)), "refused-now.jpg"),
                       (io.BytesIO(_jpeg(9)), "also-kept.jpg")]}
    response = client.post("/api/images", data=files, headers=API, content_type="multipart/form-data")
    assert response.status_code == 202
    outcomes = {o["filename"]: o for o in response.get_json()["uploads"]}
    assert outcomes["refused-now.jpg"]["state"] == "rejected"
    assert outcomes["refused-now.jpg"]["image_id"] is None
    assert "could not be recorded" in outcomes["refused-now.jpg"]["message"]
    assert outcomes["kept.jpg"]["state"] == outcomes["also-kept.jpg"]["state"] == "registered"
    rows = _rows(refusing_db)
    assert sorted(rows) == ["also-kept.jpg", "kept.jpg"]
    assert all(row.status == "queued" for row in rows.values())
    assert _store_files(settings) == {Path(i.path) for i in rows.values()}
    assert _incoming(settings) == []


def test_a_failed_commit_leaves_no_stored_file_behind(
    settings: Settings, redis_url: str, refusing_db: Database
) -> None:
    for application in _make_app(settings, redis_url, testing=False):
        files = {"files": [(io.BytesIO(_jpeg(10)), "fine.jpg"),
                           (io.BytesIO(_jpeg(11)), "refused-at-commit.jpg")]}
        response = application.test_client().post("/api/images", data=files, headers=API,
                                                  content_type="multipart/form-data")
        assert response.status_code == 500
        assert response.get_json()["error"]
    assert _rows(refusing_db) == {}
    assert _store_files(settings) == set()
    assert _incoming(settings) == []


def test_an_upload_records_what_its_exif_says(client: FlaskClient, db: Database) -> None:
    exif = PILImage.Exif()
    exif[271], exif[272], exif[274] = "Apple", "iPhone 15", 6
    exif.get_ifd(0x8769)[36867] = "2024:07:14 18:30:05"
    out = io.BytesIO()
    PILImage.fromarray(photo_array(4, (120, 160))).save(out, format="JPEG", exif=exif)
    files = {"files": [(io.BytesIO(out.getvalue()), "phone.jpg")]}
    response = client.post("/api/images", data=files, headers=API, content_type="multipart/form-data")
    assert response.status_code == 202
    row = _rows(db)["phone.jpg"]
    assert (row.camera_make, row.camera_model) == ("Apple", "iPhone 15")
    assert row.taken_at is not None and row.taken_at.isoformat() == "2024-07-14T18:30:05"
    assert (row.width, row.height, row.display_width, row.display_height) == (160, 120, 120, 160)
