"""Albums and acting on many pictures through the web: roles, every match chosen on the server,
the zip (its entries are the real files), the trash and retrying, each answered in one sentence."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image as PILImage
from sqlalchemy import select, update

from clipseek import accounts
from clipseek.clip.encoder import ClipEncoder
from clipseek.library.archive import PIECE, ZipEntry, ZipPlan, stream_zip
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image, ImageStatus, Role
from tests.images import encoded, photo_array
from webapp import create_app

API = {"X-Requested-With": "test"}
PASSWORD = "correct horse battery"
NOT_YOURS = "You may change only albums you made"


@pytest.fixture
def tokens(db: Database) -> dict[str, str]:
    """A viewer, two contributors (ann and bea) and an admin, each with an API token (name -> token)."""
    made = {}
    with db.session() as session:
        for name, role in (("viewer", Role.VIEWER), ("ann", Role.CONTRIBUTOR), ("bea", Role.CONTRIBUTOR),
                           ("admin", Role.ADMIN)):
            user = accounts.add_user(session, name=name, secret=PASSWORD, user_role=role)
            made[name] = accounts.create_token(session, user, "t")[1]
        session.commit()
    return made


@pytest.fixture
def shared_app(settings: Settings, redis_url: str, tokens: dict[str, str]) -> Iterator[Flask]:
    """The web app of a deployment that requires accounts."""
    application = create_app({"TESTING": True}, settings=settings.with_changes(
        require_accounts=True, redis_url=redis_url))
    yield application
    application.extensions["clipseek"].close()


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _upload(client: FlaskClient, token: str, seed: int) -> int:
    body = encoded(PILImage.fromarray(photo_array(seed, (90, 120))), "JPEG")
    answer = client.post("/api/images", headers=_as(token),
                         data={"files": [(io.BytesIO(body), f"p{seed}.jpg")]})
    assert answer.status_code == 202, answer.get_json()
    image_id: int = answer.get_json()["uploads"][0]["image_id"]
    return image_id


def _album(client: FlaskClient, token: str, name: str) -> int:
    answer = client.post("/api/albums", headers=_as(token), json={"name": name})
    assert answer.status_code == 201, answer.get_json()
    album_id: int = answer.get_json()["id"]
    return album_id


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found
    return found.group(1)


def test_viewers_look_contributors_manage_their_own_albums_and_admins_every_album(
    shared_app: Flask, tokens: dict[str, str],
) -> None:
    client = shared_app.test_client()
    viewer, ann, admin = (_as(tokens[n]) for n in ("viewer", "ann", "admin"))
    picture = _upload(client, tokens["ann"], 1)
    anns, beas = _album(client, tokens["ann"], "Ann's trip"), _album(client, tokens["bea"], "Bea's garden")
    body = {"ids": [picture]}
    # Viewers look, and change nothing.
    listed = client.get("/api/albums", headers=viewer).get_json()
    assert [a["name"] for a in listed["albums"]] == ["Ann's trip", "Bea's garden"]
    assert not listed["may_create"] and not any(a["may_change"] for a in listed["albums"])
    for answer in (client.post("/api/albums", headers=viewer, json={"name": "Mine"}),
                   client.post(f"/api/albums/{anns}/images", headers=viewer, json=body),
                   client.post(f"/api/albums/{anns}/rename", headers=viewer, json={"name": "x"}),
                   client.delete(f"/api/albums/{anns}", headers=viewer)):
        assert answer.status_code == 403 and "contributor" in answer.get_json()["error"]
    # A contributor changes her own album, never another's.
    added = client.post(f"/api/albums/{anns}/images", headers=ann, json=body)
    assert added.status_code == 200
    assert added.get_json()["message"] == "Added 1 picture to Ann's trip."
    for answer in (client.post(f"/api/albums/{beas}/images", headers=ann, json=body),
                   client.post(f"/api/albums/{beas}/images/remove", headers=ann, json=body),
                   client.post(f"/api/albums/{beas}/rename", headers=ann, json={"name": "Ann's now"}),
                   client.delete(f"/api/albums/{beas}", headers=ann)):
        assert answer.status_code == 403 and NOT_YOURS in answer.get_json()["error"]
    mine = {a["name"]: a["may_change"] for a in client.get("/api/albums", headers=ann).get_json()["albums"]}
    assert mine == {"Ann's trip": True, "Bea's garden": False}
    renamed = client.post(f"/api/albums/{anns}/rename", headers=ann, json={"name": "Ann's summer"})
    assert renamed.status_code == 200 and renamed.get_json()["images"] == 1
    # The admin changes any album.
    assert client.post(f"/api/albums/{beas}/images", headers=admin, json=body).status_code == 200
    assert client.post(f"/api/albums/{beas}/images/remove", headers=admin,
                       json=body).get_json()["removed"] == 1
    assert client.delete(f"/api/albums/{beas}", headers=admin).status_code == 200
    shown = client.get(f"/api/albums/{anns}", headers=viewer).get_json()
    assert shown["name"] == "Ann's summer" and [i["image_id"] for i in shown["images"]] == [picture]
    assert client.get(f"/api/albums/{beas}", headers=viewer).status_code == 404
    # A page's form names the album in its body: the same rule holds there.
    signed = shared_app.test_client()
    token = _csrf(signed.get("/login").get_data(as_text=True))
    signed.post("/login", data={"csrf_token": token, "name": "bea", "password": PASSWORD})
    token = _csrf(signed.get("/albums").get_data(as_text=True))  # a new session, a new token
    form = {"csrf_token": token, "ids": str(picture), "album_id": str(anns), "next": "/albums"}
    refused = signed.post("/albums/add", data=form)
    assert refused.status_code == 403 and NOT_YOURS in refused.get_data(as_text=True)
    made = signed.post("/albums/add", data=form | {"album_id": "", "new_album": "Bea's pick"},
                       follow_redirects=True)
    assert "Added 1 picture to Bea&#39;s pick." in made.get_data(as_text=True)


def test_contributors_move_only_their_own_pictures_to_the_trash_and_admins_any(
    shared_app: Flask, tokens: dict[str, str],
) -> None:
    client = shared_app.test_client()
    ann, admin, viewer = _as(tokens["ann"]), _as(tokens["admin"]), _as(tokens["viewer"])
    own, other = _upload(client, tokens["ann"], 1), _upload(client, tokens["admin"], 2)
    album = _album(client, tokens["admin"], "Everything")
    client.post(f"/api/albums/{album}/images", headers=admin, json={"ids": [own, other]})
    refused = client.post("/api/selection/trash", headers=ann, json={"ids": [own, other]})
    assert refused.status_code == 403
    assert refused.get_json()["error"] == ("You may move to the trash only pictures you uploaded, and 1 of "
                                           "the 2 selected are not yours; select only your own, or ask "
                                           "an admin.")
    assert client.post("/api/selection/trash", headers=viewer, json={"ids": [own]}).status_code == 403
    assert client.get(f"/api/albums/{album}", headers=ann).get_json()["images"] != []
    moved = client.post("/api/selection/trash", headers=ann, json={"ids": [own]})
    assert moved.status_code == 200
    assert moved.get_json() == {"message": "Moved 1 picture to the trash.", "image_ids": [own]}
    assert client.post("/api/selection/trash", headers=admin,
                       json={"album": album}).get_json()["image_ids"] == [other]
    assert client.get(f"/api/albums/{album}", headers=ann).get_json()["total"] == 0


@pytest.fixture
def library(app: Flask, db: Database, encoder: ClipEncoder, settings: Settings,
            sample_photos: list[Candidate]) -> list[int]:
    """Six sample photos indexed (the local mode); the first four in the collection "trips"."""
    ingest_inline(db, encoder, sample_photos[:6], settings=settings)
    with db.session() as session:
        ids = sorted(session.scalars(select(Image.id)))
        session.execute(update(Image).where(Image.id.in_(ids[:4])).values(collection="trips"))
        session.commit()
    return ids


def _zip(answer: object) -> zipfile.ZipFile:
    data = answer.get_data()  # type: ignore[attr-defined]
    return zipfile.ZipFile(io.BytesIO(data))


def test_a_zip_holds_the_real_files_under_names_that_never_clash_or_leave_the_folder(
    client: FlaskClient, db: Database, library: list[int],
) -> None:
    with db.session() as session:
        paths = {i: Path(p) for i, p in session.execute(select(Image.id, Image.path).where(
            Image.id.in_(library)))}
        names = ["Beach.jpg", "beach.JPG", "../../etc/passwd", "a\\b:c.jpg"]
        for image_id, name in zip(library, names, strict=False):
            session.execute(update(Image).where(Image.id == image_id).values(original_name=name))
        session.commit()
    gone = paths[library[5]]
    kept_bytes = gone.read_bytes()
    gone.unlink()  # its file went away after it was indexed
    try:
        answer = client.post("/api/selection/zip", headers=API, json={"ids": library})
    finally:
        gone.write_bytes(kept_bytes)
    assert answer.status_code == 200 and answer.is_streamed
    assert answer.headers["Content-Disposition"] == 'attachment; filename="clipseek-5-pictures.zip"'
    archive = _zip(answer)
    entries = archive.namelist()
    assert entries[:4] == ["Beach.jpg", "beach (2).JPG", "passwd", "b_c.jpg"]
    assert len(entries) == 6 and entries[5] == "not-included.txt"
    assert archive.testzip() is None
    for image_id, entry in zip(library[:5], entries[:5], strict=True):
        assert archive.read(entry) == paths[image_id].read_bytes(), entry
    assert archive.getinfo("Beach.jpg").compress_type == zipfile.ZIP_STORED
    assert "its file is no longer at" in archive.read("not-included.txt").decode()


def test_a_zip_is_streamed_in_pieces_no_larger_than_one_piece_of_a_file(tmp_path: Path) -> None:
    big = tmp_path / "scan.tiff"
    big.write_bytes(bytes(range(256)) * (3 * PIECE // 256 + 7))
    plan = ZipPlan(entries=[ZipEntry(1, big, "scan.tiff", zipfile.ZIP_STORED),
                            ZipEntry(2, big, "scan (2).tiff", zipfile.ZIP_DEFLATED)])
    pieces = list(stream_zip(plan))
    assert max(len(p) for p in pieces) <= PIECE + 1024 and len(pieces) > 6
    archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    assert [archive.read(n) for n in ("scan.tiff", "scan (2).tiff")] == [big.read_bytes()] * 2


def test_a_download_past_its_limits_says_so_in_one_sentence(
    client: FlaskClient, library: list[int], monkeypatch: pytest.MonkeyPatch,
) -> None:
    too_many = client.post("/api/selection/zip", headers=API, json={"ids": list(range(1, 2002))})
    assert too_many.status_code == 400
    assert too_many.get_json()["error"] == ("A download holds at most 2,000 pictures, not 2,001; select "
                                            "fewer and download them in parts.")
    monkeypatch.setattr("clipseek.library.archive.MAX_ZIP_BYTES", 1000)
    too_big = client.post("/api/selection/zip", headers=API, json={"ids": library[:2]})
    assert too_big.status_code == 400 and "a download holds at most 0 GiB" in too_big.get_json()["error"]
    token = client.get("/").get_data(as_text=True).split('name="csrf-token" content="', 1)[1].split('"')[0]
    page = client.post("/selection/zip", data={"csrf_token": token, "ids": [str(i) for i in library[:2]],
                                               "next": "/collections"}, follow_redirects=True)
    assert page.request.path == "/collections" and "select fewer and download them" in page.get_data(
        as_text=True)


def test_every_match_of_a_search_collection_or_album_is_found_again_on_the_server(
    client: FlaskClient, library: list[int],
) -> None:
    token = client.get("/").get_data(as_text=True).split('name="csrf-token" content="', 1)[1].split('"')[0]
    album = client.post("/api/albums", headers=API, json={"name": "Trips"}).get_json()["id"]
    # "Select all 4 matches" on page 1 of 2 of a search sends the search, not the ids.
    page = client.get("/?collection=trips&per_page=2").get_data(as_text=True)
    every = re.search(r'data-every="([^"]*)"', page)
    assert every and every.group(1).startswith("search:") and 'data-total="4"' in page
    form = {"csrf_token": token, "every": every.group(1).replace("&amp;", "&"), "album_id": str(album),
            "next": f"/albums/{album}"}
    added = client.post("/albums/add", data=form, follow_redirects=True)
    assert "Added 4 pictures to Trips." in added.get_data(as_text=True)
    assert added.get_data(as_text=True).count('class="hit"') == 4
    by_search = client.post("/api/selection/zip", headers=API, json={"search": {"q": "a photo",
                                                                                "collection": "trips"}})
    assert len(_zip(by_search).namelist()) == 4
    by_collection = client.post("/api/selection/zip", headers=API, json={"collection": "trips"})
    by_album = client.post("/api/selection/zip", headers=API, json={"album": album})
    assert sorted(_zip(by_collection).namelist()) == sorted(_zip(by_album).namelist())
    removed = client.post(f"/api/albums/{album}/images/remove", headers=API, json={"ids": library[:1]})
    assert removed.get_json()["removed"] == 1
    for body, message in (({}, "Say which pictures in one way"), ({"ids": [1], "album": album}, "one way"),
                          ({"ids": ["1"]}, '"ids" must be a list of image ids'),
                          ({"search": {"colour": "red"}}, "There is no search parameter 'colour'"),
                          ({"album": "Trips"}, '"album" must be an album id.')):
        answer = client.post("/api/selection/zip", headers=API, json=body)
        assert answer.status_code == 400 and message in answer.get_json()["error"], body


def test_retry_failed_queues_again_only_what_another_try_can_mend(
    client: FlaskClient, db: Database, library: list[int],
) -> None:
    with db.session() as session:
        session.execute(update(Image).where(Image.id == library[0]).values(
            status=ImageStatus.FAILED, error="unreadable image file (a network share went away)"))
        session.execute(update(Image).where(Image.id == library[1]).values(
            status=ImageStatus.FAILED, error="cannot identify image file"))
        session.commit()
    answer = client.post("/api/selection/retry", headers=API, json={"ids": library[:3]})
    assert answer.status_code == 200
    assert answer.get_json() == {
        "message": "Queued 1 failed picture again; 1 failed for a reason another try cannot mend "
                   "(each picture's page says why); 1 had not failed.",
        "queued": [library[0]], "not_retryable": [library[1]], "not_failed": [library[2]]}
    with db.session() as session:
        status = session.scalar(select(Image.status).where(Image.id == library[0]))
    assert status in (ImageStatus.REGISTERED, ImageStatus.QUEUED)
