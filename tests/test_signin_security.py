"""Signing in against an attacker: where `next` may lead, what the sign-in limits count, and
which Authorization headers count."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.test_accounts_web import PASSWORD
from tests.test_accounts_web import accounts_app as accounts_app  # fixtures, found by name
from tests.test_accounts_web import accounts_settings as accounts_settings
from tests.test_accounts_web import people as people

SITE = "http://localhost/login"


def _csrf(client: FlaskClient) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/login").get_data(as_text=True))
    assert found
    return found.group(1)


def _post_login(client: FlaskClient, name: str, password: str, *, url: str = "/login",
                address: str = "127.0.0.1", headers: dict[str, str] | None = None) -> TestResponse:
    return client.post(url, data={"csrf_token": _csrf(client), "name": name, "password": password},
                       environ_base={"REMOTE_ADDR": address}, headers=headers or {})


def _where_a_browser_goes(location: str) -> tuple[str, str]:
    """The scheme and host a browser resolves `location` to from the sign-in page."""
    # Browsers drop tabs and newlines from URLs and read a backslash as a slash.
    cleaned = re.sub(r"[\t\n\r]", "", location).replace("\\", "/").strip("\x00 ")
    target = urlsplit(urljoin(SITE, cleaned))
    return target.scheme, target.netloc


# Each is sent percent-encoded in the query string, as a link would carry it.
HOSTILE_NEXT = [
    "/%09/evil.example", "/%5Cevil.example", "/%5C%5Cevil.example", "%5C%5Cevil.example",
    "//evil.example", "///evil.example", "https://evil.example", "https:/evil.example",
    "http:evil.example", "/%2F%2Fevil.example", "%09//evil", "%20//evil.example",
    "/%0D%0ASet-Cookie:%20x=1", "/%0A/evil.example", "/%0D/evil.example", "javascript:alert(1)",
    "JaVaScRiPt%3Aalert(1)", "/%00/evil.example", "/%E2%80%A8/evil.example", "/%5C/evil.example",
    "/%09%5Cevil.example", "%2F%2Fevil.example", "/%C2%A0/evil.example", "evil.example",
]


@pytest.mark.parametrize("raw", HOSTILE_NEXT)
def test_no_next_leads_off_the_site(accounts_app: Flask, raw: str) -> None:
    client = accounts_app.test_client()
    answer = _post_login(client, "viewer", PASSWORD, url=f"/login?next={raw}")
    assert answer.status_code == 302, answer.get_data(as_text=True)[:300]
    location = answer.headers["Location"]
    assert _where_a_browser_goes(location) == ("http", "localhost"), location
    assert not re.search(r"[\x00-\x20\x7f\\]", location), location
    assert client.get("/api/status").status_code == 200  # signed in all the same


def test_a_next_with_a_line_break_leads_to_the_search_page(accounts_app: Flask) -> None:
    client = accounts_app.test_client()
    answer = _post_login(client, "viewer", PASSWORD, url="/login?next=/%0D%0ASet-Cookie:%20x=1")
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    assert client.get_cookie("x") is None


@pytest.mark.parametrize("target", ["/image/5", "/?q=a+red+car&page=2", "/collections/browse?name=Caf%C3%A9"])
def test_a_next_on_the_site_is_kept(accounts_app: Flask, target: str) -> None:
    client = accounts_app.test_client()
    token = _csrf(client)
    answer = client.post("/login", data={"csrf_token": token, "name": "viewer", "password": PASSWORD,
                                         "next": target})
    assert answer.status_code == 302 and answer.headers["Location"] == target
