"""The trash on the web: deleting moves pictures there, the Trash page and its API, who may do what."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image as PILImage
from sqlalchemy import select

from clipseek import accounts
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import AuditEvent, Image, Role
from tests.images import photo_array
from webapp import create_app

API = {"X-Requested-With": "test"}
PASSWORD = "correct horse battery"


def _jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(photo_array(seed, (240, 320))).save(out, format="JPEG")
    return out.getvalue()


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def _upload(client: FlaskClient, *seeds: int, collection: str = "uploads") -> list[int]:
    sent = client.post("/api/images", headers=API, data={
        "files": [(io.BytesIO(_jpeg(s)), f"p{s}.jpg") for s in seeds], "collection": collection})
    assert sent.status_code == 202
    return [u["image_id"] for u in sent.get_json()["uploads"]]


def test_deleting_a_collection_of_uploads_does_not_claim_their_files_are_kept(
    client: FlaskClient,
) -> None:
    _upload(client, 1, 2)
    page = client.get("/collections").get_data(as_text=True)
    done = client.post("/collections/delete", data={"name": "uploads", "csrf_token": _csrf(page)},
                       follow_redirects=True)
    said = done.get_data(as_text=True)
    assert done.status_code == 200
    assert "original files are kept" not in said, said
    assert "Moved the 2 images of uploads to the trash; the Trash page restores them for 30 days." in said
    assert client.get("/api/trash").get_json()["total"] == 2


def _stored(app: Flask, image_id: int) -> Path:
    with app.extensions["clipseek"].db.session() as session:
        return Path(session.scalars(select(Image.path).where(Image.id == image_id)).one())


def test_the_trash_page_restores_and_removes_for_good_as_the_api_does(
    app: Flask, client: FlaskClient, settings: Settings,
) -> None:
    first, second, third = _upload(client, 1, 2, 3)
    stored = _stored(app, first)
    gone = client.delete(f"/api/images/{first}", headers=API)
    assert gone.status_code == 200 and gone.get_json()["in_trash"] is True
    assert stored.exists()  # an upload's file goes only when the trash is emptied
    hidden = client.get(f"/api/images/{first}", headers=API)
    assert hidden.status_code == 404 and "in the trash" in hidden.get_json()["error"]
    again = client.post("/api/images", headers=API, data={"files": [(io.BytesIO(_jpeg(1)), "p1.jpg")]})
    assert again.get_json()["uploads"][0]["message"] == "in the trash (the Trash page restores it)"
    assert client.get(f"/api/images?ids={first},{second}").get_json()["images"][0]["image_id"] == second
    assert client.get("/api/status").get_json()["in_trash"] == 1

    page = client.get("/trash").get_data(as_text=True)
    assert ">Trash</a>" in page  # the menu link, for everyone in the local mode
    assert "1 picture, most recently deleted first" in page and "30 days left" in page
    assert f'action="/trash/{first}/restore"' in page and f'action="/trash/{first}/delete"' in page
    assert 'action="/trash/empty"' in page and f'src="/thumb/{first}.jpg"' in page
    thumbnail = client.get(f"/thumb/{first}.jpg")
    thumbnail.close()
    assert thumbnail.status_code == 200  # the trash page shows it
    token = _csrf(page)
    assert client.post(f"/trash/{first}/restore").status_code == 400  # no CSRF token
    restored = client.post(f"/trash/{first}/restore", data={"csrf_token": token}, follow_redirects=True)
    assert "Restored p1.jpg." in restored.get_data(as_text=True)
    assert client.get(f"/api/images/{first}").status_code == 200
    again = client.post(f"/trash/{first}/restore", data={"csrf_token": token})
    assert again.status_code == 404

    client.delete(f"/api/images/{first}", headers=API)
    removed = client.post(f"/trash/{first}/delete", data={"csrf_token": token}, follow_redirects=True)
    assert f"Removed image {first} for good." in removed.get_data(as_text=True)
    assert not stored.exists() and client.get(f"/api/images/{first}").status_code == 404

    client.delete(f"/api/images/{second}", headers=API)
    client.delete(f"/api/images/{third}", headers=API)
    listed = client.get("/api/trash").get_json()
    assert listed["total"] == 2 and listed["keep_days"] == settings.trash_days
    assert {p["image_id"] for p in listed["pictures"]} == {second, third}
    assert listed["pictures"][0]["days_left"] == 30 and listed["pictures"][0]["trashed_by"] is None
    unclear = client.post("/api/trash/restore", json={"ids": [second], "all": True}, headers=API)
    assert unclear.status_code == 400 and "Say which pictures to restore" in unclear.get_json()["error"]
    # Not indexed yet (no worker runs here): back from the trash, it is queued again.
    assert client.post("/api/trash/restore", json={"ids": [second]}, headers=API).get_json() == {
        "restored": [second], "queued": [second]}
    bad = client.post("/api/trash/empty", json={"older_than_days": "ten"}, headers=API)
    assert bad.status_code == 400 and "older_than_days" in bad.get_json()["error"]
    kept = client.post("/api/trash/empty", json={"older_than_days": 1}, headers=API).get_json()
    assert kept["deleted"] == []
    third_file = _stored(app, third)
    emptied = client.post("/api/trash/empty", headers=API).get_json()
    assert emptied["deleted"] == [third] and emptied["removed_files"] == [str(third_file)]
    assert client.delete(f"/api/trash/{third}", headers=API).status_code == 404
    assert client.get("/trash").get_data(as_text=True).count("The trash is empty.") == 1


@pytest.fixture
def accounts_app(settings: Settings, redis_url: str, db: Database) -> Iterator[Flask]:
    """The web app in the accounts mode, with an admin, two contributors and a viewer."""
    with db.session() as session:
        for name, role in (("admin", Role.ADMIN), ("ann", Role.CONTRIBUTOR), ("bob", Role.CONTRIBUTOR),
                           ("vic", Role.VIEWER)):
            accounts.add_user(session, name=name, secret=PASSWORD, user_role=role)
        session.commit()
    application = create_app({"TESTING": True},
                             settings=settings.with_changes(require_accounts=True, redis_url=redis_url))
    yield application
    application.extensions["clipseek"].close()


def _sign_in(app: Flask, name: str) -> FlaskClient:
    client = app.test_client()
    token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/login").get_data(as_text=True))
    assert token
    answer = client.post("/login", data={"csrf_token": token.group(1), "name": name, "password": PASSWORD})
    assert answer.status_code == 302
    return client


def _meta_csrf(client: FlaskClient, path: str = "/") -> dict[str, str]:
    token = re.search(r'name="csrf-token" content="([^"]+)"', client.get(path).get_data(as_text=True))
    assert token
    return {"X-CSRF-Token": token.group(1), **API}


def test_contributors_restore_their_own_pictures_and_only_admins_remove_for_good(
    accounts_app: Flask,
) -> None:
    ann, bob, admin, vic = (_sign_in(accounts_app, n) for n in ("ann", "bob", "admin", "vic"))
    [mine] = _upload_as(ann, 1)
    [theirs] = _upload_as(bob, 2)
    for who, image_id in ((ann, mine), (bob, theirs)):
        assert who.delete(f"/api/images/{image_id}", headers=_meta_csrf(who)).status_code == 200
    assert ">Trash</a>" in ann.get("/").get_data(as_text=True)
    assert ">Trash</a>" not in vic.get("/").get_data(as_text=True)
    assert vic.get("/trash").status_code == 403
    page = ann.get("/trash").get_data(as_text=True)
    assert "p1.jpg" in page and "p2.jpg" not in page  # a contributor sees only their own uploads
    assert "Delete now" not in page and "Empty trash" not in page and "by ann" in page
    headers = _meta_csrf(ann)
    assert ann.post(f"/api/trash/{theirs}/restore", headers=headers).status_code == 403
    assert ann.post("/api/trash/empty", headers=headers).status_code == 403
    assert ann.delete(f"/api/trash/{mine}", headers=headers).status_code == 403
    assert ann.post(f"/api/trash/{mine}/restore", headers=headers).get_json()["restored"] == [mine]
    assert "p2.jpg" in admin.get("/trash").get_data(as_text=True)
    emptied = admin.post("/api/trash/empty", headers=_meta_csrf(admin))
    assert emptied.status_code == 200 and emptied.get_json()["deleted"] == [theirs]
    with accounts_app.extensions["clipseek"].db.session() as session:
        events = [(e.user_name, e.action, e.image_id) for e in
                  session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert events == [("ann", "upload", mine), ("bob", "upload", theirs), ("ann", "trash", mine),
                      ("bob", "trash", theirs), ("ann", "restore", mine), ("admin", "purge", theirs)]


def _upload_as(client: FlaskClient, *seeds: int) -> list[int]:
    sent = client.post("/api/images", headers=_meta_csrf(client, "/upload"), data={
        "files": [(io.BytesIO(_jpeg(s)), f"p{s}.jpg") for s in seeds]})
    assert sent.status_code == 202, sent.get_json()
    return [u["image_id"] for u in sent.get_json()["uploads"]]


def _status(client: FlaskClient, path: str) -> tuple[int, str]:
    """A file's answer, its stream closed: its status and, for an error, its text."""
    answer = client.get(path)
    try:
        return answer.status_code, answer.get_data(as_text=True) if answer.status_code >= 400 else ""
    finally:
        answer.close()


def test_a_picture_in_the_trash_is_served_only_to_those_who_see_it_there(accounts_app: Flask) -> None:
    # The trash hides a picture from search and its page; its file and thumbnail stayed
    # reachable by id for anyone signed in, a viewer too.
    ann, bob, admin, vic = (_sign_in(accounts_app, n) for n in ("ann", "bob", "admin", "vic"))
    [mine] = _upload_as(ann, 3)
    for client in (ann, bob, admin, vic):  # before the trash: everyone sees it
        assert _status(client, f"/file/{mine}")[0] == 200
    assert ann.delete(f"/api/images/{mine}", headers=_meta_csrf(ann)).status_code == 200
    for path in (f"/file/{mine}", f"/thumb/{mine}.jpg"):
        for client in (bob, vic):
            status, body = _status(client, path)
            assert status == 404 and f"Image {mine} is in the trash" in body, (path, status)
        for client in (ann, admin):  # the uploader and an admin see it on the Trash page
            assert _status(client, path)[0] == 200, path


def test_the_captions_of_a_picture_in_the_trash_wait_with_it_until_it_is_restored(
    client: FlaskClient,
) -> None:
    # The API added, changed and removed captions of a picture in the trash, which no page
    # shows: they wait as they were, and the answer says why.
    [image_id] = _upload(client, 4)
    added = client.post(f"/api/images/{image_id}/captions", headers=API, json={"text": "a red kite"})
    assert added.status_code == 201
    caption_id = added.get_json()["id"]
    assert client.delete(f"/api/images/{image_id}", headers=API).status_code == 200
    refused = [client.post(f"/api/images/{image_id}/captions", headers=API, json={"text": "a kite"}),
               client.put(f"/api/captions/{caption_id}", headers=API, json={"text": "a blue kite"}),
               client.delete(f"/api/captions/{caption_id}", headers=API)]
    for answer in refused:
        assert answer.status_code == 409, answer.get_data(as_text=True)
        assert answer.get_json()["error"] == (f"Image {image_id} is in the trash; restore it before "
                                              "changing its captions.")
    assert client.post(f"/api/trash/{image_id}/restore", headers=API).status_code == 200
    shown = client.get(f"/api/images/{image_id}").get_json()
    assert "a red kite" in shown["captions"] and "a kite" not in shown["captions"]
    again = client.put(f"/api/captions/{caption_id}", headers=API, json={"text": "a blue kite"})
    assert again.status_code == 200
