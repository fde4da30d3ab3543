"""A real browser against `clipseek up` with a real worker: search, page, open, upload, find."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image as PILImage
from playwright.sync_api import Page, expect

from clipseek.library.register import Candidate
from tests.images import write_bad_files

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as response:
        data: dict[str, object] = json.load(response)
        return data


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():  # type: ignore[operator]
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.fixture
def live_server(cli_env: dict[str, str], redis_url: str, tmp_path: Path) -> Iterator[str]:
    """`clipseek up` as a user runs it, on the test database and Redis; Ctrl-C at the end."""
    port = _free_port()
    env = cli_env | {"REDIS_URL": redis_url, "CLIPSEEK_BATCH_SIZE": "8"}
    log = open(tmp_path / "up.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(["clipseek", "up", "--port", str(port)], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _get_json(f"{base}/api/status")["searchable"] == 22, 300,
              "the sample photos to be indexed")
        yield base
    finally:
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=60)
        log.close()
        output = (tmp_path / "up.log").read_text()
        assert code == 0 and "Stopped." in output, output


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    """A desktop-sized page of the shared browser."""
    return new_page(viewport={"width": 1280, "height": 900})


def _upload_files(folder: Path, samples: list[Candidate]) -> list[Path]:
    folder.mkdir()
    files = []
    for n, c in enumerate(samples[3:6]):
        with PILImage.open(c.path) as img:
            target = folder / f"upload-{n}.jpg"
            img.convert("RGB").rotate(90, expand=True).save(target)  # new content, new hash
            files.append(target)
    bad = write_bad_files(folder / "bad", samples[0].path)["truncated"]
    shutil.move(bad, folder / "broken.jpg")
    return [*files, folder / "broken.jpg"]


def test_search_page_open_upload_and_find(live_server: str, page: Page, tmp_path: Path,
                                          sample_photos: list[Candidate]) -> None:
    page.goto(live_server)
    expect(page.locator(".banner")).to_contain_text("random weights")
    page.fill("input[name=q]", "a cat sitting on a chair")
    page.select_option("select[name=per_page]", "12")
    page.click("form.search button")
    expect(page.locator(".hit")).to_have_count(12)
    expect(page.locator(".summary")).to_contain_text("22 images searched")
    assert "q=a+cat+sitting+on+a+chair" in page.url  # shareable, reloadable

    page.click("a[rel=next]")
    expect(page.locator(".hit")).to_have_count(10)
    assert "page=2" in page.url
    # every thumbnail really renders (lazy-loaded: scroll them into view first)
    page.mouse.wheel(0, 5000)
    page.wait_for_function("Array.from(document.querySelectorAll('.hit img'))"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "results-page.png"), full_page=True)

    page.locator(".hit a").first.click()  # opens the viewer, which links to the page
    page.click("#viewer .viewer-page")
    expect(page.locator("h2")).to_have_text("Similar images")
    expect(page.locator(".hit")).to_have_count(12)
    page.click("text=All images ranked by similarity")
    expect(page.locator(".summary")).to_contain_text("21 images")

    files = _upload_files(tmp_path / "uploads", sample_photos)
    page.goto(f"{live_server}/upload")
    page.set_input_files("#file-input", [str(f) for f in files])
    expect(page.locator("#chosen")).to_have_text(
        "4 files: upload-0.jpg, upload-1.jpg, upload-2.jpg, broken.jpg")
    page.click("#upload-form button[type=submit]")
    rows = page.locator("#upload-files tbody tr")
    expect(rows).to_have_count(4)
    # the page polls the API and updates itself until every file is indexed or failed
    expect(page.locator("#upload-files .outcome-indexed")).to_have_count(3, timeout=120_000)
    expect(page.locator("#upload-files .outcome-failed")).to_have_count(1)
    expect(page.locator("#upload-files .outcome-failed")).to_contain_text("truncated")
    expect(page.locator("#count-working")).to_have_text("0")
    uploaded = [rows.nth(i).get_attribute("data-id") for i in range(3)]

    page.goto(f"{live_server}/?q=a+photo&per_page=96")
    expect(page.locator(".hit")).to_have_count(25)
    for image_id in uploaded:
        expect(page.locator(f'.hit a[href="/image/{image_id}"]')).to_have_count(1)

    # Deleting from the image page asks first: dismissed, nothing happens; accepted, it goes.
    page.goto(f"{live_server}/image/{uploaded[0]}")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete", exact=True).click()  # not "Delete caption"
    expect(page.locator("h2")).to_have_text("Similar images")
    assert page.url.endswith(f"/image/{uploaded[0]}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete", exact=True).click()  # not "Delete caption"
    expect(page.locator(".flash")).to_contain_text(f"(image {uploaded[0]})")
    assert page.url.rstrip("/") == live_server
    assert _get_json(f"{live_server}/api/status")["searchable"] == 24
