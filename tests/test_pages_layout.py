"""Every page in a real browser, on a desktop and a phone, light and dark: fits, and passes axe-core."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from PIL import Image as PILImage
from playwright.sync_api import Browser, Page
from sqlalchemy import select

from clipseek import accounts
from clipseek.clip.encoder import ClipEncoder
from clipseek.indexing.reading import record_failure, record_text
from clipseek.indexing.text_reader import TextFound, TextLine
from clipseek.library.albums import add_to_album, create_album
from clipseek.library.deletion import Selection, delete_images
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate
from clipseek.library.uploads import UploadOutcome, record_rejections
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image, Role
from tests.httpserver import serve_app
from tests.images import write_bad_files
from tests.switching import half_switched

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
# A name with no space to break at: it must wrap, not widen the page.
LONG_NAME = "Holidays_in_Greece_with_the_whole_family_and_the_neighbours_" * 2
BLOCKING = {"serious", "critical"}
# Controls a finger must hit: at least 44 px tall (WCAG 2.5.5), wherever they are shown.
TOUCH_TARGETS = ("header nav a, .pager a, .pager strong, main button, main select, .chips a, "
                 ".viewer button, .viewer-actions a")
ADMIN, PASSWORD = "admin", "correct horse battery"


@pytest.fixture(scope="module")
def browser(chromium: Browser) -> Browser:
    """The test process's shared Chromium."""
    return chromium


# Module-wide: a second test asking for the folder would find it made already.
@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: CLIPSEEK_SCREENSHOTS, or a folder under pytest's basetemp."""
    folder = os.environ.get("CLIPSEEK_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots", numbered=False)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def library(db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
            tmp_path: Path) -> dict[str, int]:
    """The sample photos, one more in a folder with a very long name, a half-size copy of one
    (a near-duplicate), a failed upload, a refused one, an album with the long name holding two
    of them, two of the photos in the trash, and accounts with tokens (an admin's)."""
    folder = tmp_path / LONG_NAME
    folder.mkdir()
    long_file = folder / f"{LONG_NAME}.jpg"
    shutil.copy(sample_photos[0].path, long_file)
    bad = write_bad_files(tmp_path / "bad", sample_photos[0].path)["text"]
    copy = folder / f"{LONG_NAME}-small.jpg"
    with PILImage.open(sample_photos[1].path) as img:
        img.convert("RGB").resize((img.width // 2, img.height // 2)).save(copy, quality=80)
    candidates = [*sample_photos[1:], Candidate(path=long_file, source="folder", collection=LONG_NAME),
                  Candidate(path=copy, source="folder", collection=LONG_NAME),
                  Candidate(path=bad, source="upload", original_name=f"{LONG_NAME}.jpg")]
    ingest_inline(db, encoder, candidates, settings=settings)
    with db.session() as session:
        record_rejections(session, [UploadOutcome(f"{LONG_NAME}.heic", None, "rejected",
                                                  "not a picture ClipSeek can read: cannot identify "
                                                  "image file", 123_456_789)], collection="uploads")
        admin = accounts.add_user(session, name=ADMIN, secret=PASSWORD, user_role=Role.ADMIN)
        accounts.create_token(session, admin, "the nightly backup script on the NAS")
        accounts.add_user(session, name="Maximiliane-Wilhelmina", secret=PASSWORD,
                          user_role=Role.CONTRIBUTOR)
        session.commit()
        failed = session.scalars(select(Image.id).where(Image.status == "failed")).one()
        long_id = session.scalars(select(Image.id).where(Image.path == str(long_file))).one()
        # Words read in the picture, one line of them long, and a picture whose words could not be read.
        box = [[10.0, 10.0], [300.0, 10.0], [300.0, 40.0], [10.0, 40.0]]
        record_text(session, long_id, TextFound([TextLine(LONG_NAME.upper(), LONG_NAME, 0.91, box),
                                                 TextLine("OPEN DAILY", "OPENDAILY", 0.97, box)]))
        record_failure(session, long_id - 1, f"unreadable image file ({LONG_NAME})")
        session.commit()
        album = create_album(session, name=LONG_NAME, created_by=None)
        session.flush()
        add_to_album(session, album_id=album.id, image_ids=[long_id, failed], added_by=None)
        session.commit()
        trashed = tuple(session.scalars(select(Image.id).where(Image.original_name.in_(
            ["coffee.jpg", "cat.jpg"]))))
        delete_images(session, Selection(image_ids=trashed), store=settings.image_store,
                      thumbnails=settings.thumbnails)
        return {"indexed": long_id, "failed": failed, "album": album.id}


def _pages(ids: dict[str, int]) -> dict[str, str]:
    return {
        "search": "/?q=a+cat&per_page=12&mode=semantic&page=2",
        "browse": "/",
        "image": f"/image/{ids['indexed']}",
        "image-failed": f"/image/{ids['failed']}",
        "similar": f"/image/{ids['indexed']}/similar?per_page=12",
        "status": "/status",
        "collections": "/collections",
        "collection": f"/collections/browse?name={LONG_NAME}",
        "albums": "/albums",
        "album": f"/albums/{ids['album']}",
        "not-found": "/image/999999",
        "upload": "/upload",
        "duplicates": "/duplicates",
        "account": "/account",
        "admin": "/admin/",
        "trash": "/trash",
    }


def _sign_in(page: Page, port: int) -> None:
    page.goto(f"http://127.0.0.1:{port}/login")
    page.fill('input[name="name"]', ADMIN)
    page.fill('input[name="password"]', PASSWORD)
    page.click('form button[type="submit"]')
    page.wait_for_url(f"http://127.0.0.1:{port}/")
    page.wait_for_load_state("networkidle")  # no thumbnail of / cut off by the next page


def _problems(page: Page, name: str, scheme: str) -> list[str]:
    found = []
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(n) for n in background[background.index("(") + 1:-1].split(",")[:3])
    if (red + green + blue < 3 * 128) != (scheme == "dark"):
        found.append(f"{name}: the background {background} does not follow the {scheme} scheme")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 0:
        found.append(f"{name}: {overflow} px wider than the window")
    small = page.evaluate("""selector => Array.from(document.querySelectorAll(selector))
        .map(e => [e.textContent.trim(), e.getBoundingClientRect().height])
        .filter(([, height]) => height > 0 && height < 44)""", TOUCH_TARGETS)
    if small:
        found.append(f"{name}: controls smaller than 44 px: {small[:3]}")
    for violation in Axe().run(page).response["violations"]:
        if violation["impact"] in BLOCKING:
            targets = [node["target"] for node in violation["nodes"]][:3]
            found.append(f"{name}: {violation['id']} ({violation['impact']}) at {targets}")
    return found


# Every page in four sizes and schemes (about a minute): `make test` keeps the
# narrower layout tests below; CI runs this one.
@pytest.mark.slow
def test_every_page_fits_and_passes_axe_on_desktop_and_phone_in_light_and_dark(
    browser: Browser, library: dict[str, int], settings: Settings, redis_url: str, screenshots: Path,
) -> None:
    problems: list[str] = []
    with serve_app(settings.with_changes(redis_url=redis_url, require_accounts=True)) as port:
        for size, (width, height) in SIZES.items():
            page = browser.new_page(viewport={"width": width, "height": height})
            _sign_in(page, port)
            for name, url in _pages(library).items():
                page.goto(f"http://127.0.0.1:{port}{url}")
                if name == "search":
                    page.locator("details.filters").evaluate("d => d.open = true")
                # Thumbnails load lazily; load them all so that the full-page screenshots show them.
                page.evaluate("document.querySelectorAll('img[loading=lazy]')"
                              ".forEach(img => { img.loading = 'eager'; })")
                page.wait_for_load_state("networkidle")
                for scheme in ("light", "dark"):
                    page.emulate_media(color_scheme=scheme)
                    problems += _problems(page, f"{name} at {size} in {scheme}", scheme)
                    page.screenshot(path=screenshots / f"{name}-{size}-{scheme}.png", full_page=True)
            page.goto(f"http://127.0.0.1:{port}/?q=a+cat")
            page.wait_for_load_state("networkidle")  # no thumbnail still being sent at shutdown
            # The first results show on the first screen, with room for their captions (the
            # random model's banner, which a real library does not show, and the selection's
            # buttons take some of it); on a phone they once started at 676 px of 844.
            first = page.locator(".hit").first.evaluate("e => e.getBoundingClientRect().top")
            if first > height * 2 / 3:
                problems.append(f"results at {size}: the first starts at {first:.0f} px of {height}")
            page.locator(".hit a").first.click()
            page.wait_for_selector(".viewer-facts dt")
            page.wait_for_load_state("networkidle")
            for shade in ("light", "dark"):
                page.emulate_media(color_scheme=shade)
                problems += _problems(page, f"viewer at {size} in {shade}", shade)
                page.screenshot(path=screenshots / f"viewer-{size}-{shade}.png")
            page.close()
    assert not problems, "\n".join(problems)


def test_keyboard_focus_on_a_result_is_visible(browser: Browser, library: dict[str, int],
                                               settings: Settings, redis_url: str) -> None:
    with serve_app(settings.with_changes(redis_url=redis_url)) as port:
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.goto(f"http://127.0.0.1:{port}/?q=a+cat")
        page.wait_for_load_state("networkidle")  # no thumbnail still being sent at shutdown
        link = page.locator(".hit a").first
        link.focus()
        ring = link.evaluate("a => { const s = getComputedStyle(a);"
                             " return [s.outlineStyle, parseFloat(s.outlineWidth)]; }")
        clipped = link.evaluate("a => getComputedStyle(a.closest('.hit')).overflow")
        page.close()
    assert ring[0] != "none" and ring[1] >= 2, ring
    assert clipped == "visible"


def test_status_page_during_a_switch_fits_and_passes_axe_on_desktop_and_phone_in_light_and_dark(
    browser: Browser, db: Database, settings: Settings, redis_url: str, screenshots: Path,
) -> None:
    half_switched(db)
    problems: list[str] = []
    with serve_app(settings.with_changes(redis_url=redis_url)) as port:
        for size, (width, height) in SIZES.items():
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(f"http://127.0.0.1:{port}/status")
            assert page.locator("progress#switch-progress").get_attribute("value") == "50"
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                problems += _problems(page, f"status during a switch at {size} in {scheme}", scheme)
                page.screenshot(path=screenshots / f"status-switch-{size}-{scheme}.png", full_page=True)
            page.close()
    assert not problems, "\n".join(problems)


def test_the_viewer_shows_the_text_found_in_a_picture_and_still_fits_a_phone(
    browser: Browser, library: dict[str, int], settings: Settings, redis_url: str,
) -> None:
    with serve_app(settings.with_changes(redis_url=redis_url)) as port:
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.goto(f"http://127.0.0.1:{port}/?collection={LONG_NAME}")
        page.locator(f"[data-viewer-id='{library['indexed']}'] a").first.click()
        found = page.locator("#viewer .viewer-text")
        found.wait_for(state="visible")
        text = found.inner_text()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        page.keyboard.press("Escape")
        page.wait_for_load_state("networkidle")
        page.close()
    assert [line for line in text.splitlines() if line] == [
        "Text found in the picture", LONG_NAME.upper(), "OPEN DAILY"]
    assert overflow <= 0
