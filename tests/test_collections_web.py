"""Collections on the web: the collections page, its forms, and deleting by selection in the API."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from clipseek.clip.encoder import ClipEncoder
from clipseek.indexing.encoding import index_images
from clipseek.library.ingest import decode_pool
from clipseek.library.register import Candidate
from clipseek.library.sync import sync_folder
from clipseek.store.tables import Image

API = {"X-Requested-With": "test"}


@pytest.fixture
def folders(app: Flask, sample_photos: list[Candidate], tmp_path: Path) -> dict[str, Path]:
    """Two synced folders: holiday/ with three pictures, garden/ with two."""
    ctx = app.extensions["clipseek"]
    made = {}
    for name, photos in (("holiday", sample_photos[:3]), ("garden", sample_photos[3:5])):
        folder = tmp_path / name
        folder.mkdir()
        for c in photos:
            shutil.copy(c.path, folder / c.path.name)
        with ctx.db.session() as session, decode_pool(ctx.settings) as pool:
            sync_folder(session, folder, model=ctx.settings.model,
                        max_pixels=ctx.settings.max_image_pixels, pool=pool)
            session.commit()
        made[name] = folder
    return made


def _ids(app: Flask, collection: str | None = None) -> list[int]:
    with app.extensions["clipseek"].db.session() as session:
        statement = select(Image.id).order_by(Image.id)
        if collection is not None:
            statement = statement.where(Image.collection == collection)
        return list(session.scalars(statement))


def _names(client: FlaskClient) -> dict[str, int]:
    return {c["name"]: c["images"] for c in client.get("/api/collections").get_json()["collections"]}


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def test_api_moves_a_collection_to_the_trash_after_a_dry_run_and_keeps_the_originals(
    app: Flask, client: FlaskClient, folders: dict[str, Path],
) -> None:
    holiday = _ids(app, "holiday")
    body = {"collection": "holiday", "dry_run": True}
    assert client.post("/api/images/delete", json=body).status_code == 400  # no CSRF header
    dry = client.post("/api/images/delete", json=body, headers=API)
    assert dry.status_code == 200
    assert dry.get_json() == {"dry_run": True, "count": 3, "image_ids": holiday}
    assert _ids(app, "holiday") == holiday
    done = client.post("/api/images/delete", json={"collection": "holiday"}, headers=API)
    assert done.status_code == 200
    assert done.get_json()["deleted"] == holiday and done.get_json()["in_trash"] is True
    assert _names(client) == {"garden": 2} and len(list(folders["holiday"].iterdir())) == 3
    # In the trash already: a dry run counts none of them, and a second deletion finds none.
    assert client.post("/api/images/delete", json=body, headers=API).get_json()["count"] == 0
    assert client.post("/api/images/delete", json={"collection": "holiday"}, headers=API).status_code == 404


def test_api_deletes_by_path_prefix_and_by_ids(
    app: Flask, client: FlaskClient, folders: dict[str, Path],
) -> None:
    garden = _ids(app, "garden")
    # A folder, not a string prefix: garden-old/ would not be taken.
    by_folder = client.post("/api/images/delete", json={"path_prefix": str(folders["garden"])},
                            headers=API)
    assert by_folder.status_code == 200 and by_folder.get_json()["deleted"] == garden
    first = _ids(app, "holiday")[0]
    by_id = client.post("/api/images/delete", json={"ids": [first]}, headers=API)
    assert by_id.status_code == 200 and by_id.get_json()["deleted"] == [first]
    assert _names(client) == {"holiday": 2}


@pytest.mark.parametrize(("body", "error"), [
    ({}, "Say which images to delete in one way: \"ids\", \"collection\" or \"path_prefix\"."),
    ({"ids": []}, "Say which images to delete in one way: \"ids\", \"collection\" or \"path_prefix\"."),
    ({"ids": [1], "collection": "garden"},
     "Say which images to delete in one way: \"ids\", \"collection\" or \"path_prefix\"."),
    ({"ids": ["1"]}, "\"ids\" must be a list of image ids (whole numbers from 1)."),
    ({"ids": [0]}, "\"ids\" must be a list of image ids (whole numbers from 1)."),
    ({"collection": 5}, "\"collection\" must be a collection name."),
    ({"collection": " "}, "A collection name cannot be empty."),
    ({"path_prefix": "photos/garden"},
     "\"path_prefix\" must be an absolute folder path, such as /photos/2019."),
    ({"collection": "garden", "dry_run": "yes"}, "\"dry_run\" must be true or false."),
    ([1, 2], "Send a JSON object, such as {\"collection\": \"holiday\", \"dry_run\": true}."),
])
def test_api_delete_refuses_an_unclear_selection_in_one_sentence(
    app: Flask, client: FlaskClient, folders: dict[str, Path], body: object, error: str,
) -> None:
    answer = client.post("/api/images/delete", json=body, headers=API)
    assert answer.status_code == 400 and answer.get_json()["error"] == error
    assert len(_ids(app)) == 5


def test_api_delete_of_a_selection_that_matches_nothing_says_so(
    client: FlaskClient, folders: dict[str, Path],
) -> None:
    answer = client.post("/api/images/delete", json={"collection": "nope"}, headers=API)
    assert answer.status_code == 404
    assert answer.get_json()["error"] == "No image matches that selection; nothing was deleted."
    not_json = client.post("/api/images/delete", data="collection=x", headers=API)
    assert not_json.status_code == 400


def test_api_renames_and_deletes_a_collection(
    app: Flask, client: FlaskClient, folders: dict[str, Path],
) -> None:
    renamed = client.post("/api/collections/holiday/rename", json={"name": "Greece 2019"}, headers=API)
    assert renamed.status_code == 200
    assert renamed.get_json() == {"from": "holiday", "to": "Greece 2019", "images": 3}
    again = client.post("/api/collections/holiday/rename", json={"name": "x"}, headers=API)
    assert again.status_code == 404
    assert again.get_json()["error"] == "There is no collection 'holiday'; GET /api/collections lists them."
    bad = client.post("/api/collections/garden/rename", json={"name": ""}, headers=API)
    assert bad.status_code == 400 and bad.get_json()["error"] == "A collection name cannot be empty."
    for hidden, sentence in (("\u200b\ufeff", "only of invisible characters"), ("a\u202eb", "reorder")):
        bad = client.post("/api/collections/garden/rename", json={"name": hidden}, headers=API)
        assert bad.status_code == 400 and sentence in bad.get_json()["error"]
    assert client.delete("/api/collections/garden").status_code == 400  # no CSRF header
    gone = client.delete("/api/collections/garden", headers=API)
    assert gone.status_code == 200 and len(gone.get_json()["deleted"]) == 2
    assert client.delete("/api/collections/garden", headers=API).status_code == 404
    assert _names(client) == {"Greece 2019": 3}


def test_collections_page_lists_counts_links_and_forms(
    app: Flask, client: FlaskClient, folders: dict[str, Path],
) -> None:
    assert 'href="/collections"' in client.get("/").get_data(as_text=True)  # in the nav
    page = client.get("/collections").get_data(as_text=True)
    assert "holiday" in page and "garden" in page
    assert '<strong class="count">3</strong> images' in page and "3 registered" in page
    assert 'href="/collections/browse?name=holiday"' in page
    assert 'action="/collections/rename"' in page
    assert re.search(r'<form class="delete" action="/collections/delete" method="post"\s+'
                     r'data-confirm="Move the 2 images of garden to the trash\?', page)
    assert "onsubmit" not in page and "<script>" not in page
    browse = client.get("/collections/browse?name=holiday").get_data(as_text=True)
    assert all(f'href="/image/{i}"' in browse for i in _ids(app, "holiday"))
    assert not any(f'href="/image/{i}"' in browse for i in _ids(app, "garden"))
    unknown = client.get("/collections/browse?name=nope")
    assert unknown.status_code == 404 and "There is no collection" in unknown.get_data(as_text=True)


def test_collections_page_forms_rename_and_delete_with_csrf(
    app: Flask, client: FlaskClient, folders: dict[str, Path],
) -> None:
    token = _csrf(client.get("/collections").get_data(as_text=True))
    assert client.post("/collections/rename", data={"name": "holiday", "new_name": "x"}).status_code == 400
    renamed = client.post("/collections/rename", data={"csrf_token": token, "name": "holiday",
                                                       "new_name": "Greece 2019"})
    assert renamed.status_code == 302 and renamed.headers["Location"] == "/collections"
    assert "Renamed holiday to Greece 2019 (3 images)." in client.get("/collections").get_data(as_text=True)
    bad = client.post("/collections/rename", data={"csrf_token": token, "name": "garden",
                                                    "new_name": "  "})
    assert bad.status_code == 400 and "A collection name cannot be empty." in bad.get_data(as_text=True)
    deleted = client.post("/collections/delete", data={"csrf_token": token, "name": "garden"})
    assert deleted.status_code == 302
    assert "Moved the 2 images of garden to the trash" in client.get("/collections").get_data(as_text=True)
    assert _names(client) == {"Greece 2019": 3} and len(list(folders["garden"].iterdir())) == 2


def test_a_collection_page_links_only_thumbnails_that_exist(
    app: Flask, client: FlaskClient, folders: dict[str, Path], encoder: ClipEncoder,
) -> None:
    ctx = app.extensions["clipseek"]
    ids = _ids(app, "holiday")
    gone = next((folders["holiday"]).iterdir())
    gone.unlink()  # gone before the worker read it: failed, with the format its probe read
    with ctx.db.session() as session, decode_pool(ctx.settings) as pool:
        index_images(session, encoder, ids, pool=pool, batch_size=8,
                     max_pixels=ctx.settings.max_image_pixels)
    page = client.get("/collections/browse?name=holiday").get_data(as_text=True)
    thumbnails = re.findall(r'<img src="(/thumb/[0-9]+\.jpg)"', page)
    assert len(thumbnails) == 2 and gone.name in page
    codes = []
    for url in thumbnails:
        with client.get(url) as answer:  # a file is streamed: closed when read
            codes.append(answer.status_code)
    assert codes == [200, 200]
