"""Accounts on real PostgreSQL: passwords, roles, tokens, the audit, and the modes that need them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from clipseek import accounts
from clipseek.errors import BadQuery
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import AuditEvent, Image, Role


def test_password_is_stored_as_argon2_and_verified(db: Database) -> None:
    with db.session() as session:
        user = accounts.add_user(session, name="ann", secret="correct horse", user_role=Role.VIEWER)
        assert user.password_hash.startswith("$argon2id$") and "correct horse" not in user.password_hash
        assert accounts.verify_login(session, "ann", "correct horse") is user
        assert accounts.verify_login(session, "ann", "wrong horse") is None
        assert accounts.verify_login(session, "nobody", "correct horse") is None


def test_changing_the_password_ends_every_session(db: Database) -> None:
    with db.session() as session:
        user = accounts.add_user(session, name="ann", secret="correct horse", user_role=Role.VIEWER)
        first, second = accounts.start_session(session, user), accounts.start_session(session, user)
        assert accounts.user_of_session(session, first) is user
        accounts.end_session(session, first)
        assert accounts.user_of_session(session, first) is None
        assert accounts.user_of_session(session, second) is user
        accounts.set_password(session, user, "battery staple")
        assert accounts.user_of_session(session, second) is None
        assert accounts.verify_login(session, "ann", "battery staple") is user


def test_the_last_admin_cannot_be_removed_or_demoted(db: Database) -> None:
    with db.session() as session:
        admin = accounts.add_user(session, name="root", secret="correct horse", user_role=Role.ADMIN)
        with pytest.raises(BadQuery, match="only admin"):
            accounts.remove_user(session, admin)
        with pytest.raises(BadQuery, match="only admin"):
            accounts.set_role(session, admin, Role.VIEWER)


def test_bad_names_and_roles_say_what_to_change() -> None:
    with pytest.raises(BadQuery, match="user name"):
        accounts.user_name("a b")
    with pytest.raises(BadQuery, match="viewer, contributor or admin"):
        accounts.role("owner")


@pytest.mark.parametrize(("secret", "sentence"), [
    (" " * 8, "not only spaces"),
    (" " * 20, "not only spaces"),
    ("\t\n \u3000" * 4, "not only spaces"),
    ("eleven char", "at least 12 characters"),
    ("x" * 257, "at most 256 characters"),
    ("password1234", "common"),
    ("QWERTY123456", "common"),
    ("Correct Horse Battery Staple", "common"),
])
def test_one_password_rule_refuses_blank_short_long_and_common_ones(secret: str, sentence: str) -> None:
    with pytest.raises(BadQuery, match=sentence):
        accounts.check_password(secret)


@pytest.mark.parametrize("secret", ["correct horse battery", "x" * 64, "y" * 256, "  twelve chars"])
def test_the_password_rule_lets_long_uncommon_ones_pass(secret: str) -> None:
    accounts.check_password(secret)


def test_every_way_to_set_a_password_applies_the_rule(db: Database) -> None:
    with db.session() as session:
        with pytest.raises(BadQuery, match="at least 12"):
            accounts.ensure_first_admin(session, name="boss", secret="short one")
        with pytest.raises(BadQuery, match="not only spaces"):
            accounts.add_user(session, name="ann", secret=" " * 12, user_role=Role.VIEWER)
        user = accounts.add_user(session, name="ann", secret="correct horse", user_role=Role.VIEWER)
        with pytest.raises(BadQuery, match="common"):
            accounts.set_password(session, user, "iloveyou1234")
        assert accounts.verify_login(session, "ann", "correct horse") is user


def test_the_common_passwords_ship_with_the_package() -> None:
    from importlib.resources import files

    listed = files("clipseek").joinpath("common_passwords.txt").read_text().split("\n")
    assert len([line for line in listed if line.strip()]) >= 200
    assert "package-data" in Path(__file__).resolve().parent.parent.joinpath("pyproject.toml").read_text()
    assert "common_passwords.txt" in Path(__file__).resolve().parent.parent.joinpath(
        "pyproject.toml").read_text()


def test_a_token_is_stored_hashed_and_stops_working_when_revoked(db: Database) -> None:
    with db.session() as session:
        user = accounts.add_user(session, name="ann", secret="correct horse", user_role=Role.VIEWER)
        token, secret = accounts.create_token(session, user, "laptop")
        assert secret not in token.token_sha256 and secret.startswith(accounts.TOKEN_PREFIX)
        assert accounts.user_of_token(session, secret) is user
        assert token.last_used_at is not None
        accounts.revoke_token(session, token.id)
        assert accounts.user_of_token(session, secret) is None
        assert accounts.user_of_token(session, "csk_made_up") is None


def test_uploads_and_deletions_are_recorded_with_who(db: Database) -> None:
    with db.session() as session:
        user = accounts.add_user(session, name="ann", secret="correct horse", user_role=Role.CONTRIBUTOR)
        image = Image(sha256="0" * 64, path="/x.jpg", original_name="x.jpg", source="upload", file_size=1)
        session.add(image)
        session.flush()
        actor = accounts.Actor(user_id=user.id, name=user.name)
        accounts.record_uploads(session, actor, [image.id])
        accounts.record_deletions(session, actor, {image.id: "x.jpg"})
        session.commit()
        session.refresh(image)
        assert image.added_by == user.id
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        assert [(e.action, e.user_name, e.image_name) for e in events] == [
            ("upload", "ann", "x.jpg"), ("trash", "ann", "x.jpg")]


@pytest.mark.parametrize(("host", "required"), [("127.0.0.1", False), ("localhost", False),
                                                ("::1", False), ("0.0.0.0", True),
                                                ("192.168.1.5", True), ("photos.example", True)])
def test_accounts_are_required_off_the_loopback_address(settings: Settings, host: str,
                                                        required: bool) -> None:
    assert accounts.accounts_required(settings.with_changes(web_host=host)) is required


def test_compose_setting_requires_accounts_on_any_address(settings: Settings) -> None:
    env = {"CLIPSEEK_HOME": str(settings.home), "CLIPSEEK_REQUIRE_ACCOUNTS": "1"}
    assert accounts.accounts_required(Settings.from_env(env))
