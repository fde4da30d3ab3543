"""The People pages in a real browser: a viewer looks, a contributor names a person and takes a
wrong face away; the pages fit a phone in both schemes, with 44-pixel targets, and pass axe-core."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from clipseek import accounts
from clipseek.clip.encoder import ClipEncoder
from clipseek.indexing.face_finder import FaceFinder
from clipseek.indexing.face_finding import find_faces
from clipseek.library.ingest import ingest_inline
from clipseek.library.people import enable_people
from clipseek.library.register import Candidate
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Face, Role
from tests.faces import write_face_photos
from tests.httpserver import serve_app
from tests.test_albums_browser import PASSWORD, SCHEMES, _sign_in
from tests.test_pages_layout import _problems

PEOPLE_TARGETS = ".face button, .person > a"


def _blocking(page: Page) -> list[object]:
    violations = Axe().run(page).response["violations"]
    return [(v["id"], [n["target"] for n in v["nodes"]][:3]) for v in violations
            if v["impact"] in ("serious", "critical")]


def _check(page: Page, name: str) -> list[str]:
    problems: list[str] = []
    page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(img => { img.loading = 'eager'; })")
    page.wait_for_load_state("networkidle")
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        problems += _problems(page, f"{name} in {scheme}", scheme)
        small = page.evaluate("""selector => Array.from(document.querySelectorAll(selector))
            .map(e => e.getBoundingClientRect()).filter(r => r.height > 0 && (r.height < 44 || r.width < 44))
            .length""", PEOPLE_TARGETS)
        if small:
            problems.append(f"{name} in {scheme}: {small} target(s) under 44 px")
        if blocking := _blocking(page):
            problems.append(f"{name} in {scheme}: axe-core: {blocking}")
    return problems


def test_people_pages_for_a_viewer_and_a_contributor_on_a_phone(
    new_page: Callable[..., Page], db: Database, encoder: ClipEncoder, settings: Settings, redis_url: str,
    tmp_path: Path,
) -> None:
    photos = write_face_photos(tmp_path / "faces", variants=("original", "mirrored", "smaller"))
    ingest_inline(db, encoder, [Candidate(path=p, source="folder") for p in photos.values()],
                  settings=settings)
    with db.session() as session:
        for role in (Role.VIEWER, Role.CONTRIBUTOR):
            accounts.add_user(session, name=role.value, secret=PASSWORD, user_role=role)
        waiting = enable_people(session)
        session.commit()
        find_faces(session, FaceFinder(), waiting, max_pixels=settings.max_image_pixels,
                   distance=settings.people_distance)
    problems: list[str] = []
    with serve_app(settings.with_changes(require_accounts=True, redis_url=redis_url)) as port:
        base = f"http://127.0.0.1:{port}"
        viewer = new_page(viewport={"width": 390, "height": 844})
        _sign_in(viewer, base, "viewer")
        viewer.get_by_role("link", name="People").click()
        expect(viewer.locator(".person")).to_have_count(2)
        expect(viewer.locator(".person .counts").first).to_have_text("3 pictures")
        problems += _check(viewer, "viewer's People page")
        viewer.locator(".person a").first.click()
        expect(viewer.locator(".face")).to_have_count(3)
        expect(viewer.get_by_role("button", name="Not this person")).to_have_count(0)
        expect(viewer.locator(".album-manage")).to_have_count(0)

        page = new_page(viewport={"width": 390, "height": 844})
        _sign_in(page, base, "contributor")
        page.goto(f"{base}/people")
        page.locator(".person a").first.click()
        problems += _check(page, "contributor's person page")
        page.locator(".album-manage summary").click()
        page.get_by_label("Name").fill("Grace")
        page.get_by_role("button", name="Save name").click()
        expect(page.locator(".flash")).to_have_text("This person is now called Grace.")
        expect(page.locator("h1")).to_have_text("Grace")
        page.locator(".face button").first.click()
        expect(page.locator(".face")).to_have_count(2)
        page.get_by_role("link", name="Search with this person").click()
        expect(page.locator(".hit")).to_have_count(2)
        expect(page.locator(".chip-person")).to_contain_text("Grace")
        expect(page.locator("select[name=person]")).to_have_value("Grace")
        problems += _check(page, "search for a person")
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Face).where(Face.person_locked)) == 1
    assert not problems, "\n".join(problems)
