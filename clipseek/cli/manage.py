"""Commands that change what is stored: delete images (into the trash), list, rename and delete
collections."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clipseek.cli.base import pass_context
from clipseek.context import Context
from clipseek.errors import ClipSeekError
from clipseek.library.collections import collection_counts, collection_name, rename_collection
from clipseek.library.deletion import Selection, count_selected, delete_images

MAX_IMAGE_ID = 2**63 - 1


@click.command()
@click.argument("image_ids", nargs=-1, type=click.IntRange(1, MAX_IMAGE_ID))
@click.option("--collection", default=None, help="Delete every image of this collection.")
@click.option("--path-prefix", type=click.Path(path_type=Path), default=None,
              help="Delete every image whose file lies in this folder (or is this file).")
@click.option("--delete-files", is_flag=True,
              help="Delete for good at once, skipping the trash, with the original files of "
                   "images indexed where they lie.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def delete(ctx: Context, image_ids: tuple[int, ...], collection: str | None, path_prefix: Path | None,
           delete_files: bool, yes: bool) -> None:
    """Move images to the trash by id, by collection or by folder (`clipseek trash` restores them)."""
    named = sum((bool(image_ids), collection is not None, path_prefix is not None))
    if named != 1:
        raise ClipSeekError("Say which images to delete in one way: image ids, --collection NAME "
                            "or --path-prefix FOLDER.")
    selection = Selection(image_ids=image_ids,
                          collection=None if collection is None else collection_name(collection),
                          path_prefix=None if path_prefix is None else path_prefix.absolute())
    delete_selected(ctx, selection, delete_files=delete_files, yes=yes)


def delete_selected(ctx: Context, selection: Selection, *, delete_files: bool, yes: bool) -> None:
    """Count the selected images, ask before deleting them unless `yes`, delete and report."""
    with ctx.db.session() as session:
        count = count_selected(session, selection)
    if count == 0:
        click.echo("No image matches; nothing was deleted.")
        return
    question = (f"Delete {count} picture(s) and their original files for good (not into the trash)?"
                if delete_files else f"Move {count} picture(s) to the trash?")
    if not yes and not click.confirm(question, err=True):
        click.echo("Nothing was deleted.")
        return
    with ctx.db.session() as session:
        deletion = delete_images(session, selection, store=ctx.settings.image_store,
                                 thumbnails=ctx.settings.thumbnails, delete_files=delete_files)
    if deletion.trashed:
        click.echo(f"{len(deletion.image_ids)} picture(s) moved to the trash; kept for "
                   f"{ctx.settings.trash_days} days; `clipseek trash restore` brings them back.")
        return
    click.echo(f"Deleted {len(deletion.image_ids)} image(s) for good; removed {len(deletion.removed_files)} "
               f"stored or original file(s) and {deletion.removed_derived} thumbnail(s); "
               f"kept {deletion.kept_originals} original file(s).")
    for path, why in deletion.not_removed.items():
        click.echo(f"Could not remove {path} ({why}); delete it by hand.", err=True)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
def collections(click_ctx: click.Context, as_json: bool) -> None:
    """List the collections with their images per status; see also rename and delete."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Context = click_ctx.obj
    with ctx.db.session() as session:
        found = collection_counts(session)
    if as_json:
        click.echo(json.dumps({"collections": [c.to_dict() for c in found]}, indent=2))
        return
    if not found:
        click.echo("No images yet: add some with `clipseek ingest FOLDER` or the Upload page.")
    for counts in found:
        statuses = ", ".join(f"{k} {v}" for k, v in counts.by_status.items() if v)
        click.echo(f"{counts.name or '(none)'}: {counts.images} image(s) ({statuses})")


@collections.command()
@click.argument("old")
@click.argument("new")
@pass_context
def rename(ctx: Context, old: str, new: str) -> None:
    """Rename collection OLD to NEW (merging them when NEW exists)."""
    old, new = collection_name(old), collection_name(new)
    with ctx.db.session() as session:
        moved = rename_collection(session, old=old, new=new)
        session.commit()
    if not moved:
        raise ClipSeekError(f"There is no collection {old!r}; `clipseek collections` lists them.")
    click.echo(f"Renamed {old!r} to {new!r} ({moved} image(s)).")


@collections.command("delete")
@click.argument("name")
@click.option("--delete-files", is_flag=True,
              help="Delete for good at once, skipping the trash, with the original files of "
                   "images indexed where they lie.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def delete_collection(ctx: Context, name: str, delete_files: bool, yes: bool) -> None:
    """Move every image of collection NAME to the trash (asks first, unless --yes)."""
    delete_selected(ctx, Selection(collection=collection_name(name)), delete_files=delete_files, yes=yes)
