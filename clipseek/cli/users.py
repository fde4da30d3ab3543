"""The `clipseek user` and `clipseek token` commands: accounts and API tokens of a shared deployment."""

from __future__ import annotations

import click
from sqlalchemy import select

from clipseek import accounts
from clipseek.cli.base import pass_context
from clipseek.context import Context
from clipseek.store.tables import User


def _new_password(given: str | None) -> str:
    secret: str = given if given is not None else click.prompt("Password", hide_input=True,
                                                               confirmation_prompt=True)
    accounts.check_password(secret)
    return secret


@click.group()
def user() -> None:
    """Manage the accounts that sign in when ClipSeek is served beyond this machine."""


@user.command("add")
@click.argument("name")
@click.option("--role", "role_name", default="viewer", show_default=True,
              help="viewer, contributor or admin.")
@click.option("--password", default=None, help="The password (asked for when left out).")
@pass_context
def add(ctx: Context, name: str, role_name: str, password: str | None) -> None:
    """Create an account."""
    checked, user_role = accounts.user_name(name), accounts.role(role_name)
    secret = _new_password(password)
    with ctx.db.session() as session:
        accounts.add_user(session, name=checked, secret=secret, user_role=user_role)
        session.commit()
    click.echo(f"Added {checked} ({user_role.value}).")


@user.command("list")
@pass_context
def list_users(ctx: Context) -> None:
    """List the accounts and their roles."""
    with ctx.db.session() as session:
        for row in session.scalars(select(User).order_by(User.name)):
            click.echo(f"{row.name}\t{row.role}\tsince {row.created_at:%Y-%m-%d}")


@user.command()
@click.argument("name")
@click.option("--password", default=None, help="The new password (asked for when left out).")
@pass_context
def passwd(ctx: Context, name: str, password: str | None) -> None:
    """Change a password, which signs that user out everywhere."""
    with ctx.db.session() as session:
        found = accounts.find_user(session, name)
        accounts.set_password(session, found, _new_password(password))
        session.commit()
    click.echo(f"Changed the password of {name}; every session of it has ended.")


@user.command()
@click.argument("name")
@click.argument("role_name", metavar="ROLE")
@pass_context
def role(ctx: Context, name: str, role_name: str) -> None:
    """Give a user another role (viewer, contributor or admin)."""
    user_role = accounts.role(role_name)
    with ctx.db.session() as session:
        accounts.set_role(session, accounts.find_user(session, name), user_role)
        session.commit()
    click.echo(f"{name} is now {user_role.value}.")


@user.command()
@click.argument("name")
@pass_context
def remove(ctx: Context, name: str) -> None:
    """Delete an account and its tokens (its uploads stay)."""
    with ctx.db.session() as session:
        accounts.remove_user(session, accounts.find_user(session, name))
        session.commit()
    click.echo(f"Removed {name}.")


@click.group()
def token() -> None:
    """Manage personal API tokens (sent as `Authorization: Bearer <token>`)."""


@token.command("create")
@click.option("--name", required=True, help="What the token is for, e.g. laptop.")
@click.option("--user", "owner", required=True, help="The account whose rights it carries.")
@pass_context
def create(ctx: Context, name: str, owner: str) -> None:
    """Create a token and print it, this once (only its hash is kept)."""
    with ctx.db.session() as session:
        made, secret = accounts.create_token(session, accounts.find_user(session, owner), name)
        session.commit()
    click.echo(f"Token {made.id} ({name}) for {owner}; keep it, it is not shown again:", err=True)
    click.echo(secret)


@token.command("list")
@click.option("--user", "owner", default=None, help="Only this account's tokens.")
@pass_context
def list_tokens(ctx: Context, owner: str | None) -> None:
    """List tokens: id, user, name, created, last used, state."""
    with ctx.db.session() as session:
        users = {u.id: u.name for u in session.scalars(select(User))}
        who = accounts.find_user(session, owner) if owner else None
        for row in accounts.tokens_of(session, who):
            used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
            state = "revoked" if row.revoked_at else "live"
            click.echo(f"{row.id}\t{users.get(row.user_id)}\t{row.name}\t"
                       f"{row.created_at:%Y-%m-%d %H:%M}\t{used}\t{state}")


@token.command()
@click.argument("token_id", type=int)
@pass_context
def revoke(ctx: Context, token_id: int) -> None:
    """Revoke a token by its id (from `clipseek token list`)."""
    with ctx.db.session() as session:
        accounts.revoke_token(session, token_id)
        session.commit()
    click.echo(f"Revoked token {token_id}.")
