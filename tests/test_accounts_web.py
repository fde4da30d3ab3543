"""The accounts mode on the real app: every route against every kind of caller, and the bad input."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image as PILImage
from sqlalchemy import func, select, text

from clipseek import accounts
from clipseek.errors import ClipSeekError
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Role, User
from tests.images import encoded, photo_array
from webapp import create_app
from webapp.policies import POLICIES, Policy

PASSWORD = "correct horse battery"
TABLES = ("users", "api_tokens", "images", "captions", "audit_events", "embeddings")
# Ids that exist nowhere: a request that gets past its policy then ends in 400 or 404, so
# walking every route changes nothing.
# Where an API token counts: the API and the picture URLs it returns.
TOKEN_PATHS = ("/api/", "/file/", "/thumb/")
ARGS = {"image_id": 999999, "caption_id": 999999, "token_id": 999999, "user_id": 999999,
        "album_id": 999999, "person_id": 999999, "face_id": 999999, "name": "nope", "filename": "style.css"}


@pytest.fixture
def accounts_settings(settings: Settings, redis_url: str) -> Settings:
    """Settings of a deployment that requires accounts."""
    return settings.with_changes(require_accounts=True, redis_url=redis_url)


@dataclass
class Caller:
    """Someone calling the app: a role (None: anonymous) and how they prove it."""

    label: str
    role: Role | None
    token: str | None = None
    revoked: bool = False


@pytest.fixture
def people(db: Database) -> dict[str, str]:
    """One user of each role, and an API token of each plus a revoked one (name -> secret)."""
    secrets: dict[str, str] = {}
    with db.session() as session:
        for user_role in Role:
            user = accounts.add_user(session, name=user_role.value, secret=PASSWORD, user_role=user_role)
            secrets[f"token-{user_role.value}"] = accounts.create_token(session, user, "t")[1]
        revoked, secrets["revoked"] = accounts.create_token(session, user, "old")
        accounts.revoke_token(session, revoked.id)
        session.commit()
    return secrets


@pytest.fixture
def accounts_app(accounts_settings: Settings, people: dict[str, str]) -> Iterator[Flask]:
    """The web app in the accounts mode, with the users of `people`."""
    application = create_app({"TESTING": True}, settings=accounts_settings)
    yield application
    application.extensions["clipseek"].close()


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found, page
    return found.group(1)


def sign_in(app: Flask, name: str, password: str = PASSWORD) -> FlaskClient:
    """A client signed in as `name`."""
    client = app.test_client()
    token = _csrf(client.get("/login").get_data(as_text=True))
    answer = client.post("/login", data={"csrf_token": token, "name": name, "password": password})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return client


def _counts(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
        counts["revoked"] = conn.execute(text(
            "SELECT count(*) FROM api_tokens WHERE revoked_at IS NOT NULL")).scalar_one()
    return counts


def _allowed(policy: Policy, role: Role | None) -> bool:
    needs = {Policy.PUBLIC: None, Policy.SIGNED_IN: Role.VIEWER, Policy.VIEW: Role.VIEWER,
             Policy.CONTRIBUTE: Role.CONTRIBUTOR, Policy.ADMIN: Role.ADMIN,
             # The walk uses an image nobody uploaded: only an admin may delete it.
             Policy.DELETE_OWN: Role.ADMIN,
             # Captioning a picture or caption that does not exist gets past the policy to a 404,
             # and so does changing an album that does not exist.
             Policy.CAPTION_OWN: Role.CONTRIBUTOR, Policy.ALBUM_OWN: Role.CONTRIBUTOR}[policy]
    return needs is None or (role is not None and role.rank >= needs.rank)


def test_every_route_declares_a_policy(app: Flask) -> None:
    missing = sorted({rule.endpoint for rule in app.url_map.iter_rules()} - set(POLICIES))
    assert missing == []
    # Reading needs no more than a viewer; of the routes that write, only these may be called
    # by a viewer or by anyone (a search by example picture stores nothing but its embedding;
    # a search posted with a vector, like any search, stores nothing but its texts' vectors;
    # a zip of a selection only reads, posted for the selection it carries).
    writes = {rule.endpoint for rule in app.url_map.iter_rules()
              if (rule.methods or set()) - {"GET", "HEAD", "OPTIONS"}}
    open_writes = sorted(e for e in writes if POLICIES[e] in (Policy.PUBLIC, Policy.VIEW))
    assert open_writes == ["api.search", "auth.login", "auth.logout", "pages.by_image",
                           "selection.zip_form", "selection_api.zip_api"]


def test_role_matrix_on_every_route_changes_nothing(accounts_app: Flask, people: dict[str, str],
                                                    db: Database) -> None:
    callers = [Caller("anonymous", None), *(Caller(r.value, r) for r in Role),
               *(Caller(f"token-{r.value}", r, token=people[f"token-{r.value}"]) for r in Role),
               Caller("revoked", Role.ADMIN, token=people["revoked"], revoked=True)]
    clients = {c.label: (sign_in(accounts_app, c.label) if c.role and not c.token
                         else accounts_app.test_client()) for c in callers}
    before = _counts(db)
    checked = 0
    for rule in accounts_app.url_map.iter_rules():
        policy = POLICIES[rule.endpoint]
        built = rule.build({a: ARGS[a] for a in rule.arguments}, append_unknown=False)
        assert built is not None
        url = built[1]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            for caller in callers:
                headers = {"Authorization": f"Bearer {caller.token}"} if caller.token else {}
                answer = clients[caller.label].open(url, method=method, headers=headers)
                status, where = answer.status_code, f"{caller.label} {method} {url}: {answer.status_code}"
                body = answer.get_data(as_text=True)
                answer.close()  # static files come back as open files
                checked += 1
                if caller.revoked or (caller.token and not url.startswith(TOKEN_PATHS)):
                    assert status == 401 and "token" in body, where
                elif _allowed(policy, caller.role):
                    assert status not in (401, 403, 500), where
                    assert "/login" not in answer.headers.get("Location", ""), where
                    if method != "GET" and not caller.token:
                        assert status == 400 and "form expired" in body, where  # no CSRF token
                elif caller.role is None:
                    assert status == 401 or answer.headers["Location"].startswith("/login"), where
                else:
                    assert status == 403 and "ask an admin" in body, where
    assert checked > 300
    assert _counts(db) == before


def _jpeg(seed: int) -> bytes:
    return encoded(PILImage.fromarray(photo_array(seed, (120, 160))), "JPEG")


def _upload(client: FlaskClient, seed: int, token: str) -> int:
    answer = client.post("/api/images", headers={"Authorization": f"Bearer {token}"},
                         data={"files": [(io.BytesIO(_jpeg(seed)), f"p{seed}.jpg")]})
    assert answer.status_code == 202, answer.get_json()
    image_id: int = answer.get_json()["uploads"][0]["image_id"]
    return image_id


def test_contributors_delete_only_their_own_uploads_and_viewers_nothing(
        accounts_app: Flask, people: dict[str, str], db: Database) -> None:
    client = accounts_app.test_client()
    mine = _upload(client, 1, people["token-contributor"])
    theirs = _upload(client, 2, people["token-admin"])
    viewer = {"Authorization": f"Bearer {people['token-viewer']}"}
    refused = client.post("/api/images", headers=viewer,
                          data={"files": [(io.BytesIO(_jpeg(3)), "v.jpg")]})
    assert refused.status_code == 403 and "contributor" in refused.get_json()["error"]
    assert client.delete(f"/api/images/{mine}", headers=viewer).status_code == 403
    contributor = {"Authorization": f"Bearer {people['token-contributor']}"}
    other = client.delete(f"/api/images/{theirs}", headers=contributor)
    assert other.status_code == 403 and "only pictures you uploaded" in other.get_json()["error"]
    assert client.delete(f"/api/images/{mine}", headers=contributor).status_code == 200
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT u.name, a.action, a.image_id FROM audit_events a "
                                 "JOIN users u ON u.id = a.user_id ORDER BY a.id")).all()
        added_by = conn.execute(text("SELECT u.name FROM images i JOIN users u ON u.id = i.added_by "
                                     "WHERE i.id = :i"), {"i": theirs}).scalar_one()
    assert [tuple(r) for r in rows] == [("contributor", "upload", mine), ("admin", "upload", theirs),
                                        ("contributor", "trash", mine)]
    assert added_by == "admin"
    admin = sign_in(accounts_app, "admin")
    page = admin.get("/admin/").get_data(as_text=True)
    assert "p1.jpg" in page and "trash" in page
    assert "<dt>Added by</dt><dd>admin</dd>" in admin.get(f"/image/{theirs}").get_data(as_text=True)
    assert "Added by" not in sign_in(accounts_app, "viewer").get(f"/image/{theirs}").get_data(as_text=True)


def test_wrong_user_and_wrong_password_get_the_same_answer(accounts_app: Flask) -> None:
    client = accounts_app.test_client()
    token = _csrf(client.get("/login").get_data(as_text=True))
    answers = [client.post("/login", data={"csrf_token": token, "name": name, "password": secret})
               for name, secret in (("viewer", "wrong password"), ("nobody", PASSWORD))]
    assert [a.status_code for a in answers] == [401, 401]
    bodies = [a.get_data(as_text=True) for a in answers]
    assert accounts_app.extensions["clipseek_limiter"] and "name or the password is wrong" in bodies[0]
    # Only the name typed into the form may differ ("viewer" is also in the page's viewer.css).
    assert bodies[0].replace('value="viewer"', 'value="nobody"') == bodies[1]


def test_sign_in_attempts_are_limited_per_account(accounts_app: Flask) -> None:
    client = accounts_app.test_client()
    token = _csrf(client.get("/login").get_data(as_text=True))
    statuses = [client.post("/login", data={"csrf_token": token, "name": "admin",
                                            "password": "guess"}).status_code for _ in range(5)]
    assert statuses == [401] * 5
    blocked = client.post("/login", data={"csrf_token": token, "name": "admin", "password": PASSWORD})
    assert blocked.status_code == 429 and "wait a minute" in blocked.get_data(as_text=True)


def test_a_cookie_replayed_after_logout_or_a_password_change_is_refused(
        accounts_app: Flask, db: Database) -> None:
    client = sign_in(accounts_app, "viewer")
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    assert client.get("/api/status").status_code == 200
    token = _csrf(client.get("/").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    replay = accounts_app.test_client()
    replay.set_cookie("session", cookie.value)
    assert replay.get("/api/status").status_code == 401
    assert replay.get("/").headers["Location"].startswith("/login")
    other = sign_in(accounts_app, "contributor")
    assert other.get("/api/status").status_code == 200
    with db.session() as session:
        user = session.scalar(select(User).where(User.name == "contributor"))
        assert user is not None
        accounts.set_password(session, user, "a new password")
        session.commit()
    assert other.get("/api/status").status_code == 401


def test_a_forged_csrf_token_changes_nothing(accounts_app: Flask, db: Database) -> None:
    client = sign_in(accounts_app, "admin")
    before = _counts(db)
    forged = client.post("/admin/users", data={"csrf_token": "forged", "name": "eve",
                                                "password": PASSWORD, "role": "admin"})
    assert forged.status_code == 400 and "form expired" in forged.get_data(as_text=True)
    assert _counts(db) == before


def test_the_account_page_creates_and_revokes_tokens(accounts_app: Flask) -> None:
    client = sign_in(accounts_app, "viewer")
    token = _csrf(client.get("/account").get_data(as_text=True))
    made = client.post("/account/tokens", data={"csrf_token": token, "name": "laptop"})
    secret = re.search(r'<code class="token">([^<]+)</code>', made.get_data(as_text=True))
    assert made.status_code == 201 and secret
    bearer = {"Authorization": f"Bearer {secret.group(1)}"}
    assert accounts_app.test_client().get("/api/status", headers=bearer).status_code == 200
    token_id = re.search(r'/account/tokens/(\d+)/revoke', made.get_data(as_text=True))
    assert token_id
    client.post(f"/account/tokens/{token_id.group(1)}/revoke", data={"csrf_token": token})
    assert accounts_app.test_client().get("/api/status", headers=bearer).status_code == 401
    hidden = client.post("/account/tokens", data={"csrf_token": token, "name": "\u200b\ufeff"})
    assert hidden.status_code == 400 and "invisible" in hidden.get_data(as_text=True)


def test_the_admin_page_refuses_a_user_name_that_reorders_text(accounts_app: Flask, db: Database) -> None:
    client = sign_in(accounts_app, "admin")
    token = _csrf(client.get("/admin/").get_data(as_text=True))
    before = _counts(db)
    refused = client.post("/admin/users", data={"csrf_token": token, "name": "eve\u202e",
                                                "password": PASSWORD, "role": "viewer"})
    assert refused.status_code == 400 and "reorder text" in refused.get_data(as_text=True)
    assert _counts(db) == before


def test_no_account_means_no_start_with_a_sentence(accounts_settings: Settings) -> None:
    with pytest.raises(ClipSeekError, match=r"clipseek user add NAME --role admin"):
        create_app({"TESTING": True}, settings=accounts_settings)


def test_the_configured_admin_password_creates_the_first_admin(accounts_settings: Settings,
                                                               db: Database) -> None:
    app = create_app({"TESTING": True}, settings=accounts_settings.with_changes(
        admin_name="boss", admin_password=PASSWORD))
    try:
        assert sign_in(app, "boss").get("/admin/").status_code == 200
    finally:
        app.extensions["clipseek"].close()
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(User.__table__)).scalar_one() == 1


def test_the_local_mode_needs_no_sign_in(client: FlaskClient) -> None:
    assert client.get("/").status_code == 200
    assert client.get("/api/status").status_code == 200
    assert client.get("/login").headers["Location"] == "/"
    assert "Sign out" not in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("path", ["/", "/api/status", "/static/style.css", "/image/999999", "/login"])
def test_every_answer_carries_the_security_headers(client: FlaskClient, path: str) -> None:
    answer = client.get(path)
    answer.close()
    policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "script-src 'self'" in policy
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "same-origin"


def test_templates_have_no_inline_scripts_or_styles() -> None:
    from pathlib import Path

    templates = Path(__file__).resolve().parent.parent / "webapp" / "templates"
    for page in templates.glob("*.html"):
        source = page.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", source), page.name


def test_the_admin_page_refuses_a_blank_or_common_password(accounts_app: Flask, db: Database) -> None:
    client = sign_in(accounts_app, "admin")
    token = _csrf(client.get("/admin/").get_data(as_text=True))
    before = _counts(db)
    for secret, sentence in ((" " * 8, "not only spaces"), (" " * 16, "not only spaces"),
                             ("short", "at least 12 characters"), ("password1234", "common")):
        refused = client.post("/admin/users", data={"csrf_token": token, "name": "eve",
                                                    "password": secret, "role": "viewer"})
        assert refused.status_code == 400 and sentence in refused.get_data(as_text=True), secret
    assert _counts(db) == before
    added = client.post("/admin/users", data={"csrf_token": token, "name": "eve",
                                              "password": PASSWORD, "role": "viewer"})
    assert added.status_code == 302
    assert 'minlength="12"' in client.get("/admin/").get_data(as_text=True)


def _change_password(client: FlaskClient, current: str, new: str,
                     repeated: str | None = None) -> tuple[int, str]:
    token = _csrf(client.get("/account").get_data(as_text=True))
    answer = client.post("/account/password", data={
        "csrf_token": token, "current": current, "new": new,
        "repeated": new if repeated is None else repeated})
    return answer.status_code, answer.get_data(as_text=True)


def test_a_wrong_current_password_or_a_weak_new_one_changes_nothing(accounts_app: Flask) -> None:
    client = sign_in(accounts_app, "viewer")
    for current, new, repeated, sentence in (
            ("wrong password", "a brand new secret", None, "current password is wrong"),
            (PASSWORD, " " * 12, None, "not only spaces"),
            (PASSWORD, "short", None, "at least 12 characters"),
            (PASSWORD, "iloveyou1234", None, "common"),
            (PASSWORD, "a brand new secret", "a brand new secreT", "differ")):
        status, page = _change_password(client, current, new, repeated)
        # The account page stays, with its sentence, so the form can be filled in again.
        assert status == 400 and sentence in page and "API tokens" in page, (new, page)
    assert client.get("/api/status").status_code == 200
    sign_in(accounts_app, "viewer")  # the old password still works


def test_changing_ones_password_signs_out_the_other_sessions_only(accounts_app: Flask) -> None:
    here, elsewhere = sign_in(accounts_app, "contributor"), sign_in(accounts_app, "contributor")
    other_user = sign_in(accounts_app, "viewer")
    status, _page = _change_password(here, PASSWORD, "a brand new secret")
    assert status == 302
    assert here.get("/api/status").status_code == 200
    assert elsewhere.get("/api/status").status_code == 401
    assert other_user.get("/api/status").status_code == 200
    assert "Changed your password" in here.get("/account").get_data(as_text=True)
    sign_in(accounts_app, "contributor", "a brand new secret")
    refused = accounts_app.test_client()
    token = _csrf(refused.get("/login").get_data(as_text=True))
    assert refused.post("/login", data={"csrf_token": token, "name": "contributor",
                                        "password": PASSWORD}).status_code == 401


def test_contributors_change_captions_only_on_their_pictures_or_their_own(
        accounts_app: Flask, people: dict[str, str], db: Database) -> None:
    with db.session() as session:
        bea = accounts.add_user(session, name="bea", secret=PASSWORD, user_role=Role.CONTRIBUTOR)
        bea_token = accounts.create_token(session, bea, "t")[1]
        session.commit()
    client = accounts_app.test_client()
    ann = {"Authorization": f"Bearer {people['token-contributor']}"}
    bea_auth = {"Authorization": f"Bearer {bea_token}"}
    admin = {"Authorization": f"Bearer {people['token-admin']}"}
    viewer = {"Authorization": f"Bearer {people['token-viewer']}"}
    anns, beas = _upload(client, 1, people["token-contributor"]), _upload(client, 2, bea_token)
    written = client.post(f"/api/images/{beas}/captions", headers=bea_auth, json={"text": "Bea's dog"})
    assert written.status_code == 201
    beas_caption = written.get_json()["id"]

    # Ann may neither add to Bea's picture nor change what Bea wrote on it.
    for answer in (client.post(f"/api/images/{beas}/captions", headers=ann, json={"text": "mine"}),
                   client.put(f"/api/captions/{beas_caption}", headers=ann, json={"text": "spam"}),
                   client.delete(f"/api/captions/{beas_caption}", headers=ann)):
        assert answer.status_code == 403, answer.get_json()
        assert "captions on pictures you uploaded" in answer.get_json()["error"]
    for answer in (client.put(f"/api/captions/{beas_caption}", headers=viewer, json={"text": "spam"}),
                   client.delete(f"/api/captions/{beas_caption}", headers=viewer),
                   client.post(f"/api/images/{anns}/captions", headers=viewer, json={"text": "x"})):
        assert answer.status_code == 403 and "contributor" in answer.get_json()["error"]

    # On her own picture Ann adds, edits and deletes, also the caption its file name gave it.
    mine = client.post(f"/api/images/{anns}/captions", headers=ann, json={"text": "Ann's cat"})
    assert mine.status_code == 201
    assert client.put(f"/api/captions/{mine.get_json()['id']}", headers=ann,
                      json={"text": "Ann's cat asleep"}).status_code == 200
    # The admin writes on Ann's picture; Ann, its uploader, may still change that caption.
    by_admin = client.post(f"/api/images/{anns}/captions", headers=admin, json={"text": "admin note"})
    assert by_admin.status_code == 201
    assert client.delete(f"/api/captions/{by_admin.get_json()['id']}", headers=ann).status_code == 200
    # The admin changes anything.
    assert client.put(f"/api/captions/{beas_caption}", headers=admin,
                      json={"text": "Bea's dog Rex"}).status_code == 200
    with db.engine.connect() as conn:
        authors: dict[str, str | None] = dict(conn.execute(text(
            "SELECT c.text, u.name FROM captions c LEFT JOIN users u ON u.id = c.added_by "
            "WHERE c.source = 'user'")).all())
    assert authors == {"Bea's dog Rex": "bea", "Ann's cat asleep": "contributor"}

    # The image page offers the forms only where they would be allowed.
    page = sign_in(accounts_app, "contributor")
    theirs = page.get(f"/image/{beas}").get_data(as_text=True)
    assert "Bea&#39;s dog Rex" in theirs and "/edit" not in theirs and "Add caption" not in theirs
    own = page.get(f"/image/{anns}").get_data(as_text=True)
    assert "/edit" in own and "Add caption" in own
    assert "/edit" not in sign_in(accounts_app, "viewer").get(f"/image/{anns}").get_data(as_text=True)
    assert "/edit" in sign_in(accounts_app, "admin").get(f"/image/{beas}").get_data(as_text=True)


def test_pages_offer_only_what_the_role_may_do(accounts_app: Flask, people: dict[str, str]) -> None:
    client = accounts_app.test_client()
    anns, admins = _upload(client, 1, people["token-contributor"]), _upload(client, 2, people["token-admin"])
    upload_link, delete_button = 'href="/upload"', ">Delete</button>"
    offered = {}
    for name in ("viewer", "contributor", "admin"):
        page = sign_in(accounts_app, name)
        collections = page.get("/collections").get_data(as_text=True)
        offered[name] = {
            "upload": upload_link in page.get("/").get_data(as_text=True),
            "delete own": delete_button in page.get(f"/image/{anns}").get_data(as_text=True),
            "delete other": delete_button in page.get(f"/image/{admins}").get_data(as_text=True),
            "caption own": "Add caption" in page.get(f"/image/{anns}").get_data(as_text=True),
            "rename collection": ">Rename</button>" in collections,
            "delete collection": ">Delete collection</button>" in collections,
            # What the viewer's overlay reads before it shows Delete.
            "viewer delete own": page.get(f"/api/images/{anns}").get_json()["may"]["delete"],
            "viewer delete other": page.get(f"/api/images/{admins}").get_json()["may"]["delete"],
        }
    assert offered["viewer"] == dict.fromkeys(offered["viewer"], False)
    assert offered["contributor"] == {"upload": True, "delete own": True, "delete other": False,
                                      "caption own": True, "rename collection": False,
                                      "delete collection": False, "viewer delete own": True,
                                      "viewer delete other": False}
    assert offered["admin"] == dict.fromkeys(offered["admin"], True)


def test_the_admin_page_shows_its_refusals_inline_and_keeps_what_was_typed(accounts_app: Flask) -> None:
    client = sign_in(accounts_app, "admin")
    token = _csrf(client.get("/admin/").get_data(as_text=True))
    taken = client.post("/admin/users", data={"csrf_token": token, "name": "viewer",
                                              "password": PASSWORD, "role": "contributor"})
    page = taken.get_data(as_text=True)
    assert taken.status_code == 400 and "<h1>Users</h1>" in page  # the page, not an error page
    form = page.split("<h2>Add a user</h2>", 1)[1]
    assert "There is already a user &#39;viewer&#39;" in form
    assert 'maxlength="64" value="viewer"' in form and "<option selected>contributor</option>" in form
    with accounts_app.extensions["clipseek"].db.session() as session:
        admin_id = session.scalar(select(User.id).where(User.name == "admin"))
    alone = client.post(f"/admin/users/{admin_id}/role", data={"csrf_token": token, "role": "viewer"})
    page = alone.get_data(as_text=True)
    assert alone.status_code == 400 and "<h1>Users</h1>" in page and "the only admin" in page
