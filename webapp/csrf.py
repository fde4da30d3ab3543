"""CSRF protection: a per-session token on forms; a custom header on API writes."""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, abort, g, request, session

API_HEADER = "X-Requested-With"


def csrf_token() -> str:
    """This session's token, created on first use (templates put it in every form)."""
    if "csrf_token" not in session:
        session["csrf_token"] = secrets.token_urlsafe(32)
    token: str = session["csrf_token"]
    return token


def _check() -> None:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    # A bearer token is never sent by a browser on its own, so another site cannot forge it.
    if g.get("token_account") is not None:
        return
    expected = session.get("csrf_token")
    given = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
    if expected and given and hmac.compare_digest(expected, given):
        return
    # Scripts may call the API (every route under /api/, whichever module serves it) without
    # a session: a custom header cannot be sent by a cross-site form, and no cross-origin
    # request is allowed to add one.
    if request.path.startswith("/api/") and request.headers.get(API_HEADER):
        return
    abort(400, description="The form expired or came from another site; reload the page and "
                           "try again.")


def init_app(app: Flask) -> None:
    """Check every state-changing request, and give templates the token."""
    app.before_request(_check)
    app.jinja_env.globals["csrf_token"] = csrf_token
