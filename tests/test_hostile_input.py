"""The hostile-input drill: every route, every parameter it reads, every nasty value, and no 500."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from clipseek.accounts import add_user
from clipseek.clip.encoder import ClipEncoder
from clipseek.errors import BadQuery
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate
from clipseek.search.query import PARAMETERS, parse_request
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image, Role
from tests.test_signin_security import HOSTILE_NEXT
from webapp import create_app

# Each is a value someone typed, pasted or forged: a NUL byte (PostgreSQL text cannot hold it),
# line breaks that would split a header, invisible and direction-changing characters, bytes
# that are not UTF-8, numbers no column can hold, markup, paths and SQL.
HOSTILE = ["a\x00b", "\x00", "/\r\nSet-Cookie: x=1", "\u202eevil", "\u200b\ufeff", "%ff%fe",
           "\udcff", "9" * 400, "-1", "1e309", "NaN", "<script>alert(1)</script>",
           "../../../etc/passwd", "' OR 1=1 --", "x" * 5000]
GET_ROUTES = {
    "/": PARAMETERS, "/api/search": PARAMETERS,
    "/api/images": ("ids",), "/uploads": ("ids",), "/collections/browse": ("name", "page"),
    "/collections": ("page",), "/status": ("page",), "/api/status": ("page",),
    "/image/{id}": ("page",), "/image/{id}/similar": ("page", "per_page"),
    "/api/images/{id}/similar": ("page", "per_page"), "/login": ("next",),
}


@pytest.fixture
def first_id(db: Database, encoder: ClipEncoder, settings: Settings,
             sample_photos: list[Candidate]) -> int:
    """Four sample photos indexed; the first one's id."""
    ingest_inline(db, encoder, sample_photos[:4], settings=settings)
    with db.session() as session:
        return int(session.scalar(select(func.min(Image.id))) or 0)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A client that sees a server error as the 500 a browser would, not as an exception."""
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app.test_client()


def _quoted(value: str) -> str:
    # A lone surrogate becomes bytes that are no valid UTF-8 text, as a forger would send them.
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def _query(name: str, value: str) -> str:
    return f"{name}={_quoted(value)}"


def test_no_hostile_value_in_any_parameter_of_a_get_route_is_a_server_error(
    client: FlaskClient, first_id: int,
) -> None:
    failures = []
    for route, names in GET_ROUTES.items():
        url = route.format(id=first_id)
        for name in names:
            for value in HOSTILE:
                answer = client.get(f"{url}?{_query(name, value)}")
                if answer.status_code >= 500:
                    failures.append(f"{url} {name}={value[:20]!r}: {answer.status_code}")
    assert failures == [], "\n".join(failures)


@pytest.mark.parametrize("url", ["/?q=a%00b", "/api/search?q=a%00b", "/api/search?collection=%00",
                                 "/?folder=x%00"])
def test_a_nul_byte_in_a_search_is_a_400_that_says_why(client: FlaskClient, first_id: int,
                                                       url: str) -> None:
    answer = client.get(url)
    assert answer.status_code == 400
    assert "cannot contain" in answer.get_data(as_text=True)


def _csrf(client: FlaskClient, page_url: str = "/upload") -> str:
    page = client.get(page_url).get_data(as_text=True)
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found
    return found.group(1)


def test_no_hostile_value_posted_to_a_form_or_the_json_api_is_a_server_error(
    client: FlaskClient, first_id: int,
) -> None:
    token = _csrf(client)
    failures = []
    for value in HOSTILE:
        def form(**fields: str) -> dict[str, object]:
            # Written by hand: the test client cannot encode text that is no valid UTF-8.
            body = "&".join(_query(k, v) for k, v in {"csrf_token": token, **fields}.items())
            return {"data": body, "content_type": "application/x-www-form-urlencoded"}

        json_headers = {"X-CSRF-Token": token}
        answers = {
            "caption form": client.post(f"/image/{first_id}/captions", **form(text=value)),
            "caption api": client.post(f"/api/images/{first_id}/captions", json={"text": value},
                                       headers=json_headers),
            "rename form": client.post("/collections/rename",
                                       **form(name=value, new_name=value)),
            "rename api": client.post(f"/api/collections/{_quoted(value)}/rename",
                                      json={"name": value}, headers=json_headers),
            "delete selection": client.post("/api/images/delete", json={"collection": value},
                                            headers=json_headers),
            "retry": client.post("/api/images/retry", json={"ids": value}, headers=json_headers),
            "upload collection": client.post("/upload", **form(collection=value)),
            "search by picture": client.post("/search/by-image", **form(per_page=value)),
        }
        failures += [f"{what} {value[:20]!r}: {a.status_code}" for what, a in answers.items()
                     if a.status_code >= 500]
    assert failures == [], "\n".join(failures)


def test_a_python_search_refuses_a_nul_byte_in_one_sentence() -> None:
    with pytest.raises(BadQuery, match="cannot contain a NUL character"):
        parse_request({"q": ["a\x00b"]})


# What a proxy, a script or a forger may put in the headers the accounts mode reads.
HOSTILE_AUTHORIZATION = ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "bearer csk_", "Bearer a b c",
                         "Bearer " + "x" * 10_000, "Negotiate", " ", "Bearer caf\u00e9", "Digest x=\"y\""]
HOSTILE_FORWARDED_FOR = ["", ",", "not-an-address", "1.2.3.4, , ,", "x" * 5000, "[::1]",
                         "999.999.999.999", "2001:db8::1, 10.0.0.1"]
ADMIN_PASSWORD = "a long enough admin password"


def test_no_hostile_sign_in_value_or_header_is_a_server_error(settings: Settings, redis_url: str,
                                                              db: Database) -> None:
    with db.session() as session:
        add_user(session, name="admin", secret=ADMIN_PASSWORD, user_role=Role.ADMIN)
        session.commit()
    app = create_app({"TESTING": True, "PROPAGATE_EXCEPTIONS": False}, settings=settings.with_changes(
        redis_url=redis_url, require_accounts=True, trusted_proxies=1))
    limiter = app.extensions["clipseek_limiter"]
    failures: list[str] = []

    def check(what: str, answer: TestResponse) -> None:
        answer.close()
        if answer.status_code >= 500:
            failures.append(f"{what}: {answer.status_code}")

    try:
        # `next` as a link carries it (percent-encoded), and typed values of every kind.
        for raw in [*HOSTILE_NEXT, *(_quoted(value) for value in HOSTILE)]:
            limiter.reset()  # no sign-in limit may hide what `next` does
            client = app.test_client()
            check(f"GET next={raw[:30]}", client.get(f"/login?next={raw}"))
            token = _csrf(client, "/login")
            body = f"csrf_token={token}&name=admin&password={quote(ADMIN_PASSWORD)}"
            check(f"POST next={raw[:30]}", client.post(
                f"/login?next={raw}", data=body, content_type="application/x-www-form-urlencoded"))
        for header in HOSTILE_AUTHORIZATION:
            for url in ["/login", "/", "/api/status", "/file/1", "/thumb/1.jpg"]:
                check(f"Authorization {header[:20]!r} {url}",
                      app.test_client().get(url, headers={"Authorization": header}))
        for forwarded in HOSTILE_FORWARDED_FOR:
            client = app.test_client()
            proxied = {"X-Forwarded-For": forwarded}
            check(f"X-Forwarded-For {forwarded[:20]!r} GET /login", client.get("/login", headers=proxied))
            wrong = {"csrf_token": _csrf(client, "/login"), "name": "admin", "password": "wrong"}
            check(f"X-Forwarded-For {forwarded[:20]!r} POST /login",
                  client.post("/login", headers=proxied, data=wrong))
            check(f"X-Forwarded-For {forwarded[:20]!r} /api/status",
                  client.get("/api/status", headers=proxied))
    finally:
        app.extensions["clipseek"].close()
    assert failures == [], "\n".join(failures)
