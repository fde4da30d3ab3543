"""The search form, /api/search, the CLI and Python search() with filters, modes, examples and cutoffs."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import expect
from sqlalchemy import update

from clipseek.api import search
from clipseek.context import Context
from clipseek.library.register import Candidate
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image, ScoreCutoff
from tests.cli import run_in_process
from tests.httpserver import serve_app

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture
def indexed(db: Database, indexed_samples: list[int]) -> list[int]:
    """The sample photos indexed; the first eight in the collection "trips"."""
    ids = indexed_samples
    with db.session() as s:
        s.execute(update(Image).where(Image.id.in_(ids[:8])).values(collection="trips"))
        s.commit()
    return ids


def _csrf(client: FlaskClient) -> str:
    page = client.get("/upload").get_data(as_text=True)
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


@pytest.mark.parametrize(("query", "message"), [
    ("q=cat&colour=red", "There is no search parameter &#39;colour&#39;"),
    ("q=cat&orientation=round", "must be one of portrait, landscape, square"),
    ("q=cat&taken_from=2024-02-01&taken_to=2024-01-01", "swap the two dates"),
    ("example=" + "a" * 64, "That example has expired, drop the picture again."),
    ("q=cat+-+cat", "Nothing is left of the query"),
    ("q=the&mode=text", "only common words"),
])
def test_bad_search_parameters_are_a_400_with_one_sentence(client: FlaskClient, indexed: list[int],
                                                           query: str, message: str) -> None:
    page = client.get(f"/?{query}")
    assert page.status_code == 400 and message in page.get_data(as_text=True)
    api = client.get(f"/api/search?{query}")
    assert api.status_code == 400 and message.replace("&#39;", "'") in api.get_json()["error"]


def test_api_search_reports_mode_sort_filters_cutoff_and_hidden(client: FlaskClient, app: Flask,
                                                                indexed: list[int]) -> None:
    data = client.get("/api/search?q=a+cat&collection=trips&mode=semantic&per_page=3").get_json()
    assert data["total"] == 8 and data["pages"] == 3 and data["mode"] == "semantic"
    assert data["filters"] == {"collections": ["trips"]} and data["cutoff"] is None
    assert all(r["image_id"] in indexed[:8] for r in data["results"])
    scores = [r["score"] for r in client.get(
        "/api/search?q=a+cat&collection=trips&mode=semantic&per_page=8").get_json()["results"]]
    with app.extensions["clipseek"].db.session() as s:
        s.add(ScoreCutoff(model="ViT-B-32/random", cutoff=(scores[1] + scores[2]) / 2, images=22))
        s.commit()
    cut = client.get("/api/search?q=a+cat&collection=trips&mode=semantic").get_json()
    assert cut["total"] == 2 and cut["hidden"] == 6 and cut["cutoff"] == pytest.approx(cut["cutoff"])
    html = client.get("/?q=a+cat&collection=trips&mode=semantic").get_data(as_text=True)
    assert "6 weaker matches hidden" in html and "all=1" in html
    shown = client.get("/?q=a+cat&collection=trips&mode=semantic&all=1").get_data(as_text=True)
    assert shown.count('class="hit"') == 8 and "weaker matches hidden" not in shown


def test_an_empty_result_says_why(client: FlaskClient, indexed: list[int]) -> None:
    html = client.get("/?q=a+cat&collection=nowhere").get_data(as_text=True)
    assert "No pictures match these filters" in html


def test_example_search_pages_by_url_and_more_like_this_links(client: FlaskClient, indexed: list[int],
                                                             sample_photos: list[Candidate]) -> None:
    data = {"csrf_token": _csrf(client), "per_page": "12",
            "image": (io.BytesIO(sample_photos[2].path.read_bytes()), "cat.jpg")}
    posted = client.post("/search/by-image", data=data, content_type="multipart/form-data")
    url = posted.headers["Location"]
    api = client.get("/api" + url.replace("/?", "/search?") + "&collection=trips").get_json()
    assert api["total"] == 8 and api["filters"] == {"collections": ["trips"]}
    image_page = client.get(f"/image/{indexed[0]}").get_data(as_text=True)
    assert f'href="/?like={indexed[0]}"' in image_page
    like = client.get(f"/?like={indexed[0]}&per_page=12").get_data(as_text=True)
    assert "Pictures like" in like and like.count('class="hit"') == 12


def test_more_like_this_leaves_the_picture_itself_out_everywhere(client: FlaskClient,
                                                                 indexed: list[int]) -> None:
    like = indexed[3]
    others = len(indexed) - 1
    for query in (f"like={like}", f"like={like}&all=1", f"like={like}&q=a+cat",
                  f"like={like}&collection=trips"):
        api = client.get(f"/api/search?{query}&per_page=96").get_json()
        assert like not in [hit["image_id"] for hit in api["results"]], query
        assert api["total"] <= others, query
    api = client.get(f"/api/search?like={like}&all=1&per_page=96").get_json()
    assert api["total"] == len(api["results"]) == others
    trips = client.get(f"/api/search?like={like}&collection=trips&all=1").get_json()
    assert trips["total"] == 7
    page = client.get(f"/?like={like}&all=1&per_page=96").get_data(as_text=True)
    assert page.count('class="hit"') == others
    similar = client.get(f"/api/images/{like}/similar?per_page=96").get_json()
    assert [h["image_id"] for h in similar["results"]] == [h["image_id"] for h in api["results"]]


def test_cli_search_takes_filter_flags_and_explains_bad_ones(cli_env: dict[str, str],
                                                             indexed: list[int]) -> None:
    ok = run_in_process(cli_env, "search", "a cat", "--collection", "trips", "--mode", "semantic",
                        "--sort", "date", "--json", "-k", "20")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["sort"] == "date" and {r["image_id"] for r in data["results"]} == set(indexed[:8])
    bad = run_in_process(cli_env, "search", "a cat", "--orientation", "round")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "must be one of portrait, landscape, square" in bad.stderr


def test_python_search_takes_the_same_parameters(settings: Settings, indexed: list[int]) -> None:
    ctx = Context(settings)
    try:
        page = search("a cat", top_k=20, context=ctx, collection="trips", mode="semantic")
        browse = search(context=ctx, top_k=3)
    finally:
        ctx.close()
    assert {h.image_id for h in page.hits} == set(indexed[:8])
    assert browse.mode == "browse" and browse.total == 22


@pytest.fixture
def browser_page(new_page: Callable[..., object]) -> object:
    """A desktop-sized page of the shared browser."""
    return new_page(viewport={"width": 1280, "height": 900})


def test_the_form_pages_through_results_keeping_every_filter(settings: Settings, redis_url: str,
                                                             indexed: list[int],
                                                             browser_page: object) -> None:
    from playwright.sync_api import Page

    assert isinstance(browser_page, Page)
    page = browser_page
    with serve_app(settings.with_changes(redis_url=redis_url)) as port:
        page.goto(f"http://127.0.0.1:{port}/")
        page.fill('input[name="q"]', "a cat")
        page.click("details.filters summary")
        page.fill('input[name="collection"]', "trips")
        page.select_option('select[name="mode"]', "semantic")
        page.select_option('select[name="per_page"]', "12")
        page.click('form.search button[type="submit"]')
        expect(page.locator(".hit")).to_have_count(8)
        page.goto(page.url.replace("per_page=12", "per_page=3"))
        expect(page.locator(".hit")).to_have_count(3)
        page.click('nav.pager a[rel="next"]')
        expect(page.locator(".hit")).to_have_count(3)
        assert "collection=trips" in page.url and "mode=semantic" in page.url and "page=2" in page.url
        expect(page.locator('input[name="collection"]')).to_have_value("trips")
        hrefs = [page.locator(".hit a").nth(i).get_attribute("href") for i in range(3)]
        assert all(h and int(h.rsplit("/", 1)[1]) in indexed[:8] for h in hrefs)


def test_words_typed_over_an_example_start_a_new_search_and_chips_drop_each_setting(
        client: FlaskClient, indexed: list[int]) -> None:
    like = indexed[0]
    # What the form sends: every field, filled or not.
    sent = client.get(f"/?q=a+red+car&like={like}&per_page=24&collection=trips&source=&folder=&mode=")
    assert sent.status_code == 302
    assert sent.headers["Location"] == "/?q=a+red+car&per_page=24&collection=trips"
    # Words that begin with - or + refine the picture instead; empty fields still go.
    refined = client.get(f"/?q=-+%22people%22&like={like}&format=")
    assert refined.headers["Location"] == f"/?q=-+%22people%22&like={like}"
    page = client.get(f"/?like={like}&collection=trips&sort=date").get_data(as_text=True)
    chips = page.split('<ul class="chips"', 1)[1].split("</ul>", 1)[0]
    assert f'src="/thumb/{like}.jpg"' in chips
    assert 'href="/?collection=trips&amp;sort=date&amp;per_page=24"' in chips  # without the picture
    assert f'href="/?like={like}&amp;sort=date&amp;per_page=24"' in chips  # without the collection
    assert "Order: <strong>newest first</strong>" in chips
    assert "collection=&" not in page and "source=&" not in page


def test_an_example_shows_as_a_chip_with_its_picture_until_words_replace_it(
        settings: Settings, redis_url: str, indexed: list[int], sample_photos: list[Candidate],
        browser_page: object) -> None:
    from playwright.sync_api import Page

    assert isinstance(browser_page, Page)
    page = browser_page
    with serve_app(settings.with_changes(redis_url=redis_url)) as port:
        page.goto(f"http://127.0.0.1:{port}/?collection=trips")
        page.click("details.by-image summary")
        page.set_input_files('#by-image input[type="file"]', str(sample_photos[2].path))
        page.click('#by-image button[type="submit"]')
        page.wait_for_url("**example=**")
        page.wait_for_load_state("networkidle")  # no thumbnail cut off by the next navigation
        chip = page.locator(".chip-example img")
        expect(chip).to_be_visible()  # the tab's copy of the picture
        page.goto(page.url + "&collection=trips")
        page.wait_for_load_state("networkidle")
        expect(page.locator(".chip")).to_have_count(2)
        (ARTIFACTS / "search-chips.png").parent.mkdir(exist_ok=True)
        page.locator("main").screenshot(path=str(ARTIFACTS / "search-chips.png"))
        page.fill('input[name="q"]', "a red car")
        page.click('form.search button[type="submit"]')
        page.wait_for_url("**q=a+red+car**")
        page.wait_for_load_state("networkidle")
        assert "example=" not in page.url and "collection=trips" in page.url and "source=" not in page.url
        expect(page.locator(".summary")).to_contain_text("Results for")
        page.click(".chip-collection .chip-remove")
        page.wait_for_url(f"http://127.0.0.1:{port}/?q=a+red+car&per_page=24")
        page.wait_for_load_state("networkidle")


def test_the_viewer_is_in_the_address_back_closes_it_and_next_goes_on_to_the_next_page(
        settings: Settings, redis_url: str, indexed: list[int], browser_page: object) -> None:
    from playwright.sync_api import Dialog, Page

    assert isinstance(browser_page, Page)
    page = browser_page
    viewer = page.locator("#viewer")
    # Each page's thumbnails arrive before the next navigation, so that none is cut off mid-send.
    settle = page.wait_for_load_state
    with serve_app(settings.with_changes(redis_url=redis_url)) as port:
        results = f"http://127.0.0.1:{port}/?per_page=12"
        page.goto(results)
        settle("networkidle")
        first = page.locator("[data-viewer-id]").first.get_attribute("data-viewer-id")
        page.locator(".hit a").first.click()
        expect(viewer).to_be_visible()
        assert page.url == f"{results}#view={first}"
        page.go_back()  # a phone's back gesture
        expect(viewer).to_be_hidden()
        assert page.url == results
        last = page.locator("[data-viewer-id]").last.get_attribute("data-viewer-id")
        page.goto(f"{results}#view={last}")
        page.reload()  # a link with the picture in it opens the viewer
        settle("networkidle")
        expect(viewer).to_be_visible()
        expect(page.locator("#viewer-title")).to_have_text("Image 12 of 12")
        page.click(".viewer-next")
        page.wait_for_url("**page=2**")
        settle("networkidle")
        expect(viewer).to_be_visible()
        expect(page.locator("#viewer-title")).to_have_text("Image 1 of 10")
        page.click(".viewer-prev")
        page.wait_for_url(f"**#view={last}")
        settle("networkidle")
        expect(page.locator("#viewer-title")).to_have_text("Image 12 of 12")
        name = page.locator("#viewer figcaption").text_content()
        asked: list[str] = []

        def answer(dialog: Dialog) -> None:
            asked.append(dialog.message)
            dialog.dismiss()

        page.once("dialog", answer)
        page.click(".viewer-delete")
        assert name and asked and asked[0].startswith(f"Move {name} to the trash?")
        # A collection's picture opens in the viewer too, not on its page.
        page.goto(f"http://127.0.0.1:{port}/collections/browse?name=trips")
        settle("networkidle")
        page.locator(".hit a").first.click()
        expect(viewer).to_be_visible()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(ARTIFACTS / "viewer.png"))
        picture = page.locator("#viewer figure img")
        picture.dblclick()
        expect(picture).to_have_attribute("style", re.compile(r"scale\(2\.5\)"))
        page.screenshot(path=str(ARTIFACTS / "viewer-zoomed.png"))
        page.click(".viewer-next")  # another picture starts unzoomed
        expect(picture).not_to_have_attribute("style", re.compile("scale"))
        settle("networkidle")


def test_the_viewer_shows_every_fact_there_is(settings: Settings, redis_url: str, db: Database,
                                              indexed: list[int], browser_page: object) -> None:
    from datetime import datetime

    from playwright.sync_api import Page

    from clipseek.store.tables import Caption, CaptionSource

    assert isinstance(browser_page, Page)
    page = browser_page
    shown = indexed[0]
    with db.session() as s:
        s.execute(update(Image).where(Image.id == shown).values(
            place_city="Porto", place_region="Norte", place_country="Portugal", place_country_code="PT",
            camera_make="Canon", camera_model="EOS 5D", taken_at=datetime(2021, 6, 1, 12, 30),
            width=640, height=480, display_width=640, display_height=480, file_size=2_621_440))
        s.add_all([Caption(image_id=shown, text="Our dog on the quay", source="user"),
                   Caption(image_id=shown, text="OPEN DAILY\n9 TO 5", source=CaptionSource.OCR,
                           confidence=0.9)])
        s.commit()
    with serve_app(settings.with_changes(redis_url=redis_url)) as port:
        page.goto(f"http://127.0.0.1:{port}/?collection=trips&per_page=12#view={shown}")
        page.wait_for_load_state("networkidle")
        viewer = page.locator("#viewer")
        expect(viewer).to_be_visible()
        expect(viewer.locator(".viewer-captions")).to_contain_text("Our dog on the quay")
        expect(viewer.locator(".viewer-text")).to_contain_text("OPEN DAILY")
        expect(viewer.locator(".viewer-text")).to_contain_text("9 TO 5")
        facts = viewer.locator(".viewer-facts")
        expect(facts).to_contain_text("Taken2021-06-01 12:30")
        expect(facts).to_contain_text("PlacePorto, Norte, Portugal")
        expect(facts).to_contain_text("CameraCanon EOS 5D")
        expect(facts).to_contain_text("Size640 × 480 pixels, 2.5 MB")
        expect(facts).to_contain_text("Collectiontrips")
