"""One's own account (password, API tokens) and the admin's page (users, roles, the audit)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from clipseek import accounts
from clipseek.errors import BadQuery
from clipseek.store.tables import User
from webapp.auth import Account, signed_in
from webapp.db_session import get_session

account_bp = Blueprint("account", __name__)
admin_bp = Blueprint("admin", __name__, url_prefix="/admin")


def _me() -> Account:
    account = signed_in()
    if account is None:
        abort(404, description="This ClipSeek runs without accounts (local mode): there is no "
                               "account page.")
    return account


def _user(account: Account) -> User:
    user = get_session().get(User, account.user_id)
    if user is None:
        abort(401, description="Your account no longer exists; sign in with another.")
    return user


@account_bp.get("/account")
def page() -> str:
    """The signed-in user's password form and API tokens."""
    user = _user(_me())
    return render_template("account.html", user=user, tokens=accounts.tokens_of(get_session(), user))


@account_bp.post("/account/password")
def change_password() -> Response | tuple[str, int]:
    """Change one's own password; one's other sessions end, this one stays signed in."""
    session = get_session()
    account = _me()
    user = _user(account)
    try:
        accounts.change_own_password(session, user, current=request.form.get("current", ""),
                                     new=request.form.get("new", ""),
                                     repeated=request.form.get("repeated", ""),
                                     keep_session=account.login_secret)
    except BadQuery as refused:
        return render_template("account.html", user=user, tokens=accounts.tokens_of(session, user),
                               password_error=str(refused)), 400
    session.commit()
    flash("Changed your password; your other sessions are signed out.", "info")
    return redirect(url_for("account.page"))


@account_bp.post("/account/tokens")
def create_token() -> tuple[str, int]:
    """Create an API token and show its secret, this once."""
    session = get_session()
    user = _user(_me())
    _token, secret = accounts.create_token(session, user, request.form.get("name", ""))
    session.commit()
    return render_template("account.html", user=user, tokens=accounts.tokens_of(session, user),
                           new_secret=secret), 201


@account_bp.post("/account/tokens/<int:token_id>/revoke")
def revoke_token(token_id: int) -> Response:
    """Revoke one of one's own tokens."""
    session = get_session()
    token = accounts.revoke_token(session, token_id, owner=_user(_me()))
    session.commit()
    flash(f"Revoked the token {token.name!r}.", "info")
    return redirect(url_for("account.page"))


@admin_bp.get("/")
def overview(error: str | None = None, user_error: tuple[int, str] | None = None) -> str:
    """Users, their roles, and recent uploads and deletions (with a refused form's sentence by it)."""
    session = get_session()
    users = session.scalars(select(User).order_by(User.name)).all()
    return render_template("admin.html", users=users, events=accounts.recent_events(session),
                           error=error, user_error=user_error, typed=request.form)


def _refused(exc: BadQuery, *, user_id: int | None = None) -> tuple[str, int]:
    # The page again, the sentence beside the form and what was typed still in it.
    get_session().rollback()
    if user_id is None:
        return overview(error=str(exc)), 400
    return overview(user_error=(user_id, str(exc))), 400


@admin_bp.post("/users")
def add_user() -> Response | tuple[str, int]:
    """Create an account."""
    session = get_session()
    try:
        user = accounts.add_user(session, name=accounts.user_name(request.form.get("name", "")),
                                 secret=request.form.get("password", ""),
                                 user_role=accounts.role(request.form.get("role", "")))
    except BadQuery as exc:
        return _refused(exc)
    session.commit()
    flash(f"Added {user.name} ({user.role}).", "info")
    return redirect(url_for("admin.overview"))


@admin_bp.post("/users/<int:user_id>/role")
def set_role(user_id: int) -> Response | tuple[str, int]:
    """Change a user's role."""
    session = get_session()
    user = _found(user_id)
    try:
        accounts.set_role(session, user, accounts.role(request.form.get("role", "")))
    except BadQuery as exc:
        return _refused(exc, user_id=user_id)
    session.commit()
    flash(f"{user.name} is now {user.role}.", "info")
    return redirect(url_for("admin.overview"))


@admin_bp.post("/users/<int:user_id>/remove")
def remove_user(user_id: int) -> Response:
    """Delete an account (its uploads stay)."""
    session = get_session()
    user = _found(user_id)
    accounts.remove_user(session, user)
    session.commit()
    flash(f"Removed {user.name}.", "info")
    return redirect(url_for("admin.overview"))


def _found(user_id: int) -> User:
    user = get_session().get(User, user_id)
    if user is None:
        abort(404, description=f"There is no user {user_id}.")
    return user
