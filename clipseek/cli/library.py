"""Commands that keep folders and the database in step: sync and prune."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from clipseek.cli.base import (
    folder_options,
    left_out_lines,
    pass_context,
    queue_errors,
    random_warning,
    report_look_alikes,
)
from clipseek.context import Context
from clipseek.indexing.encoding import index_images
from clipseek.indexing.queueing import queue_for_indexing
from clipseek.library.collections import collection_name
from clipseek.library.excludes import Excludes
from clipseek.library.ingest import decode_pool
from clipseek.library.sync import SyncReport, prune_missing, sync_folder
from clipseek.library.watch import FolderWatcher

# Counts that have a line of their own, when there is something to say.
_OWN_LINES = ("deleted", "restored", "excluded", "litter")


def sync_lines(folder: Path, found: SyncReport) -> list[str]:
    """What one folder's sync did, as lines for a person."""
    counts = {name: n for name, n in found.counts().items() if name not in _OWN_LINES}
    lines = [f"{folder}: " + ", ".join(f"{n} {name}" for name, n in counts.items()) + "."]
    if found.restored_ids:
        lines.append(f"  Brought back {len(found.restored_ids)} picture(s) from the trash.")
    if found.deleted:
        lines.append(f"  Left out {found.deleted} file(s) of deleted pictures (in the trash or deleted "
                     "for good); --bring-back registers them again.")
    lines += left_out_lines(excluded=found.excluded, litter=found.litter, names=found.left_out_names,
                            indent="  ")
    if found.skipped_by_extension:
        lines.append(f"  Skipped {found.skipped_by_extension} file(s) not named like images, e.g. "
                     + ", ".join(Path(p).name for p in found.skipped_names)
                     + " (--all-files reads them all).")
    for path, reason in sorted(found.failed.items())[:10]:
        lines.append(f"  failed {path}: {reason}")
    if len(found.failed) > 10:
        lines.append(f"  ... and {len(found.failed) - 10} more failure(s).")
    return lines


def sync_paths(ctx: Context, folders: tuple[Path, ...], *, all_files: bool,
               allow_missing_root: bool, inline: bool = False, collection: str | None = None,
               excludes: Excludes | None = None, bring_back: bool = False) -> list[int]:
    """Sync each folder, committing each, then queue (or index here) what needs the model.

    Returns the ids handed to the workers.
    """
    settings = ctx.settings
    queued: list[int] = []
    with decode_pool(settings) as pool:
        for folder in folders:
            with ctx.db.session() as session:
                found = sync_folder(session, folder, model=ctx.model,
                                    max_pixels=settings.max_image_pixels, pool=pool,
                                    all_files=all_files, allow_missing_root=allow_missing_root,
                                    collection=collection, excludes=excludes, bring_back=bring_back)
                session.commit()
                for line in sync_lines(folder, found):
                    click.echo(line)
                if found.to_queue and inline:
                    done = index_images(session, ctx.encoder, found.to_queue, pool=pool,
                                        batch_size=settings.batch_size,
                                        max_pixels=settings.max_image_pixels)
                    click.echo(f"  Indexed {len(done.indexed)} image(s); {len(done.failed)} failed.")
                    report_look_alikes(ctx, found.new_ids + found.changed_ids, indent="  ")
                elif found.to_queue:
                    with queue_errors(ctx):
                        queue_for_indexing(session, found.to_queue, model=ctx.model,
                                           batch_size=settings.batch_size, enqueue=ctx.enqueue)
                    queued += found.to_queue
    return queued


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--all-files", is_flag=True, help="Read every file, whatever its name says.")
@click.option("--allow-missing-root", is_flag=True,
              help="Mark everything missing when a folder itself is gone (not just unmounted).")
@click.option("--inline", is_flag=True, help="Index in this process instead of through the workers.")
@click.option("--collection", "collection_option", default=None,
              help="Put new images in this collection (default: the name of each folder given).")
@folder_options
@pass_context
def sync(ctx: Context, paths: tuple[Path, ...], all_files: bool, allow_missing_root: bool,
         inline: bool, collection_option: str | None, excludes: Excludes, bring_back: bool) -> None:
    """Bring folders and the database in step: new, changed, moved, missing and returned files.

    Deleted pictures are left out (--bring-back registers them again), and so are NAS/OS
    litter and what --exclude or a .clipseekignore names.
    """
    random_warning(ctx)
    chosen = None if collection_option is None else collection_name(collection_option)
    queued = sync_paths(ctx, paths, all_files=all_files, allow_missing_root=allow_missing_root,
                        inline=inline, collection=chosen, excludes=excludes, bring_back=bring_back)
    if queued:
        click.echo(f"Queued {len(queued)} image(s) for the workers: run `clipseek worker` if none "
                   "is running; `clipseek status` shows progress.")


def start_watching(ctx: Context, folders: tuple[Path, ...], *, all_files: bool = False,
                   inline: bool = False, collection: str | None = None, excludes: Excludes | None = None,
                   bring_back: bool = False) -> FolderWatcher:
    """Sync the folders now, then again after each burst of changes in them, in a thread.

    `bring_back` holds for the first sync only: a picture deleted while the folders are
    watched stays deleted.
    """
    sync_paths(ctx, folders, all_files=all_files, allow_missing_root=False, inline=inline,
               collection=collection, excludes=excludes, bring_back=bring_back)

    def changed(folder: Path) -> None:
        sync_paths(ctx, (folder,), all_files=all_files, allow_missing_root=False, inline=inline,
                   collection=collection, excludes=excludes)

    watcher = FolderWatcher(folders, changed)
    watcher.start()
    click.echo("Watching " + ", ".join(str(f) for f in watcher.folders) + " for changes.")
    return watcher


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--all-files", is_flag=True, help="Read every file, whatever its name says.")
@click.option("--inline", is_flag=True, help="Index in this process instead of through the workers.")
@click.option("--collection", "collection_option", default=None,
              help="Put new images in this collection (default: the name of each folder given).")
@folder_options
@pass_context
def watch(ctx: Context, paths: tuple[Path, ...], all_files: bool, inline: bool,
          collection_option: str | None, excludes: Excludes, bring_back: bool) -> None:
    """Keep folders in sync as files arrive, change, move or go; Ctrl-C stops.

    Deleted pictures stay out (--bring-back registers them again at the first sync), and
    so do NAS/OS litter and what --exclude or a .clipseekignore names.
    """
    random_warning(ctx)
    chosen = None if collection_option is None else collection_name(collection_option)
    watcher = start_watching(ctx, paths, all_files=all_files, inline=inline, collection=chosen,
                             excludes=excludes, bring_back=bring_back)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    stop.wait()
    watcher.stop()
    click.echo("Stopped watching.")


@click.command()
@click.option("--older-than", type=click.IntRange(min=0), default=None, metavar="DAYS",
              help="Only images missing for longer than this many days.")
@pass_context
def prune(ctx: Context, older_than: int | None) -> None:
    """Forget missing images for good: their rows, embeddings and thumbnails (never your files)."""
    with ctx.db.session() as session:
        removed = prune_missing(session, store=ctx.settings.image_store, thumbnails=ctx.settings.thumbnails,
                                older_than_days=older_than)
        session.commit()
    click.echo(f"Removed {removed} missing image(s).")
