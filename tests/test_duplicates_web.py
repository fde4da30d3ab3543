"""Near-duplicates on the web: the page with the one to keep marked, its buttons, the API, and
uploads that say which picture they look like."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from clipseek.clip.encoder import ClipEncoder
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate
from clipseek.store.tables import Image
from tests.images import near_copies, real_photo, write_holdout

API = {"X-Requested-With": "test"}


@pytest.fixture
def holdout(app: Flask, encoder: ClipEncoder, tmp_path: Path) -> dict[str, list[int]]:
    """Four photos with four near copies each, and two views of another scene, indexed: ids by photo."""
    ctx = app.extensions["clipseek"]
    files = write_holdout(tmp_path / "holdout")
    ingest_inline(ctx.db, encoder, [Candidate(path=p, source="folder") for ps in files.values() for p in ps],
                  settings=ctx.settings)
    with ctx.db.session() as session:
        ids = {path: image_id for path, image_id in session.execute(select(Image.path, Image.id))}
    return {name: [ids[str(p)] for p in paths] for name, paths in files.items()}


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def test_the_page_marks_the_one_to_keep_and_moves_the_others_of_a_group_to_the_trash(
        client: FlaskClient, holdout: dict[str, list[int]]) -> None:
    page = client.get("/duplicates").get_data(as_text=True)
    assert 'href="/duplicates">Duplicates</a>' in page  # in the menu of the local mode
    assert page.count('class="hit keeper"') == 4 and page.count("<strong>Keep</strong>") == 4
    assert "Move the others to the trash in all 4 groups (16 pictures)" in page
    chelsea = ",".join(map(str, holdout["chelsea"]))
    assert f'name="ids" value="{chelsea}"' in page
    moved = client.post("/duplicates/trash", data={"csrf_token": _csrf(page), "ids": chelsea},
                        follow_redirects=True)
    text = moved.get_data(as_text=True)
    assert "Moved 4 pictures to the trash, keeping one of each of 1 group." in text
    assert f'name="ids" value="{chelsea}"' not in text and text.count('class="hit keeper"') == 3
    # The page the form came from is out of date now: nothing more is moved.
    again = client.post("/duplicates/trash", data={"csrf_token": _csrf(page), "ids": chelsea})
    assert again.status_code == 409 and "reload the page" in again.get_data(as_text=True)
    forged = client.post("/duplicates/trash", data={"ids": chelsea})
    assert forged.status_code == 400


def test_the_api_lists_the_groups_and_keeps_one_of_each(client: FlaskClient,
                                                         holdout: dict[str, list[int]]) -> None:
    listed = client.get("/api/duplicates").get_json()
    assert listed["distance"] == 10 and len(listed["groups"]) == 4
    astronaut = next(g for g in listed["groups"] if g["keep"] == holdout["astronaut"][0])
    # The one to keep first, then the others from the largest down.
    assert sorted(i["id"] for i in astronaut["images"]) == holdout["astronaut"]
    assert [i["width"] for i in astronaut["images"]] == [512, 512, 512, 486, 256]
    assert astronaut["images"][0]["keep"] and astronaut["images"][0]["bits_from_keep"] == 0
    assert client.get("/api/duplicates?threshold=99").status_code == 400
    both = client.post("/api/duplicates/trash", json={"ids": [1], "all": True}, headers=API)
    assert both.status_code == 400
    done = client.post("/api/duplicates/trash", json={"all": True}, headers=API).get_json()
    assert sorted(done["kept"]) == sorted(holdout[name][0] for name in holdout if len(holdout[name]) > 1)
    assert len(done["deleted"]) == 16
    assert client.get("/api/duplicates").get_json()["groups"] == []


def test_an_upload_says_which_picture_already_there_it_looks_like(client: FlaskClient) -> None:
    photo = real_photo("astronaut")
    answer = client.post("/api/images", data={"files": [(io.BytesIO(near_copies(photo)["q60"]), "a.jpg")]},
                         headers=API)
    assert answer.status_code == 202, answer.get_data(as_text=True)
    first = answer.get_json()["uploads"][0]
    assert first["state"] == "registered" and first["looks_like"] is None
    second = client.post("/api/images", data={"files": [
        (io.BytesIO(near_copies(photo)["half"]), "small.jpg"),
        (io.BytesIO(near_copies(real_photo("coffee"))["q60"]), "other.jpg")]}, headers=API).get_json()
    small, other = second["uploads"]
    assert small["looks_like"] == first["image_id"]
    assert small["message"] == f"stored; waiting to be indexed; looks like image {first['image_id']}, " \
                               "already in the collection"
    assert other["looks_like"] is None
    page = client.get("/upload").get_data(as_text=True)
    posted = client.post("/upload", data={"csrf_token": _csrf(page), "files": [
        (io.BytesIO(near_copies(photo)["crop5"]), "cropped.jpg")]}, follow_redirects=True)
    assert "1 look like pictures you already have: the Duplicates page groups them." in posted.get_data(
        as_text=True)


def test_the_page_and_the_api_show_the_groups_a_page_at_a_time(client: FlaskClient,
                                                               holdout: dict[str, list[int]]) -> None:
    first = client.get("/api/duplicates?per_page=3").get_json()
    second = client.get("/api/duplicates?per_page=3&page=2").get_json()
    assert (first["total"], first["extras"], first["page"], len(first["groups"])) == (4, 16, 1, 3)
    assert (second["page"], len(second["groups"])) == (2, 1)
    keepers = {g["keep"] for g in first["groups"] + second["groups"]}
    assert keepers == {holdout[name][0] for name in holdout if len(holdout[name]) > 1}
    assert client.get("/api/duplicates?per_page=3&page=9").get_json()["page"] == 2  # past the end: the last
    page = client.get("/duplicates?per_page=3&threshold=10").get_data(as_text=True)
    assert page.count('class="hit keeper"') == 3 and "Groups 1 to 3 of 4, most copies first." in page
    assert "Move the others to the trash in all 4 groups (16 pictures)" in page
    assert 'rel="next" href="/duplicates?page=2&amp;threshold=10&amp;per_page=3"' in page
    last = client.get("/duplicates?per_page=3&page=2").get_data(as_text=True)
    assert last.count('class="hit keeper"') == 1 and 'name="page" value="2"' in last
    status = client.get("/status").get_data(as_text=True)
    assert '<p id="hashes-summary">22 picture(s) hashed.</p>' in status
    assert client.get("/api/status").get_json()["near_duplicates"] == {"hashed": 22, "unhashed": 0,
                                                                       "unpaired": 0}
