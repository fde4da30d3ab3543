"""The `clipseek album` commands: list, create, rename, add to, remove from and delete albums."""

from __future__ import annotations

import json

import click

from clipseek.cli.base import pass_context
from clipseek.context import Context
from clipseek.library.albums import (
    add_to_album,
    album_name,
    create_album,
    delete_album,
    find_albums,
    list_albums,
    remove_from_album,
    rename_album,
)

MAX_IMAGE_ID = 2**63 - 1
IMAGE_IDS = click.argument("image_ids", nargs=-1, required=True, type=click.IntRange(1, MAX_IMAGE_ID))


@click.group()
def album() -> None:
    """Albums: pictures you group by hand (a picture may be in many). ALBUM is a name or an id."""


@album.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@pass_context
def list_command(ctx: Context, as_json: bool) -> None:
    """List the albums with how many pictures each holds."""
    with ctx.db.session() as session:
        found = list_albums(session)
    if as_json:
        click.echo(json.dumps({"albums": [a.to_dict() for a in found]}, indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo("No albums yet: make one with `clipseek album create NAME`.")
    for summary in found:
        click.echo(f"{summary.id}\t{summary.name}\t{summary.images} picture(s)")


@album.command()
@click.argument("name")
@pass_context
def create(ctx: Context, name: str) -> None:
    """Make an empty album named NAME."""
    with ctx.db.session() as session:
        made = create_album(session, name=album_name(name), created_by=None)
        session.commit()
        click.echo(f"Created album {made.name!r} (id {made.id}).")


@album.command()
@click.argument("ref", metavar="ALBUM")
@click.argument("new")
@pass_context
def rename(ctx: Context, ref: str, new: str) -> None:
    """Give ALBUM the name NEW."""
    with ctx.db.session() as session:
        found = find_albums(session, [ref])[0]
        old = found.name
        rename_album(session, album_id=found.id, name=album_name(new))
        session.commit()
    click.echo(f"Renamed album {old!r} to {album_name(new)!r}.")


@album.command()
@click.argument("ref", metavar="ALBUM")
@IMAGE_IDS
@pass_context
def add(ctx: Context, ref: str, image_ids: tuple[int, ...]) -> None:
    """Put the pictures IMAGE_IDS in ALBUM."""
    with ctx.db.session() as session:
        found = find_albums(session, [ref])[0]
        change = add_to_album(session, album_id=found.id, image_ids=image_ids, added_by=None)
        session.commit()
        name = found.name
    click.echo(f"Added {change.added} picture(s) to {name!r}; {change.already} were in it already"
               + (f", {change.unknown} id(s) name no picture in the library." if change.unknown else "."))


@album.command()
@click.argument("ref", metavar="ALBUM")
@IMAGE_IDS
@pass_context
def remove(ctx: Context, ref: str, image_ids: tuple[int, ...]) -> None:
    """Take the pictures IMAGE_IDS out of ALBUM (they stay in the library)."""
    with ctx.db.session() as session:
        found = find_albums(session, [ref])[0]
        removed = remove_from_album(session, album_id=found.id, image_ids=image_ids)
        session.commit()
        name = found.name
    click.echo(f"Took {removed} picture(s) out of {name!r}.")


@album.command()
@click.argument("ref", metavar="ALBUM")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def delete(ctx: Context, ref: str, yes: bool) -> None:
    """Delete ALBUM; its pictures stay in the library."""
    with ctx.db.session() as session:
        found = find_albums(session, [ref])[0]
        name, album_id = found.name, found.id
        if not yes and not click.confirm(f"Delete the album {name!r}? Its pictures stay.", err=True):
            click.echo("Nothing was deleted.")
            return
        delete_album(session, album_id=album_id)
        session.commit()
    click.echo(f"Deleted the album {name!r}; its pictures stay in the library.")
