"""A real browser on `clipseek up`: the viewer's keys, and 150 files of mixed validity uploaded
in parts, each ending with an outcome that is still shown after a reload."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PIL import Image as PILImage
from playwright.sync_api import Page, expect

from clipseek.uploads import MAX_UPLOAD_BYTES
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
    expect(page.locator("#viewer-title")).to_have_text("Image 12 of 12")
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    expect(cards.first).to_be_focused()
    assert page.url.endswith("per_page=12")  # the card's link was not followed


def test_viewer_keys_and_150_mixed_uploads_each_keep_an_outcome_after_reload(
    live_server: str, page: Page, tmp_path: Path
) -> None:
    _viewer_opens_moves_and_closes(live_server, page)

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
