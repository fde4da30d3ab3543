"""Chromium signs in to a deployment that requires accounts, under the Content-Security-Policy."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import ConsoleMessage, Page, Response, expect

from clipseek import accounts
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Role
from tests.httpserver import serve_app


def test_sign_in_pages_and_sign_out_without_csp_violations(
    settings: Settings, redis_url: str, db: Database, new_page: Callable[..., Page],
) -> None:
    with db.session() as session:
        accounts.add_user(session, name="alice", secret="a long password", user_role=Role.ADMIN)
        session.commit()
    errors: list[str] = []
    with serve_app(settings.with_changes(redis_url=redis_url, require_accounts=True)) as port:
        page = new_page()

        def console(message: ConsoleMessage) -> None:
            # A missing resource is reported by its response below, with its address.
            if message.type == "error" and not message.text.startswith("Failed to load resource"):
                errors.append(message.text)

        def response(answer: Response) -> None:
            if answer.status >= 400 and not answer.url.endswith("/favicon.ico"):
                errors.append(f"{answer.status} {answer.url}")

        page.on("console", console)
        page.on("response", response)
        base = f"http://127.0.0.1:{port}"
        page.goto(f"{base}/upload")
        assert "/login" in page.url
        page.fill("input[name=name]", "alice")
        page.fill("input[name=password]", "a long password")
        page.click("form.login button")
        expect(page.locator("nav")).to_contain_text("alice")
        assert page.url.endswith("/upload")
        for path in ("/", "/collections", "/status", "/admin/"):
            page.goto(base + path)
        page.goto(f"{base}/account")
        page.fill("input[name=name]", "laptop")
        page.click("text=Create a token")
        expect(page.locator("code.token")).to_contain_text(accounts.TOKEN_PREFIX)
        page.click("form.logout button")
        assert "/login" in page.url
        page.goto(f"{base}/account")
        assert "/login" in page.url
    assert errors == []
