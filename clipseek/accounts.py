"""Accounts of a shared deployment: users with Argon2 passwords and roles, API tokens, the audit."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from importlib.resources import files

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clipseek.errors import BadQuery, ClipSeekError
from clipseek.settings import Settings
from clipseek.store.tables import ApiToken, AuditEvent, Image, LoginSession, Role, User
from clipseek.util.user_text import user_text

_hasher = PasswordHasher()
# A wrong user name costs the same Argon2 work as a wrong password, so timing tells nothing.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MIN_PASSWORD = 12
# Long enough for any passphrase or manager's password; the bound keeps Argon2's input small.
MAX_PASSWORD = 256
TOKEN_PREFIX = "csk_"


def accounts_required(settings: Settings) -> bool:
    """Whether this deployment needs logins: under compose, or served beyond this machine."""
    if settings.require_accounts:
        return True
    host = settings.web_host.strip("[]").lower()
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name other than localhost may resolve to any address


def user_name(raw: str) -> str:
    """A user name, checked: letters, digits and . _ @ -, at most 64."""
    name = user_text(raw, what="A user name", max_chars=64)
    if not _USER_NAME.fullmatch(name):
        raise BadQuery(f"{raw[:80]!r} is not a usable user name: use up to 64 letters, digits and "
                       ". _ @ -, starting with a letter or digit.")
    return name


def role(raw: str) -> Role:
    """A role by name, checked."""
    try:
        return Role(raw.strip().lower())
    except ValueError:
        raise BadQuery(f"{raw[:40]!r} is not a role: choose viewer, contributor or admin.") from None


def _squeezed(secret: str) -> str:
    # "Password 1234" is as guessable as "password1234".
    return "".join(secret.split()).casefold()


@functools.cache
def _common_passwords() -> frozenset[str]:
    text = files("clipseek").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(_squeezed(line) for line in text.splitlines()
                     if line.strip() and not line.startswith("#"))


def check_password(secret: str) -> None:
    """Refuse a new password that is blank, shorter than 12 or longer than 256 characters, or common."""
    if not secret.strip():
        raise BadQuery("Choose a password that is not only spaces: at least "
                       f"{MIN_PASSWORD} characters.")
    if len(secret) < MIN_PASSWORD:
        raise BadQuery(f"Choose a password of at least {MIN_PASSWORD} characters "
                       f"(it has {len(secret)}); a few words make a good one.")
    if len(secret) > MAX_PASSWORD:
        raise BadQuery(f"Choose a password of at most {MAX_PASSWORD} characters (it has {len(secret)}).")
    if _squeezed(secret) in _common_passwords():
        raise BadQuery("Choose another password: that one is among the most common, which are "
                       "guessed first.")


def find_user(session: Session, name: str) -> User:
    """The user of this name, or a sentence saying there is none."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise BadQuery(f"There is no user {name!r}; `clipseek user list` lists them.")
    return user


def count_users(session: Session) -> int:
    """How many accounts there are."""
    return session.scalar(select(func.count()).select_from(User)) or 0


def add_user(session: Session, *, name: str, secret: str, user_role: Role) -> User:
    """Create an account with a password that passes `check_password` (the caller commits)."""
    check_password(secret)
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise BadQuery(f"There is already a user {name!r}; choose another name.")
    user = User(name=name, password_hash=_hasher.hash(secret), role=user_role.value)
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, user: User, secret: str, *, keep_session: str | None = None) -> None:
    """Change a password, which ends every session of that user but `keep_session` (the caller commits)."""
    check_password(secret)
    user.password_hash = _hasher.hash(secret)
    user.password_changed_at = datetime.now(UTC)
    ended = delete(LoginSession).where(LoginSession.user_id == user.id)
    if keep_session is not None:
        ended = ended.where(LoginSession.token_sha256 != _digest(keep_session))
    session.execute(ended)


def change_own_password(session: Session, user: User, *, current: str, new: str, repeated: str,
                        keep_session: str | None) -> None:
    """A person's own change of password: the current one must match and the new one be typed twice."""
    if not _matches(user.password_hash, current):
        raise BadQuery("Your current password is wrong; type it again (sign out and ask an admin "
                       "if you forgot it).")
    if new != repeated:
        raise BadQuery("The two new passwords differ; type the same one twice.")
    set_password(session, user, new, keep_session=keep_session)


def _matches(password_hash: str, secret: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, secret))
    except (VerificationError, InvalidHashError):
        return False


def set_role(session: Session, user: User, user_role: Role) -> None:
    """Change a role, keeping at least one admin."""
    if user.role == Role.ADMIN and user_role != Role.ADMIN:
        _keep_an_admin(session, user)
    user.role = user_role.value


def remove_user(session: Session, user: User) -> None:
    """Delete an account and its tokens, keeping at least one admin; its uploads stay."""
    if user.role == Role.ADMIN:
        _keep_an_admin(session, user)
    session.delete(user)


def _keep_an_admin(session: Session, user: User) -> None:
    admins = session.scalar(select(func.count()).select_from(User).where(User.role == Role.ADMIN.value))
    if (admins or 0) <= 1:
        raise BadQuery(f"{user.name} is the only admin; make another user admin first.")


def verify_login(session: Session, name: str, secret: str) -> User | None:
    """The user whose name and password these are, or None, with the same work either way."""
    user = session.scalar(select(User).where(User.name == name))
    if not _matches(user.password_hash if user else _DUMMY_HASH, secret) or user is None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(secret)
    return user


def ensure_first_admin(session: Session, *, name: str, secret: str | None) -> User | None:
    """Create the first admin from a configured password when there is no account yet."""
    if secret is None or count_users(session) > 0:
        return None
    return add_user(session, name=name, secret=secret, user_role=Role.ADMIN)


def _digest(secret: str) -> str:
    # Tokens are long random strings, so a plain SHA-256 is enough to keep them unusable if read.
    return hashlib.sha256(secret.encode()).hexdigest()


def start_session(session: Session, user: User) -> str:
    """Record a new sign-in of `user`; return the secret its cookie carries."""
    secret = secrets.token_urlsafe(32)
    session.add(LoginSession(token_sha256=_digest(secret), user_id=user.id))
    return secret


def user_of_session(session: Session, secret: str) -> User | None:
    """The user of a live sign-in, or None once it was ended or the password changed."""
    row = session.get(LoginSession, _digest(secret))
    return session.get(User, row.user_id) if row is not None else None


def end_session(session: Session, secret: str) -> None:
    """End one sign-in, so that its cookie no longer works even if someone kept a copy."""
    session.execute(delete(LoginSession).where(LoginSession.token_sha256 == _digest(secret)))


def create_token(session: Session, user: User, name: str) -> tuple[ApiToken, str]:
    """Create an API token; return it and its secret, which is never stored and shown only now."""
    label = user_text(name, what="A token name", max_chars=64)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=label, token_sha256=_digest(secret))
    session.add(token)
    session.flush()
    return token, secret


def user_of_token(session: Session, secret: str) -> User | None:
    """The user of a live token (recording its use), or None for an unknown or revoked one."""
    token = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == _digest(secret),
                                                  ApiToken.revoked_at.is_(None)))
    if token is None:
        return None
    token.last_used_at = datetime.now(UTC)
    return session.get(User, token.user_id)


def tokens_of(session: Session, user: User | None = None) -> list[ApiToken]:
    """Tokens, newest first: one user's, or everyone's."""
    query = select(ApiToken).order_by(ApiToken.id.desc())
    if user is not None:
        query = query.where(ApiToken.user_id == user.id)
    return list(session.scalars(query))


def revoke_token(session: Session, token_id: int, *, owner: User | None = None) -> ApiToken:
    """Revoke a token (only its owner's, when `owner` is given)."""
    token = session.get(ApiToken, token_id)
    if token is None or (owner is not None and token.user_id != owner.id):
        raise BadQuery(f"There is no token {token_id}" + (" of yours." if owner else "."))
    if token.revoked_at is None:
        token.revoked_at = datetime.now(UTC)
    return token


@dataclass(frozen=True)
class Actor:
    """Who does something, as recorded in the audit; None in the local single-user mode."""

    user_id: int
    name: str


class AuditAction(StrEnum):
    """What the audit records a person doing to a picture (rows before the trash say "delete")."""

    UPLOAD = "upload"
    TRASH = "trash"  # moved to the trash
    RESTORE = "restore"  # brought back from the trash
    PURGE = "purge"  # removed for good from the trash


def record_uploads(session: Session, actor: Actor | None, image_ids: Iterable[int]) -> None:
    """Mark new uploads as added by `actor` and record them in the audit (the caller commits)."""
    ids = list(image_ids)
    if actor is None or not ids:
        return
    session.execute(update(Image).where(Image.id.in_(ids)).values(added_by=actor.user_id))
    names = {row.id: row.original_name for row in
             session.execute(select(Image.id, Image.original_name).where(Image.id.in_(ids)))}
    record_image_events(session, actor, AuditAction.UPLOAD, {i: names.get(i) for i in ids})


def record_image_events(session: Session, actor: Actor | None, action: AuditAction,
                        images: Mapping[int, str | None]) -> None:
    """Record what `actor` did to these images (id -> name) in the audit (the caller commits).

    Nothing is recorded in the local single-user mode (no actor). Emptying the trash by the
    scheduler is no person's doing: its log says what it removed.
    """
    if actor is None:
        return
    session.add_all(AuditEvent(user_id=actor.user_id, user_name=actor.name, action=action.value,
                               image_id=i, image_name=name) for i, name in images.items())


def record_deletions(session: Session, actor: Actor | None, images: dict[int, str]) -> None:
    """Record images (id -> name) moved to the trash in the audit (the caller commits)."""
    record_image_events(session, actor, AuditAction.TRASH, images)


def recent_events(session: Session, *, limit: int = 50) -> list[AuditEvent]:
    """The latest uploads, deletions and restores, newest first."""
    return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)))


NO_ACCOUNT = ("This ClipSeek is reachable beyond this machine, so it needs accounts, and none exists: "
              "create the first with `clipseek user add NAME --role admin` (under docker compose, "
              "set CLIPSEEK_ADMIN_PASSWORD).")


def ready_for_accounts(session: Session, settings: Settings) -> None:
    """Create the configured first admin if there is no account; refuse to go on with none."""
    try:
        ensure_first_admin(session, name=user_name(settings.admin_name), secret=settings.admin_password)
        session.commit()
    except IntegrityError:
        # Another web process created it at the same moment (gunicorn starts several).
        session.rollback()
    if count_users(session) == 0:
        raise ClipSeekError(NO_ACCOUNT)
