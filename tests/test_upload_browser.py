"""A real browser on `clipseek up`: the viewer's keys; the viewer on a dark phone (fits,
passes axe-core, swipes, deletes); search by an example picture across pages; and 150 files
of mixed validity uploaded in parts, each ending with an outcome still shown after a reload."""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from PIL import Image as PILImage
from playwright.sync_api import Page, expect

from clipseek.library.uploads import MAX_UPLOAD_BYTES
from tests import test_browser
from tests.images import photo_array

# One `clipseek up` with its worker serves both checks: starting it and indexing the
# samples is most of the cost.
live_server = test_browser.live_server
page = test_browser.page

GOOD, COPIES, TEXTS, TRUNCATED = 110, 20, 15, 4  # and one file over the per-file limit: 150


def _mixed_files(folder: Path) -> list[Path]:
    """Small photos, copies under other names, text named .jpg, truncated JPEGs, one too large."""
    folder.mkdir()
    files = []
    for n in range(GOOD + TRUNCATED):
        path = folder / f"photo-{n:03}.jpg"
        # The truncated ones larger, so that their header still reads and they fail at indexing.
        size = (48, 64) if n < GOOD else (240, 320)
        PILImage.fromarray(photo_array(1000 + n, size)).save(path, quality=80)
        files.append(path)
    for path in files[GOOD:]:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    for n in range(COPIES):
        files.append(Path(shutil.copy(files[n], folder / f"copy-{n:02}.jpg")))
    for n in range(TEXTS):
        text = folder / f"notes-{n:02}.jpg"
        text.write_text("this is not a picture\n")
        files.append(text)
    huge = folder / "huge.jpg"
    with huge.open("wb") as out:
        out.truncate(MAX_UPLOAD_BYTES + 1)  # sparse: costs no disk, and the browser never sends it
    files.append(huge)
    return files


def _viewer_opens_moves_and_closes(live_server: str, page: Page) -> None:
    page.goto(f"{live_server}/?q=a+photo&per_page=12")
    cards = page.locator(".hit a")
    expect(cards).to_have_count(12)
    viewer = page.locator("#viewer")
    cards.first.focus()
    page.keyboard.press("Enter")
    expect(viewer).to_be_visible()
    expect(viewer).to_have_attribute("aria-modal", "true")
    expect(page.locator("#viewer-title")).to_have_text("Image 1 of 12")
    expect(viewer.locator(".viewer-facts")).to_contain_text("pixels")
    expect(viewer.locator(".viewer-download")).to_have_attribute("href", "/file/" + str(
        page.locator(".hit").first.get_attribute("data-viewer-id")))
    page.keyboard.press("ArrowRight")
    expect(page.locator("#viewer-title")).to_have_text("Image 2 of 12")
    test_browser.ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(test_browser.ARTIFACTS / "viewer-open.png"))
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    # The first picture of the first page has none before it: no wrapping round to the last.
    expect(page.locator("#viewer-title")).to_have_text("Image 1 of 12")
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    expect(cards.first).to_be_focused()
    assert page.url.endswith("per_page=12")  # the card's link was not followed


def _status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _viewer_on_a_dark_phone_fits_swipes_and_deletes(live_server: str, page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.emulate_media(color_scheme="dark")
    page.goto(f"{live_server}/?q=a+photo&per_page=12")
    page.locator(".hit a").first.click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(viewer.locator(".viewer-facts")).to_contain_text("pixels")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    blocking = [(v["id"], [n["target"] for n in v["nodes"]][:3])
                for v in Axe().run(page).response["violations"]
                if v["impact"] in ("serious", "critical")]
    assert not blocking, blocking
    test_browser.ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(test_browser.ARTIFACTS / "viewer-phone-dark.png"))
    # A swipe to the left shows the next picture.
    page.evaluate("""() => {
        const dialog = document.querySelector('#viewer');
        const touch = x => new Touch({identifier: 1, target: dialog, clientX: x, clientY: 400});
        dialog.dispatchEvent(new TouchEvent('touchstart', {changedTouches: [touch(300)], bubbles: true}));
        dialog.dispatchEvent(new TouchEvent('touchend', {changedTouches: [touch(100)], bubbles: true}));
    }""")
    expect(page.locator("#viewer-title")).to_have_text("Image 2 of 12")
    doomed = page.locator(".hit").nth(1).get_attribute("data-viewer-id")
    assert _status_of(f"{live_server}/api/images/{doomed}") == 200
    page.once("dialog", lambda dialog: dialog.accept())
    viewer.locator(".viewer-delete").click()
    # The card goes, the viewer shows the next one in its place, and the image is gone.
    expect(page.locator(".hit")).to_have_count(11)
    expect(page.locator("#viewer-title")).to_have_text("Image 2 of 11")
    assert _status_of(f"{live_server}/api/images/{doomed}") == 404
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    page.set_viewport_size({"width": 1280, "height": 900})
    page.emulate_media(color_scheme="light")


def _search_by_example_pages_and_reloads(live_server: str, page: Page, folder: Path) -> None:
    example = folder / "example.jpg"
    PILImage.fromarray(photo_array(7, (120, 160))).save(example)
    page.goto(f"{live_server}/?per_page=8")
    page.locator("details.by-image summary").click()
    page.set_input_files("#by-image input[type=file]", str(example))
    page.locator("#by-image button[type=submit]").click()
    page.wait_for_url("**/?example=*")
    hits = page.locator(".hit")
    expect(hits).to_have_count(8)
    first = [hits.nth(n).get_attribute("data-viewer-id") for n in range(8)]
    page.locator("a[rel=next]").first.click()
    page.wait_for_url("**page=2*")
    assert "example=" in page.url
    expect(hits).to_have_count(8)
    second = [hits.nth(n).get_attribute("data-viewer-id") for n in range(8)]
    assert not set(first) & set(second)
    page.reload()  # a GET: nothing is sent again, and the same page comes back
    expect(hits).to_have_count(8)
    assert [hits.nth(n).get_attribute("data-viewer-id") for n in range(8)] == second


@pytest.mark.slow
def test_viewer_keys_and_150_mixed_uploads_each_keep_an_outcome_after_reload(
    live_server: str, page: Page, tmp_path: Path
) -> None:
    _viewer_opens_moves_and_closes(live_server, page)
    _viewer_on_a_dark_phone_fits_swipes_and_deletes(live_server, page)
    _search_by_example_pages_and_reloads(live_server, page, tmp_path)

    files = _mixed_files(tmp_path / "mixed")
    assert len(files) == 150
    page.goto(f"{live_server}/upload")
    page.set_input_files("#file-input", [str(f) for f in files])
    page.click("#upload-form button[type=submit]")
    rows = page.locator("#upload-files tbody tr")
    expect(rows).to_have_count(150)
    expect(page.locator("#count-working")).to_have_text("0", timeout=600_000)

    def check_outcomes(*, reloaded: bool) -> None:
        expect(page.locator("#count-indexed")).to_have_text(str(GOOD))
        expect(page.locator("#count-failed")).to_have_text(str(TRUNCATED))
        expect(page.locator("#count-rejected")).to_have_text(str(TEXTS + 1))
        expect(page.locator("#count-duplicate")).to_have_text(str(COPIES))
        expect(rows).to_have_count(150)
        expect(page.locator("#upload-files tr.outcome-rejected").filter(has_text="huge.jpg")) \
            .to_contain_text("larger than the 50 MB limit")
        expect(page.locator("#upload-files tr.outcome-failed").first).to_contain_text("truncated")
        expect(page.locator("#retry-failed")).to_be_hidden()  # a truncated file fails every time
        if not reloaded:
            return
        # Rendered by the server: the refusals were recorded, not only shown.
        refused = page.locator("#recent-rejections tbody tr")
        expect(refused).to_have_count(TEXTS + 1)
        expect(refused.filter(has_text="notes-07.jpg")).to_contain_text("not an image format")

    check_outcomes(reloaded=False)
    page.reload()
    check_outcomes(reloaded=True)
    page.screenshot(path=str(test_browser.ARTIFACTS / "upload-150-mixed.png"), full_page=True)
    status = test_browser._get_json(f"{live_server}/api/status")
    assert len(status["recent_rejections"]) == 10  # type: ignore[arg-type]
    assert os.path.getsize(files[-1]) > MAX_UPLOAD_BYTES
