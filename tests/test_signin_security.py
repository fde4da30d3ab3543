"""Signing in against an attacker: where `next` may lead, what the sign-in limits count, and
which Authorization headers count."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image as PILImage
from werkzeug.test import TestResponse

from clipseek import accounts
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Role
from tests.images import encoded, photo_array
from tests.test_accounts_web import PASSWORD, sign_in
from tests.test_accounts_web import accounts_app as accounts_app  # fixtures, found by name
from tests.test_accounts_web import accounts_settings as accounts_settings
from tests.test_accounts_web import people as people
from webapp import auth, create_app

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


def _lands_off_the_site(app: Flask, raw: str, address: str) -> str | None:
    """What is wrong with signing in through /login?next=`raw`, or None where it stays on the site."""
    client = app.test_client()
    answer = _post_login(client, "viewer", PASSWORD, url=f"/login?next={raw}", address=address)
    if answer.status_code == 400:  # refused at the edge (a NUL byte), before anyone signs in
        if "cannot contain" not in answer.get_data(as_text=True):
            return f"a 400 without its sentence: {answer.get_data(as_text=True)[:200]}"
        if client.get("/api/status").status_code != 401:
            return "refused, yet signed in"
        return None
    if answer.status_code != 302:
        return f"{answer.status_code}: {answer.get_data(as_text=True)[:200]}"
    location = answer.headers["Location"]
    if _where_a_browser_goes(location) != ("http", "localhost"):
        return f"leads to {location!r}"
    if re.search(r"[\x00-\x20\x7f\\]", location):
        return f"a control character, space or backslash in {location!r}"
    if client.get("/api/status").status_code != 200:
        return "not signed in"
    return None


def test_no_next_leads_off_the_site(accounts_app: Flask) -> None:
    # One app for every case (each signs in afresh, from an address of its own so that no
    # limit on sign-ins counts them together): an app with its users costs a second or two.
    problems = {raw: problem for n, raw in enumerate(HOSTILE_NEXT)
                if (problem := _lands_off_the_site(accounts_app, raw, f"10.0.1.{n + 1}"))}
    assert not problems, problems


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


def _add_users(db: Database, names: list[str]) -> None:
    with db.session() as session:
        for name in names:
            accounts.add_user(session, name=name, secret=PASSWORD, user_role=Role.VIEWER)
        session.commit()


def test_six_colleagues_behind_one_address_all_sign_in(accounts_app: Flask, db: Database) -> None:
    colleagues = [f"colleague{i}" for i in range(6)]
    _add_users(db, colleagues)
    for name in colleagues:
        answer = _post_login(accounts_app.test_client(), name, PASSWORD, address="10.0.0.7")
        assert answer.status_code == 302, (name, answer.status_code)


def test_wrong_passwords_from_one_address_do_not_lock_the_account_elsewhere(
        accounts_app: Flask) -> None:
    attacker = accounts_app.test_client()
    statuses = [_post_login(attacker, "viewer", "guess", address="203.0.113.9").status_code
                for _ in range(5)]
    assert statuses == [401] * 5
    blocked = _post_login(attacker, "viewer", PASSWORD, address="203.0.113.9")
    assert blocked.status_code == 429
    page = blocked.get_data(as_text=True)
    assert "wait a minute" in page and '<form class="login"' in page and 'name="password"' in page
    owner = _post_login(accounts_app.test_client(), "viewer", PASSWORD, address="10.0.0.7")
    assert owner.status_code == 302


def test_one_address_guessing_many_accounts_is_stopped(accounts_app: Flask) -> None:
    client = accounts_app.test_client()
    statuses = [_post_login(client, f"nobody{i}", "guess", address="203.0.113.9").status_code
                for i in range(20)]
    assert statuses == [401] * 20
    assert _post_login(client, "viewer", PASSWORD, address="203.0.113.9").status_code == 429
    assert _post_login(client, "viewer", PASSWORD, address="10.0.0.7").status_code == 302


def test_one_account_guessed_from_many_addresses_is_stopped(
        accounts_settings: Settings, people: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # The real bound is the same mechanism with a larger number, which would take a minute of
    # Argon2 work to reach here.
    monkeypatch.setattr(auth, "ACCOUNT_LIMIT", "8 per hour")
    application = create_app({"TESTING": True}, settings=accounts_settings)
    client = application.test_client()
    try:
        for attempt in range(8):
            address = f"198.51.100.{attempt // 4}"  # under the limits of one address
            assert _post_login(client, "admin", "guess", address=address).status_code == 401
        assert _post_login(client, "admin", PASSWORD, address="10.0.0.7").status_code == 429
        assert _post_login(client, "viewer", PASSWORD, address="10.0.0.7").status_code == 302
    finally:
        application.extensions["clipseek"].close()


@pytest.fixture
def proxied_app(accounts_settings: Settings, people: dict[str, str]) -> Iterator[Flask]:
    """The accounts mode behind one reverse proxy."""
    application = create_app({"TESTING": True}, settings=accounts_settings.with_changes(trusted_proxies=1))
    yield application
    application.extensions["clipseek"].close()


def test_x_forwarded_for_is_ignored_without_a_trusted_proxy(accounts_app: Flask) -> None:
    client = accounts_app.test_client()
    for i in range(5):
        answer = _post_login(client, "viewer", "guess", address="10.0.0.1",
                             headers={"X-Forwarded-For": f"192.0.2.{i}"})
        assert answer.status_code == 401
    other = _post_login(client, "viewer", PASSWORD, address="10.0.0.1",
                        headers={"X-Forwarded-For": "192.0.2.200"})
    assert other.status_code == 429


def test_x_forwarded_for_names_the_address_behind_a_trusted_proxy(proxied_app: Flask) -> None:
    client = proxied_app.test_client()
    for _ in range(5):
        answer = _post_login(client, "viewer", "guess", address="10.0.0.1",
                             headers={"X-Forwarded-For": "203.0.113.9"})
        assert answer.status_code == 401
    blocked = _post_login(client, "viewer", PASSWORD, address="10.0.0.1",
                          headers={"X-Forwarded-For": "203.0.113.9"})
    assert blocked.status_code == 429
    owner = _post_login(client, "viewer", PASSWORD, address="10.0.0.1",
                        headers={"X-Forwarded-For": "192.0.2.44"})
    assert owner.status_code == 302
    # Only the proxy's own entry counts: a client cannot choose its address by adding more.
    spoofed = _post_login(client, "viewer", PASSWORD, address="10.0.0.1",
                          headers={"X-Forwarded-For": "192.0.2.44, 203.0.113.9"})
    assert spoofed.status_code == 429


def test_the_trusted_proxies_setting_is_read_from_the_environment() -> None:
    assert Settings.from_env({"CLIPSEEK_HOME": "/x"}).trusted_proxies == 0
    assert Settings.from_env({"CLIPSEEK_HOME": "/x", "CLIPSEEK_TRUSTED_PROXIES": "2"}).trusted_proxies == 2


def _upload(client: FlaskClient, token: str) -> dict[str, str]:
    picture = encoded(PILImage.fromarray(photo_array(4, (120, 160))), "JPEG")
    bearer = {"Authorization": f"Bearer {token}"}
    answer = client.post("/api/images", headers=bearer, data={"files": [(io.BytesIO(picture), "p.jpg")]})
    assert answer.status_code == 202, answer.get_json()
    image_id = answer.get_json()["uploads"][0]["image_id"]
    described: dict[str, str] = client.get(f"/api/images/{image_id}", headers=bearer).get_json()
    return described


def test_a_token_fetches_the_pictures_the_api_returns(accounts_app: Flask,
                                                      people: dict[str, str]) -> None:
    client = accounts_app.test_client()
    image = _upload(client, people["token-contributor"])
    for url in (image["thumbnail_url"], image["image_url"]):
        answer = client.get(url, headers={"Authorization": f"Bearer {people['token-viewer']}"})
        assert answer.status_code == 200 and (answer.mimetype or "").startswith("image/"), url
        answer.close()
        for wrong in ("csk_wrong", people["revoked"], ""):
            refused = client.get(url, headers={"Authorization": f"Bearer {wrong}"})
            assert refused.status_code == 401 and "token" in refused.get_data(as_text=True), url
        assert client.get(url).headers["Location"].startswith("/login")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Negotiate YII=", "Digest username=\"x\"",
                                    "basic", "Token abc"])
def test_authorization_schemes_clipseek_does_not_use_are_ignored(accounts_app: Flask, header: str) -> None:
    client = accounts_app.test_client()
    proxy = {"Authorization": header}
    assert client.get("/login", headers=proxy).status_code == 200
    token = _csrf(client)
    signed = client.post("/login", headers=proxy,
                         data={"csrf_token": token, "name": "viewer", "password": PASSWORD})
    assert signed.status_code == 302
    assert client.get("/", headers=proxy).status_code == 200
    assert client.get("/api/status", headers=proxy).status_code == 200
    anonymous = accounts_app.test_client().get("/api/status", headers=proxy)
    assert anonymous.status_code == 401 and "Sign in first" in anonymous.get_json()["error"]


def test_a_token_on_a_page_is_refused_with_a_sentence(accounts_app: Flask,
                                                      people: dict[str, str]) -> None:
    answer = accounts_app.test_client().get("/", headers={"Authorization": f"Bearer {people['token-admin']}"})
    assert answer.status_code == 401 and "token" in answer.get_data(as_text=True)


def test_a_token_sent_with_a_session_cookie_acts_with_the_token_s_rights_only(
        accounts_app: Flask, people: dict[str, str]) -> None:
    admin = sign_in(accounts_app, "admin")
    viewer_token = {"Authorization": f"Bearer {people['token-viewer']}"}
    # No CSRF token: the bearer token stands for the request, and it is a viewer's.
    answer = admin.delete("/api/collections/holiday", headers=viewer_token)
    assert answer.status_code == 403 and "viewer" in answer.get_json()["error"]
    assert admin.get("/api/status", headers=viewer_token).status_code == 200
