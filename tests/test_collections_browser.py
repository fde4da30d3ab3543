"""The collections page in a real browser: fits a phone's width, asks before deleting."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect

from clipseek.library.ingest import decode_pool
from clipseek.library.register import Candidate
from clipseek.library.sync import sync_folder
from clipseek.settings import Settings
from clipseek.store.db import Database
from tests.httpserver import serve_app

# A folder-like name with no space to break at: it must wrap, not widen the page.
LONG_NAME = "Holidays_in_Greece_with_the_whole_family_and_the_neighbours_" * 2


@pytest.fixture
def phone(new_page: Callable[..., Page]) -> Page:
    """A page of the shared browser with a phone-sized window (390 pixels wide)."""
    return new_page(viewport={"width": 390, "height": 844})


def _sync(db: Database, settings: Settings, folder: Path, collection: str) -> None:
    with db.session() as session, decode_pool(settings) as pool:
        sync_folder(session, folder, model=settings.model, max_pixels=settings.max_image_pixels,
                    pool=pool, collection=collection)
        session.commit()


def test_collections_page_fits_a_phone_and_deletes_only_after_confirmation(
    phone: Page, db: Database, settings: Settings, redis_url: str,
    sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    for name, photos in ((LONG_NAME, sample_photos[:2]), ("garden", sample_photos[2:3])):
        folder = tmp_path / name[:20]
        folder.mkdir()
        for c in photos:
            shutil.copy(c.path, folder / c.path.name)
        _sync(db, settings, folder, name)
    with serve_app(settings.with_changes(redis_url=redis_url)) as port:
        phone.goto(f"http://127.0.0.1:{port}/")
        phone.get_by_role("link", name="Collections").click()
        expect(phone.get_by_role("heading", name="Collections")).to_be_visible()
        expect(phone.locator(".collection")).to_have_count(2)
        overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow} pixels wider than a phone"

        garden = phone.locator(".collection", has_text="garden")
        phone.once("dialog", lambda dialog: dialog.dismiss())
        garden.get_by_role("button", name="Delete collection").click()
        expect(phone.locator(".collection")).to_have_count(2)  # not sent

        messages: list[str] = []

        def accept(dialog: Dialog) -> None:
            messages.append(dialog.message)
            dialog.accept()

        phone.once("dialog", accept)
        garden.get_by_role("button", name="Delete collection").click()
        expect(phone.locator(".flash")).to_contain_text("Moved the 1 image of garden to the trash")
        expect(phone.locator(".collection")).to_have_count(1)
        assert messages and messages[0].startswith("Move the 1 image of garden to the trash?")

        phone.get_by_role("link", name="Browse its images").click()
        expect(phone.locator(".grid .hit")).to_have_count(2)
        overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the browse page is {overflow} pixels wider than a phone"
