"""`clipseek trash`: what is in the trash, bringing pictures back, and emptying it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clipseek.cli.base import pass_context, queue_errors
from clipseek.context import Context
from clipseek.errors import ClipSeekError
from clipseek.indexing.queueing import queue_for_indexing
from clipseek.library.collections import collection_name
from clipseek.library.deletion import Selection
from clipseek.library.trash import count_trashed, due_ids, empty_trash, restore_images, trash_contents

MAX_IMAGE_ID = 2**63 - 1


@click.group()
def trash() -> None:
    """Deleted pictures: kept for CLIPSEEK_TRASH_DAYS days (30 by default), restorable until then."""


@trash.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Show at most this many, most recently deleted first.")
@pass_context
def list_trash(ctx: Context, as_json: bool, limit: int) -> None:
    """List the pictures in the trash: when and by whom they were deleted, and the days left."""
    keep = ctx.settings.trash_days
    with ctx.db.session() as session:
        total = count_trashed(session)
        shown = trash_contents(session, keep_days=keep, per_page=limit)
    if as_json:
        click.echo(json.dumps({"total": total, "keep_days": keep,
                               "pictures": [p.to_dict() for p in shown]}, indent=2))
        return
    if not total:
        click.echo("The trash is empty.")
        return
    click.echo(f"{total} picture(s) in the trash, each kept for {keep} days after it was deleted:")
    for picture in shown:
        by = f" by {picture.trashed_by}" if picture.trashed_by else ""
        click.echo(f"  #{picture.image_id} {picture.name}: deleted "
                   f"{picture.trashed_at.astimezone().strftime('%Y-%m-%d %H:%M')}{by}, "
                   f"{picture.days_left()} day(s) left ({picture.path})")
    if total > len(shown):
        click.echo(f"  ... and {total - len(shown)} more (--limit shows more).")


def _one_way(image_ids: tuple[int, ...], path_prefix: Path | None, collection: str | None,
             everything: bool, *, what: str) -> Selection:
    named = sum((bool(image_ids), path_prefix is not None, collection is not None, everything))
    if named != 1:
        raise ClipSeekError(f"Say which pictures to {what} in one way: image ids, --path-prefix "
                            "FOLDER, --collection NAME or --all.")
    return Selection(image_ids=image_ids, everything=everything,
                     collection=None if collection is None else collection_name(collection),
                     path_prefix=None if path_prefix is None else path_prefix.absolute())


@trash.command()
@click.argument("image_ids", nargs=-1, type=click.IntRange(1, MAX_IMAGE_ID))
@click.option("--path-prefix", type=click.Path(path_type=Path), default=None,
              help="Restore every picture in the trash whose file lies in this folder.")
@click.option("--collection", default=None, help="Restore every picture in the trash of this collection.")
@click.option("--all", "everything", is_flag=True, help="Restore everything in the trash.")
@pass_context
def restore(ctx: Context, image_ids: tuple[int, ...], path_prefix: Path | None, collection: str | None,
            everything: bool) -> None:
    """Bring pictures back from the trash, with their captions, embeddings and albums."""
    selection = _one_way(image_ids, path_prefix, collection, everything, what="restore")
    with ctx.db.session() as session:
        restored = restore_images(session, selection, model=ctx.model)
        session.commit()
        if restored.to_queue:
            with queue_errors(ctx):
                queue_for_indexing(session, restored.to_queue, model=ctx.model,
                                   batch_size=ctx.settings.batch_size, enqueue=ctx.enqueue)
    if not restored.image_ids:
        click.echo("Nothing in the trash matches; nothing was restored.")
        return
    click.echo(f"Restored {len(restored.image_ids)} picture(s).")
    if restored.to_queue:
        click.echo(f"Queued {len(restored.to_queue)} of them for the model: run `clipseek worker` if none "
                   "is running.")


@trash.command()
@click.argument("image_ids", nargs=-1, type=click.IntRange(1, MAX_IMAGE_ID))
@click.option("--older-than", type=click.IntRange(min=0), default=None, metavar="DAYS",
              help="Only pictures deleted more than this many days ago.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def empty(ctx: Context, image_ids: tuple[int, ...], older_than: int | None, yes: bool) -> None:
    """Remove pictures in the trash for good (all of them, or those named); asks first, unless --yes."""
    selection = Selection(image_ids=image_ids) if image_ids else None
    with ctx.db.session() as session:
        count = len(due_ids(session, older_than_days=older_than, selection=selection))
    if count == 0:
        click.echo("Nothing in the trash matches; nothing was removed.")
        return
    if not yes and not click.confirm(
            f"Remove {count} picture(s) in the trash for good? Uploaded files are deleted; files in "
            "your folders stay on disk and are not registered again.", err=True):
        click.echo("Nothing was removed.")
        return
    settings = ctx.settings
    with ctx.db.session() as session:
        done = empty_trash(session, store=settings.image_store, thumbnails=settings.thumbnails,
                           older_than_days=older_than, selection=selection)
    click.echo(f"Removed {len(done.image_ids)} picture(s) for good: deleted {len(done.removed_files)} "
               f"stored file(s); {done.kept_originals} file(s) in your folders stay on disk, left out "
               "of every sync (`clipseek sync --bring-back` registers them again).")
    for path, why in done.not_removed.items():
        click.echo(f"Could not remove {path} ({why}); delete it by hand.", err=True)
