"""Captions on the web: derived ones on upload, and people adding, editing and deleting captions
on the image page (also in Chromium) and through the JSON API, with every bad input answered."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Page, expect

from clipseek.library.ingest import decode_pool, register_candidates
from clipseek.library.register import Candidate
from clipseek.settings import Settings
from tests.httpserver import serve_app
from tests.images import photo_with_text, xmp_packet

API = {"X-Requested-With": "test"}


def _photo_bytes(tmp_path: Path, description: str | None = None, xmp: bytes | None = None) -> bytes:
    return photo_with_text(tmp_path / "upload.jpg", seed=7, description=description, xmp=xmp).read_bytes()


@pytest.fixture
def image_id(app: Flask, tmp_path: Path) -> int:
    """One folder image whose name says "beach sunset"."""
    ctx = app.extensions["clipseek"]
    photo = photo_with_text(tmp_path / "beach_sunset.jpg")
    with decode_pool(ctx.settings) as pool:
        report = register_candidates(ctx.db, [Candidate(path=photo, source="folder")],
                                     settings=ctx.settings, pool=pool)
    return report.new_ids[0]


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def _details_ids(client: FlaskClient, image_id: int) -> list[int]:
    return [c["id"] for c in client.get(f"/api/images/{image_id}").get_json()["caption_details"]]


def _details(client: FlaskClient, image_id: int) -> list[tuple[str, str]]:
    data = client.get(f"/api/images/{image_id}").get_json()
    return [(c["source"], c["text"]) for c in data["caption_details"]]


def test_an_upload_gets_captions_from_its_name_and_its_own_text(client: FlaskClient, tmp_path: Path) -> None:
    body = _photo_bytes(tmp_path, description="Red bus on Tower Bridge",
                        xmp=xmp_packet(keywords=("bus", "London")))
    answer = client.post("/api/images", headers=API,
                         data={"files": [(io.BytesIO(body), "Doppeldecker_London.jpg")]})
    assert answer.status_code == 202
    image_id = answer.get_json()["uploads"][0]["image_id"]
    data = client.get(f"/api/images/{image_id}").get_json()
    assert data["captions"] == ["Red bus on Tower Bridge", "bus, London", "Doppeldecker London"]
    assert [(c["source"], c["text"]) for c in data["caption_details"]] == [
        ("exif", "Red bus on Tower Bridge"), ("xmp", "bus, London"), ("filename", "Doppeldecker London")]
    renamed = client.post("/api/images", headers=API,
                          data={"files": [(io.BytesIO(_photo_bytes(tmp_path)), "IMG_0042.jpg")]})
    quiet_id = renamed.get_json()["uploads"][0]["image_id"]
    assert client.get(f"/api/images/{quiet_id}").get_json()["caption_details"] == []


def test_captions_are_added_edited_and_deleted_through_the_api(client: FlaskClient, image_id: int) -> None:
    assert _details(client, image_id) == [("filename", "beach sunset")]
    added = client.post(f"/api/images/{image_id}/captions", headers=API, json={"text": "  Mum and  Dad "})
    assert added.status_code == 201
    caption = added.get_json()
    assert caption == {"id": caption["id"], "image_id": image_id, "text": "Mum and Dad", "source": "user"}
    derived_id = client.get(f"/api/images/{image_id}").get_json()["caption_details"][0]["id"]
    edited = client.put(f"/api/captions/{derived_id}", headers=API, json={"text": "Sunset at Sylt"})
    assert edited.status_code == 200 and edited.get_json()["source"] == "user"
    assert _details(client, image_id) == [("user", "Sunset at Sylt"), ("user", "Mum and Dad")]
    removed = client.delete(f"/api/captions/{caption['id']}", headers=API)
    assert removed.status_code == 200 and removed.get_json()["text"] == "Mum and Dad"
    assert _details(client, image_id) == [("user", "Sunset at Sylt")]


def test_bad_caption_requests_get_one_sentence(client: FlaskClient, image_id: int) -> None:
    url = f"/api/images/{image_id}/captions"
    not_text = 'Send the caption as a string in the "text" field.'
    cases = [
        (client.post(url, headers=API, json={"text": "   "}), 400,
         "A caption cannot be empty."),
        (client.post(url, headers=API, json={"text": "x" * 1001}), 400,
         "A caption has at most 1,000 characters, not 1,001."),
        (client.post(url, headers=API, json={"text": "\u200b\ufeff \u200b"}), 400,
         "A caption cannot be made only of invisible characters; write some visible text."),
        (client.post(url, headers=API, json={"text": "invoice\u202efdp.exe"}), 400,
         "A caption cannot contain characters that reverse or reorder text (U+202A to U+202E, "
         "U+2066 to U+2069)."),
        (client.post(url, headers=API, json={"text": "ring\x07"}), 400,
         "A caption cannot contain control characters."),
        (client.post(url, headers=API, json={"text": 5}), 400, not_text),
        (client.post(url, headers=API, data="text=hi", content_type="text/plain"), 400, not_text),
        (client.post(url, headers=API, json=["text"]), 400, not_text),
        (client.post("/api/images/999999/captions", headers=API, json={"text": "hi"}), 404,
         "There is no image 999999."),
        (client.put("/api/captions/999999", headers=API, json={"text": "hi"}), 404,
         "There is no caption 999999."),
        (client.delete("/api/captions/999999", headers=API), 404, "There is no caption 999999."),
        (client.delete("/api/captions/99999999999999999999", headers=API), 404,
         "There is no caption 99999999999999999999."),
        (client.post(url, json={"text": "hi"}), 400,
         "The form expired or came from another site; reload the page and try again."),
    ]
    for answer, status, message in cases:
        assert (answer.status_code, answer.get_json()) == (status, {"error": message, "status": status})
    assert _details(client, image_id) == [("filename", "beach sunset")]


def test_the_image_page_shows_sources_and_edits_captions_with_its_forms(
    client: FlaskClient, image_id: int,
) -> None:
    page = client.get(f"/image/{image_id}").get_data(as_text=True)
    assert re.search(r'beach sunset.*class="caption-source">from the file name<', page, re.S)
    token = _csrf(page)
    added = client.post(f"/image/{image_id}/captions", data={"csrf_token": token, "text": "A dune"})
    assert added.status_code == 303 and added.headers["Location"].endswith(f"/image/{image_id}#captions")
    first = client.get(f"/api/images/{image_id}").get_json()["caption_details"][0]["id"]
    edited = client.post(f"/captions/{first}/edit", data={"csrf_token": token, "text": "Beach at dusk"})
    assert edited.status_code == 303
    page = client.get(f"/image/{image_id}").get_data(as_text=True)
    assert "Beach at dusk" in page and "A dune" in page and "from the file name" not in page
    deleted = client.post(f"/captions/{first}/delete", data={"csrf_token": token})
    assert deleted.status_code == 303 and _details(client, image_id) == [("user", "A dune")]
    empty = client.post(f"/image/{image_id}/captions", data={"csrf_token": token, "text": ""})
    assert empty.status_code == 400 and "A caption cannot be empty" in empty.get_data(as_text=True)
    hidden = client.post(f"/captions/{_details_ids(client, image_id)[0]}/edit",
                         data={"csrf_token": token, "text": "\u200b"})
    assert hidden.status_code == 400 and "invisible" in hidden.get_data(as_text=True)
    forged = client.post(f"/image/{image_id}/captions", data={"text": "spam"})
    assert forged.status_code == 400 and _details(client, image_id) == [("user", "A dune")]
    assert client.post("/captions/999999/delete", data={"csrf_token": token}).status_code == 404


@pytest.fixture
def browser_page(new_page: Callable[..., Page]) -> Page:
    """A page of the shared browser."""
    return new_page()


def test_a_person_adds_a_caption_on_the_image_page_in_a_browser(
    settings: Settings, redis_url: str, image_id: int, browser_page: Page,
) -> None:
    with serve_app(settings.with_changes(redis_url=redis_url)) as port:
        browser_page.goto(f"http://127.0.0.1:{port}/image/{image_id}")
        captions = browser_page.locator("#captions")
        expect(captions).to_contain_text("beach sunset")
        browser_page.get_by_label("Add a caption").fill("Our dog Bello chasing gulls")
        browser_page.get_by_role("button", name="Add caption").click()
        added = captions.locator("li").filter(has_text="Our dog Bello chasing gulls")
        expect(added).to_contain_text("written by a person")
        browser_page.get_by_label("Add a caption").fill("   ")
        browser_page.get_by_role("button", name="Add caption").click()
        expect(browser_page.locator("body")).to_contain_text("A caption cannot be empty.")


def test_a_refused_caption_shows_its_sentence_on_the_image_page_and_keeps_the_text(
        client: FlaskClient, image_id: int) -> None:
    token = _csrf(client.get(f"/image/{image_id}").get_data(as_text=True))
    typed = "a long description of the dunes " * 40
    refused = client.post(f"/image/{image_id}/captions", data={"csrf_token": token, "text": typed})
    page = refused.get_data(as_text=True)
    assert refused.status_code == 400 and 'class="image-name"' in page  # the image page, not an error page
    form = page.split('class="add-caption"', 1)[1].split("</form>", 1)[0]
    assert 'role="alert"' in form and f'value="{typed}"' in form


@pytest.mark.parametrize(("typed", "sentence"), [
    ("   ", "A caption cannot be empty."),
    ("a long description of the dunes " * 40, "characters"),
])
def test_a_refused_edit_shows_its_sentence_by_its_own_form_and_keeps_the_text(
        client: FlaskClient, image_id: int, typed: str, sentence: str) -> None:
    token = _csrf(client.get(f"/image/{image_id}").get_data(as_text=True))
    caption = _details_ids(client, image_id)[0]
    refused = client.post(f"/captions/{caption}/edit", data={"csrf_token": token, "text": typed})
    page = refused.get_data(as_text=True)
    assert refused.status_code == 400 and 'class="image-name"' in page  # the image page, not an error page
    edit = page.split(f'action="/captions/{caption}/edit"', 1)[1].split("</form>", 1)[0]
    assert 'role="alert"' in edit and sentence in edit and f'value="{typed}"' in edit
    opened = page.split(f'action="/captions/{caption}/edit"', 1)[0].rsplit("<details", 1)[1]
    assert opened.startswith(" open")  # the form stays open where the person was typing
    add = page.split('class="add-caption"', 1)[1].split("</form>", 1)[0]
    assert 'role="alert"' not in add and sentence not in add
    assert _details(client, image_id) == [("filename", "beach sunset")]  # nothing changed
