"""Signing in: Flask-Login sessions backed by the database, API tokens, and the login rate limit."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_limiter import Limiter, RateLimitExceeded, RouteLimit
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from sqlalchemy import select
from werkzeug.urls import iri_to_uri
from werkzeug.wrappers import Response

from clipseek import accounts
from clipseek.indexing.broker import broker_url
from clipseek.settings import Settings
from clipseek.store.tables import Caption, Image, Role, User
from webapp.db_session import get_session
from webapp.errors import error_response
from webapp.policies import allows, enforce

# Only failed sign-ins count, so that colleagues behind one address never block each other.
# A guesser is held per account and address, and per address across accounts; per account
# alone the bound is loose, so that nobody can lock another out from an address or two.
ACCOUNT_AND_ADDRESS_LIMIT = "5 per minute"
ADDRESS_LIMIT = "20 per hour"
ACCOUNT_LIMIT = "100 per hour"
WRONG_LOGIN = "The user name or the password is wrong; check both and try again."
TOO_MANY = "Too many failed sign-ins; wait a minute (after many, up to an hour) and try again."
BAD_TOKEN = ("The API token is unknown or revoked; create a new one on the account page or with "
             "`clipseek token create`.")
TOKEN_ON_A_PAGE = ("API tokens work on /api/ and on the picture URLs it returns; sign in to use the "
                   "pages.")


class Account(UserMixin):  # type: ignore[misc]
    """The signed-in user of a request, by a browser sign-in or an API token."""

    def __init__(self, user: User, *, login_secret: str | None = None) -> None:
        self.user_id = user.id
        self.name = user.name
        self.role = Role(user.role)
        self.login_secret = login_secret

    def get_id(self) -> str | None:
        """What the session cookie keeps: the sign-in's secret, never the user's id."""
        return self.login_secret


class _SecureWhenHttps(SecureCookieSessionInterface):
    def get_cookie_secure(self, app: Flask) -> bool:
        # Secure only over HTTPS: the local mode runs on plain http://localhost.
        return request.is_secure


def accounts_on() -> bool:
    """Whether this app requires signing in."""
    on: bool = current_app.config["CLIPSEEK_ACCOUNTS"]
    return on


def signed_in() -> Account | None:
    """The request's account, or None (always None in the local single-user mode)."""
    user = current_user
    return user if accounts_on() and isinstance(user, Account) else None


def actor() -> accounts.Actor | None:
    """Who to record in the audit for this request."""
    account = signed_in()
    return accounts.Actor(account.user_id, account.name) if account else None


def uploader_name(image: Image) -> str | None:
    """Who uploaded `image`, shown to admins only (None for anyone else and in the local mode)."""
    account = signed_in()
    if account is None or account.role is not Role.ADMIN or image.added_by is None:
        return None
    return get_session().scalar(select(User.name).where(User.id == image.added_by))


def may(endpoint: str, image: Image | None = None, caption: Caption | None = None) -> bool:
    """Whether this request's account may call `endpoint` (on `image`, or on `caption`), as its policy says.

    The pages ask this before they offer a link, a button or a form, so that nobody is
    offered what the server would refuse; everyone may do everything in the local mode.
    """
    if not accounts_on():
        return True
    account = signed_in()
    if caption is not None:
        image = caption.image
    return allows(endpoint, account.role if account else None, account.user_id if account else None,
                  picture_by=image.added_by if image is not None else None,
                  caption_by=caption.added_by if caption is not None else None,
                  on_caption=caption is not None)


def _load_session(secret: str) -> Account | None:
    if g.get("token_account") is not None:
        return None  # a request with a token acts with the token's rights, whatever its cookie
    user = accounts.user_of_session(get_session(), secret)
    return Account(user, login_secret=secret) if user is not None else None


def _load_token(_request: Any) -> Account | None:
    token_account: Account | None = g.get("token_account")
    return token_account


def _bearer_token() -> str | None:
    """The request's bearer token ("" when the header has none), or None without one."""
    scheme, _, secret = request.headers.get("Authorization", "").strip().partition(" ")
    # Other schemes are not ClipSeek's (a proxy's Basic login, say): as if no header came.
    return secret.strip() if scheme.lower() == "bearer" else None


def _takes_tokens() -> bool:
    # The API and the pictures whose URLs it returns, all read-only or under /api/; the
    # pages, with their forms, are for a browser's session.
    return request.path.startswith("/api/") or request.blueprint == "files"


def _authorize() -> Response | None:
    secret = _bearer_token()
    if secret is not None:
        if not _takes_tokens():
            abort(401, description=TOKEN_ON_A_PAGE)
        user = accounts.user_of_token(get_session(), secret) if secret else None
        if user is None:
            abort(401, description=BAD_TOKEN)
        get_session().commit()  # the token's last use
        g.token_account = Account(user)
    account = signed_in()
    return enforce(request.endpoint, account.user_id if account else None,
                   account.role if account else None)


# Browsers drop tabs and line breaks from a URL and read a backslash as a slash, so a `next`
# holding any of these, or other invisible characters, could lead elsewhere than it looks.
_UNSAFE_IN_NEXT = re.compile(r"[\x00-\x20\x7f-\x9f\\\s]")


def safe_next(target: str | None) -> str | None:
    """`target` as the redirect will send it, if that is a path on this site; otherwise None."""
    if not target or _UNSAFE_IN_NEXT.search(target):
        return None
    sent = iri_to_uri(target)  # what werkzeug writes into the Location header
    parts = urlsplit(sent)
    if parts.scheme or parts.netloc or not sent.startswith("/") or sent.startswith("//"):
        return None
    return sent


def _account() -> str:
    return "account:" + request.form.get("name", "").strip().lower()[:64]


def _account_and_address() -> str:
    return f"{_account()} from:{get_remote_address()}"


def _failed(response: Response) -> bool:
    return response.status_code == 401


def _too_many(exc: RateLimitExceeded) -> tuple[Response | str, int]:
    if request.endpoint != "auth.login":
        return error_response(429, exc.description or TOO_MANY)
    # The form stays, so that the person can try again later from the same page.
    return render_template("login.html", next=safe_next(request.values.get("next")),
                           error=TOO_MANY), 429


def blueprint(limiter: Limiter) -> Blueprint:
    """The sign-in and sign-out routes, limited by `limiter`."""
    bp = Blueprint("auth", __name__)

    def failures(limit: str, key: Callable[[], str]) -> RouteLimit:
        # Checked before the password is, counted only when it was wrong.
        return limiter.limit(limit, key_func=key, methods=["POST"], deduct_when=_failed,
                             error_message=TOO_MANY)

    @bp.route("/login", methods=["GET", "POST"])
    @failures(ACCOUNT_AND_ADDRESS_LIMIT, _account_and_address)
    @failures(ADDRESS_LIMIT, get_remote_address)
    @failures(ACCOUNT_LIMIT, _account)
    def login() -> Response | tuple[str, int]:
        """The sign-in form; a right name and password start a new session."""
        if not accounts_on():
            return redirect(url_for("pages.search"))
        next_page = safe_next(request.values.get("next"))
        if request.method == "GET":
            return render_template("login.html", next=next_page), 200
        db = get_session()
        user = accounts.verify_login(db, request.form.get("name", "").strip(),
                                     request.form.get("password", ""))
        if user is None:
            return render_template("login.html", next=next_page, error=WRONG_LOGIN), 401
        secret = accounts.start_session(db, user)
        db.commit()
        session.clear()  # a new session at every sign-in: nothing set before it carries over
        login_user(Account(user, login_secret=secret))
        return redirect(next_page or url_for("pages.search"))

    @bp.post("/logout")
    def logout() -> Response:
        """End this sign-in on the server too, so a copied cookie stops working."""
        account = signed_in()
        if account is not None and account.login_secret:
            accounts.end_session(get_session(), account.login_secret)
            get_session().commit()
        logout_user()
        session.clear()
        return redirect(url_for("auth.login") if accounts_on() else url_for("pages.search"))

    return bp


def limiter_storage(settings: Settings, required: bool) -> str:
    """Where login attempts are counted: the Redis ClipSeek runs, or memory in the local mode."""
    if not required:
        return "memory://"
    return broker_url(settings).replace("redis+socket://", "redis+unix://", 1)


def init_app(app: Flask, settings: Settings) -> None:
    """Set up sessions, the loaders, the per-request check of every route's policy, and /login."""
    required = accounts.accounts_required(settings)
    app.config["CLIPSEEK_ACCOUNTS"] = required
    app.session_interface = _SecureWhenHttps()
    manager = LoginManager()
    manager.user_loader(_load_session)
    manager.request_loader(_load_token)
    manager.init_app(app)
    limiter = Limiter(get_remote_address, app=app, storage_uri=limiter_storage(settings, required),
                      default_limits=[], in_memory_fallback_enabled=True)
    app.extensions["clipseek_limiter"] = limiter
    if required:
        app.before_request(_authorize)
    app.register_blueprint(blueprint(limiter))
    app.register_error_handler(RateLimitExceeded, _too_many)
    app.jinja_env.globals.update(uploader_name=uploader_name, may=may)

    @app.context_processor
    def account_globals() -> dict[str, Any]:
        return {"accounts_on": required, "account": signed_in()}
