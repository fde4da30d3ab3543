"""Uploads you cannot lose, in a real browser: every file is listed before its first byte leaves,
leaving the page asks first, a reload at any moment shows each file's outcome, and the page
says plainly what was refused and what to choose again."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from axe_playwright_python.sync_playwright import Axe
from PIL import Image as PILImage
from playwright.sync_api import Dialog, Locator, Page, Route, expect
from sqlalchemy import select

from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image
from tests.httpserver import serve_app
from tests.images import photo_array

if TYPE_CHECKING:  # typeshed's WSGI types exist for type checkers only
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# The page sends two files a part here, so that five files make three parts.
FILES_A_PART = 2


class HeldUpload:
    """The first upload request held back: before the app reads it, or after it has stored the
    files but before the browser gets the answer (as when a page is left at that moment)."""

    def __init__(self) -> None:
        self.mode: str | None = None  # None, "before" or "after" the app's work
        self.held = threading.Event()
        self.release = threading.Event()

    def wrap(self, app: WSGIApplication) -> WSGIApplication:
        def held(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            upload = environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == "/api/images"
            if not upload or self.mode is None or self.held.is_set():
                return app(environ, start_response)
            if self.mode == "before":
                self.held.set()
                self.release.wait(60)
                return app(environ, start_response)
            # werkzeug sends the status and headers with the first bytes of the body, so
            # nothing reaches the browser until the answer is let go.
            body = b"".join(app(environ, start_response))
            self.held.set()
            self.release.wait(60)
            return [body]

        return held


@pytest.fixture
def held() -> HeldUpload:
    """Nothing held until a test says what to hold."""
    return HeldUpload()


@pytest.fixture
def site(settings: Settings, redis_url: str, held: HeldUpload) -> Iterator[str]:
    """The web app (no worker: stored pictures stay queued) behind the holding layer."""
    with serve_app(settings.with_changes(redis_url=redis_url), wrap=held.wrap) as port:
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            held.release.set()


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    """A desktop-sized page whose upload form sends FILES_A_PART files a part."""
    opened = new_page(viewport={"width": 1280, "height": 900})

    def fewer_a_part(route: Route) -> None:
        answer = route.fetch()
        body = re.sub(r'data-max-files="\d+"', f'data-max-files="{FILES_A_PART}"', answer.text())
        route.fulfill(response=answer, body=body)

    opened.route("**/upload", fewer_a_part)
    return opened


def _files(folder: Path) -> list[Path]:
    """a.jpg, a text file named notes.jpg, then b.jpg, c.jpg and d.jpg: three parts of two."""
    folder.mkdir()
    paths = []
    for n, name in enumerate(["a", "notes", "b", "c", "d"]):
        path = folder / f"{name}.jpg"
        if name == "notes":
            path.write_text("this is not a picture\n")
        else:
            PILImage.fromarray(photo_array(300 + n, (48, 64))).save(path, quality=80)
        paths.append(path)
    return paths


def _row(page: Page, name: str) -> Locator:
    return page.locator("#upload-files tbody tr").filter(has=page.get_by_text(name, exact=True))


def test_a_reload_during_the_first_part_shows_every_files_outcome(
    site: str, page: Page, held: HeldUpload, db: Database, tmp_path: Path,
) -> None:
    held.mode = "after"  # the server stores the first part; its answer never arrives
    page.goto(f"{site}/upload")
    page.set_input_files("#file-input", [str(f) for f in _files(tmp_path / "chosen")])
    page.click("#upload-form button[type=submit]")
    assert held.held.wait(30), "the first part never reached the server"
    rows = page.locator("#upload-files tbody tr")
    expect(rows).to_have_count(5)
    expect(_row(page, "a.jpg")).to_contain_text("being sent")
    expect(_row(page, "d.jpg")).to_contain_text("waiting to be sent")

    dialogs: list[str] = []

    def leave(dialog: Dialog) -> None:
        dialogs.append(dialog.type)
        dialog.accept()

    page.on("dialog", leave)
    page.reload()
    assert dialogs == ["beforeunload"]

    expect(rows).to_have_count(5)
    with db.session() as session:
        stored = session.scalars(select(Image.id).where(Image.original_name == "a.jpg")).one()
    # Confirmed by the server from the file's checksum, although its answer was lost.
    expect(_row(page, "a.jpg")).to_have_attribute("data-id", str(stored))
    expect(_row(page, "a.jpg")).to_contain_text("stored; still working (queued)")
    expect(_row(page, "notes.jpg")).to_contain_text(
        "not stored: it was on its way when the page was left; choose it again")
    for name in ("b.jpg", "c.jpg", "d.jpg"):
        expect(_row(page, name)).to_have_class("outcome-interrupted")
        expect(_row(page, name)).to_contain_text("not sent: choose it again")
    expect(page.locator("#count-interrupted")).to_have_text("4")
    expect(page.locator("#upload-resumed")).to_have_text(
        "This page was left while an upload was under way. 1 of its 5 files reached the library; "
        "4 files were not sent or cut off on the way: choose them again. After a reload a browser "
        "cannot read the files it was given before.")
    # The server refused the text file on its way; its reason is in the refused list.
    expect(page.locator("#recent-rejections tr").filter(has_text="notes.jpg")) \
        .to_contain_text("not an image format ClipSeek can read")

    blocking = [(v["id"], [n["target"] for n in v["nodes"]][:3])
                for v in Axe().run(page).response["violations"] if v["impact"] in ("serious", "critical")]
    assert not blocking, blocking

    # Still there after another reload (nothing in flight now, so no question), until dismissed.
    page.reload()
    expect(rows).to_have_count(5)
    assert dialogs == ["beforeunload"]
    page.get_by_role("button", name="Clear this list").click()
    expect(page.locator("#upload-summary")).to_be_hidden()
    page.reload()
    expect(page.locator("#upload-summary")).to_be_hidden()


@pytest.mark.slow  # the fast tier keeps one representative; CI runs every one
def test_leaving_during_an_upload_asks_first_and_staying_lets_it_finish(
    site: str, page: Page, held: HeldUpload, tmp_path: Path,
) -> None:
    held.mode = "before"  # the first part waits on the wire
    page.goto(f"{site}/upload")
    page.set_input_files("#file-input", [str(f) for f in _files(tmp_path / "chosen")])
    page.click("#upload-form button[type=submit]")
    assert held.held.wait(30), "the first part never reached the server"

    dialogs: list[str] = []

    def stay(dialog: Dialog) -> None:
        dialogs.append(dialog.type)
        dialog.dismiss()

    page.on("dialog", stay)
    page.get_by_role("link", name="Search").first.click(no_wait_after=True)
    expect(page.locator("#upload-files tbody tr")).to_have_count(5)
    assert dialogs == ["beforeunload"] and page.url.endswith("/upload")

    held.release.set()
    expect(page.locator("#count-working")).to_have_text("4")  # stored, waiting for a worker
    expect(page.locator("#count-rejected")).to_have_text("1")
    expect(page.locator("#upload-dismiss")).to_be_visible()
    # Done sending: leaving no longer asks.
    page.get_by_role("link", name="Search").first.click()
    page.wait_for_url(f"{site}/")
    assert dialogs == ["beforeunload"]


@pytest.mark.slow  # the fast tier keeps one representative; CI runs every one
def test_after_an_upload_the_refused_list_and_the_chosen_files_are_current(
    site: str, page: Page, tmp_path: Path,
) -> None:
    page.goto(f"{site}/upload")
    expect(page.locator("#recent-rejections")).to_contain_text("None.")
    page.set_input_files("#file-input", [str(f) for f in _files(tmp_path / "chosen")[:3]])
    expect(page.locator("#chosen")).to_have_text("3 files: a.jpg, notes.jpg, b.jpg")
    page.click("#upload-form button[type=submit]")
    expect(page.locator("#count-working")).to_have_text("2")
    # The inputs are emptied for the next choice, and so is the list of what was chosen.
    expect(page.locator("#chosen")).to_have_text("")
    expect(_row(page, "notes.jpg")).to_have_text("notes.jpgrefused: not an image format ClipSeek can read")
    # The server's list of refused files, read again once the upload is done.
    refused = page.locator("#recent-rejections tbody tr")
    expect(refused).to_have_count(1)
    expect(refused).to_contain_text("notes.jpg")
    expect(page.locator("#recent-rejections")).not_to_contain_text("None.")
    page.set_input_files("#file-input", [str(tmp_path / "chosen" / "a.jpg")])
    expect(page.locator("#chosen")).to_have_text("1 file: a.jpg")
