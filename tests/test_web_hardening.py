"""Requests meant to break the web app: out-of-range numbers, a database that goes away,
foreign Host headers; each gets a status and one readable sentence, never a 500."""

from __future__ import annotations

import io
import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image as PILImage
from sqlalchemy import insert
from werkzeug.test import TestResponse

from clipseek.accounts import add_user
from clipseek.settings import RANDOM_MODEL, Settings
from clipseek.store.db import Database
from clipseek.store.embedded_db import EmbeddedPostgres
from clipseek.store.tables import Image, Role
from tests.images import photo_array
from webapp import create_app

API = {"X-Requested-With": "test"}
HUGE = str(2**64)
INT64_MAX = str(2**63 - 1)
_servers = itertools.count()


@pytest.fixture
def image_id(db: Database) -> int:
    """A registered image (not indexed): enough for routes that check the id first."""
    with db.session() as session:
        new_id: int | None = session.scalar(insert(Image).values(
            sha256="0" * 64, path="/nowhere/x.jpg", original_name="x.jpg", source="upload",
            file_size=1, status="registered").returning(Image.id))
        session.commit()
    assert new_id is not None
    return new_id


def _sentence(response: TestResponse) -> str:
    """The error message of a JSON or page response."""
    if response.is_json:
        data = response.get_json()
        assert data["status"] == response.status_code
        message: str = data["error"]
    else:
        match = re.search(r'<p class="message error" role="alert">(.*?)</p>', response.get_data(as_text=True))
        assert match, response.get_data(as_text=True)[:500]
        message = match.group(1)
    assert message[:1].isupper() and message.endswith("."), message
    return message


def _refused(client: FlaskClient, url: str, status: int, **kwargs: object) -> str:
    response = client.open(url, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, (url, response.status_code, response.get_data(as_text=True)[:300])
    return _sentence(response)


@pytest.mark.parametrize("number", [HUGE, INT64_MAX, "0", "9" * 5000])
@pytest.mark.parametrize("url", ["/api/images/{}", "/image/{}", "/image/{}/similar",
                                 "/api/images/{}/similar", "/thumb/{}.jpg", "/file/{}"])
def test_an_image_id_out_of_range_is_not_found(client: FlaskClient, url: str, number: str) -> None:
    message = _refused(client, url.format(number), 404)
    assert "image" in message and len(message) < 120


@pytest.mark.parametrize("value", [HUGE, "0", "-1", "abc", "100001"])
@pytest.mark.parametrize("url", ["/?q=cat&page={}", "/api/search?q=cat&page={}"])
def test_a_page_number_out_of_range_is_a_bad_request(client: FlaskClient, url: str, value: str) -> None:
    assert "page" in _refused(client, url.format(value), 400)


@pytest.mark.parametrize("value", [HUGE, "0", "-3", "101", "abc"])
@pytest.mark.parametrize("url", ["/?q=cat&per_page={}", "/api/search?q=cat&per_page={}"])
def test_a_page_size_out_of_range_is_a_bad_request(client: FlaskClient, url: str, value: str) -> None:
    assert "per_page" in _refused(client, url.format(value), 400)


@pytest.mark.parametrize("query", [f"page={HUGE}", "per_page=abc", "per_page=0", "page=-1"])
@pytest.mark.parametrize("url", ["/image/{}/similar", "/api/images/{}/similar"])
def test_similar_images_check_their_paging(client: FlaskClient, image_id: int, url: str, query: str) -> None:
    assert "page" in _refused(client, f"{url.format(image_id)}?{query}", 400)


@pytest.mark.parametrize("ids", [HUGE, f"1,{HUGE}", "0", "-5", "2,abc"])
@pytest.mark.parametrize("url", ["/api/images?ids={}", "/uploads?ids={}"])
def test_image_ids_out_of_range_are_a_bad_request(client: FlaskClient, url: str, ids: str) -> None:
    assert "ids" in _refused(client, url.format(ids), 400)


@pytest.mark.parametrize("per_page", ["abc", HUGE, "0", "101"])
def test_search_by_image_checks_its_page_size(client: FlaskClient, per_page: str) -> None:
    page = client.get("/upload").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    picture = io.BytesIO()
    PILImage.fromarray(photo_array(1, (64, 64))).save(picture, format="PNG")
    picture.seek(0)
    data = {"csrf_token": token, "per_page": per_page, "image": (picture, "x.png")}
    message = _refused(client, "/search/by-image", 400, method="POST", data=data,
                       content_type="multipart/form-data")
    assert "per_page" in message


def test_valid_numbers_still_work(client: FlaskClient, image_id: int) -> None:
    assert client.get(f"/api/images/{image_id}").get_json()["image_id"] == image_id
    found = client.get(f"/api/images?ids={image_id},{INT64_MAX}").get_json()["images"]
    assert [i["image_id"] for i in found] == [image_id]
    assert client.get("/api/search?q=cat&page=100000&per_page=100").status_code == 200
    assert client.get(f"/image/{image_id}/similar?page=2&per_page=1").status_code == 200


@pytest.fixture
def doomed_server(server_folder: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server of this test's own, which the test stops."""
    server = EmbeddedPostgres(server_folder / f"doomed-{os.getpid()}-{next(_servers)}")
    server.ensure_running()
    yield server
    server.stop()


def test_a_database_that_goes_away_gives_503_with_a_sentence_then_recovers(
    doomed_server: EmbeddedPostgres, tmp_path: Path, redis_url: str
) -> None:
    settings = Settings.from_env({"CLIPSEEK_HOME": str(tmp_path / "home"), "REDIS_URL": redis_url,
                                  "DATABASE_URL": doomed_server.url(), "CLIPSEEK_MODEL": RANDOM_MODEL,
                                  "CLIPSEEK_OFFLINE": "1"})
    application = create_app({"TESTING": True}, settings=settings)
    client = application.test_client()
    try:
        assert client.get("/api/images/1").status_code == 404
        assert client.get("/").status_code == 200
        doomed_server.stop()
        for url in ["/api/images/1", "/image/1", "/", "/api/images?ids=1", "/uploads?ids=1"]:
            assert "database is not reachable" in _refused(client, url, 503)
        upload = {"files": [(io.BytesIO(b"x"), "x.jpg")]}
        refused = _refused(client, "/api/images", 503, method="POST", data=upload, headers=API,
                           content_type="multipart/form-data")
        assert "database is not reachable" in refused and "DATABASE_URL names is running" in refused
        doomed_server.ensure_running()
        assert client.get("/api/images/1").status_code == 404
    finally:
        application.extensions["clipseek"].close()


def _jpeg() -> io.BytesIO:
    out = io.BytesIO()
    PILImage.fromarray(photo_array(2, (80, 120))).save(out, format="JPEG")
    out.seek(0)
    return out


def test_every_response_tells_browsers_not_to_sniff_its_type(client: FlaskClient) -> None:
    upload = client.post("/api/images", data={"files": [(_jpeg(), "x.jpg")]}, headers=API,
                         content_type="multipart/form-data")
    stored = upload.get_json()["uploads"][0]["image_id"]
    responses = [upload, client.get(f"/file/{stored}"), client.get(f"/thumb/{stored}.jpg"),
                 client.get("/"), client.get(f"/api/images/{stored}"), client.get("/image/999"),
                 client.get("/api/images/999"), client.get("/static/style.css"), client.get("/nowhere")]
    for response in responses:
        assert response.headers.get("X-Content-Type-Options") == "nosniff", response.request.path
        response.close()


def _host_app(settings: Settings, redis_url: str, **changes: object) -> Flask:
    return create_app({"TESTING": True}, settings=settings.with_changes(redis_url=redis_url, **changes))


@pytest.mark.parametrize("bound", ["127.0.0.1", "localhost", "::1"])
def test_a_loopback_server_answers_only_to_loopback_names(settings: Settings, redis_url: str,
                                                          bound: str) -> None:
    application = _host_app(settings, redis_url, web_host=bound)
    client = application.test_client()
    try:
        for host in ["localhost", "localhost:8000", "LOCALHOST:80", "127.0.0.1", "127.0.0.1:8765",
                     "[::1]:8000", "[::1]"]:
            assert client.get("/upload", base_url=f"http://{host}").status_code == 200, host
        for host in ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil.example",
                     "192.168.1.20:8000"]:
            message = _refused(client, "/upload", 400, base_url=f"http://{host}")
            assert "localhost" in message and "CLIPSEEK_ALLOWED_HOSTS" in message
            assert _refused(client, "/api/images/1", 400, base_url=f"http://{host}")
    finally:
        application.extensions["clipseek"].close()


def test_a_server_bound_elsewhere_answers_to_any_name_unless_told(settings: Settings,
                                                                   redis_url: str, db: Database) -> None:
    # Served beyond this machine, ClipSeek needs accounts: /login is the page anyone may ask for.
    with db.session() as session:
        add_user(session, name="admin", secret="long enough now", user_role=Role.ADMIN)
        session.commit()
    open_app = _host_app(settings, redis_url, web_host="0.0.0.0")
    assert open_app.test_client().get("/login", base_url="http://photos.example:8000").status_code == 200
    open_app.extensions["clipseek"].close()
    listed = _host_app(settings, redis_url, web_host="0.0.0.0", allowed_hosts=("photos.example",))
    client = listed.test_client()
    try:
        assert client.get("/login", base_url="http://Photos.Example:8000").status_code == 200
        assert client.get("/login", base_url="http://127.0.0.1:8000").status_code == 200
        assert "CLIPSEEK_ALLOWED_HOSTS" in _refused(client, "/login", 400, base_url="http://other.example")
    finally:
        listed.extensions["clipseek"].close()
