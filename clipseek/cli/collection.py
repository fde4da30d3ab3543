"""Commands about the collection: ingest, ingest-coco, download-coco, samples, reindex and status."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clipseek.cli.base import (
    import_options,
    index_here,
    pass_context,
    queue_errors,
    random_warning,
    report,
)
from clipseek.cli.library import sync_paths
from clipseek.cli.progress import StageBars, counting_bar, position_bar
from clipseek.clip.encoder import parse_model_id
from clipseek.context import Context
from clipseek.errors import ClipSeekError
from clipseek.indexing.broker import queue_depth
from clipseek.indexing.encoding import pending_image_ids
from clipseek.indexing.heartbeats import worker_states
from clipseek.indexing.queueing import wait_until_indexed
from clipseek.indexing.reading import reading_counts, wait_until_read
from clipseek.library.coco import COCO_BASE_URL, coco_candidates, download_coco
from clipseek.library.collections import collection_name, folder_collection
from clipseek.library.ingest import ingest_queued
from clipseek.library.register import Candidate, discover_files
from clipseek.library.samples import write_sample_photos
from clipseek.library.sync import is_known_folder
from clipseek.store.tables import ImageStatus
from clipseek.upkeep.reindexing import backfill_captions, backfill_metadata, reindex_images, reread_words
from clipseek.upkeep.status import collection_status, count_by_status, reading_summary, switch_summary


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--copy", is_flag=True, help="Copy the files into ClipSeek's image store.")
@click.option("--collection", "collection_option", default=None,
              help="Put the images in this collection (default: the name of each folder given).")
@click.option("--all-files", is_flag=True, help="Read every file in the folders, whatever its name says.")
@import_options
@pass_context
def ingest(ctx: Context, paths: tuple[Path, ...], copy: bool, collection_option: str | None,
           all_files: bool, inline: bool, wait: bool, timeout: float, progress: bool) -> None:
    """Register image files and folders (recursively) and index them.

    A folder imported before (and not copied) is synced instead: moved, changed and deleted
    files are recognised as such, not registered again.
    """
    chosen = None if collection_option is None else collection_name(collection_option)
    with ctx.db.session() as session:
        known = tuple(p for p in paths if not copy and p.is_dir() and is_known_folder(session, p))
    if known:
        queued = sync_paths(ctx, known, all_files=all_files, allow_missing_root=False, inline=inline,
                            collection=chosen)
        if wait and queued:
            wait_for_indexing(ctx, queued, timeout=timeout, progress=progress)
        paths = tuple(p for p in paths if p not in known)
        if not paths:
            return
    skipped: list[Path] = []
    candidates = []
    for path in paths:
        try:
            files = list(discover_files([path], all_files=all_files, on_skipped=skipped.append))
        except FileNotFoundError as exc:
            raise ClipSeekError(str(exc)) from None
        name = chosen or folder_collection(path)
        candidates += [Candidate(path=p, source="folder", collection=name) for p in files]
    if skipped:
        click.echo(f"Skipped {len(skipped)} file(s) not named like images, e.g. "
                   + ", ".join(p.name for p in skipped[:5]) + " (--all-files reads them all).")
    import_candidates(ctx, candidates, inline=inline, wait=wait, copy=copy, progress=progress,
                      timeout=timeout)


@click.command("ingest-coco")
@click.option("--images", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder of COCO images, e.g. train2017/.")
@click.option("--annotations", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="captions_train2017.json or captions_val2017.json.")
@import_options
@pass_context
def ingest_coco(ctx: Context, images: Path, annotations: Path, inline: bool, wait: bool, timeout: float,
                progress: bool) -> None:
    """Register MS-COCO 2017 images with their captions and index them."""
    candidates, missing = coco_candidates(images, annotations)
    if missing:
        click.echo(f"{missing} annotated image(s) are not in {images}; they are skipped.", err=True)
    import_candidates(ctx, candidates, inline=inline, wait=wait, progress=progress, timeout=timeout)


@click.command("download-coco")
@click.option("--split", type=click.Choice(["val2017", "train2017"]), default="val2017",
              show_default=True)
@click.option("--dest", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Target folder (default: CLIPSEEK_HOME/coco).")
@click.option("--mirror", default=None, help="Base URL of a COCO mirror.")
@click.option("--keep-archives", is_flag=True, help="Keep the zip files after extracting.")
@pass_context
def download_coco_command(ctx: Context, split: str, dest: Path | None, mirror: str | None,
                          keep_archives: bool) -> None:
    """Download MS-COCO 2017 images and captions (resumes after interruptions)."""
    target = dest or ctx.settings.home / "coco"
    with StageBars() as bars:
        images, captions = download_coco(
            split, target, base_url=mirror or COCO_BASE_URL, keep_archives=keep_archives,
            on_download=lambda name, got, size: bars.show(f"Downloading {name}", got, size, unit="B",
                                                          unit_scale=True, unit_divisor=1024),
            on_extract=lambda name, done, size: bars.show(f"Extracting {name}", done, size, unit="file"))
    click.echo(f"Images in {images}, captions in {captions}.")
    click.echo(f"Next: clipseek ingest-coco --images {images} --annotations {captions}")


@click.command()
@import_options
@pass_context
def samples(ctx: Context, inline: bool, wait: bool, timeout: float, progress: bool) -> None:
    """Register and index the sample photos that ship with ClipSeek."""
    candidates = write_sample_photos(ctx.settings.home / "samples")
    import_candidates(ctx, candidates, inline=inline, wait=wait, progress=progress, timeout=timeout)


@click.command()
@click.option("--stale", is_flag=True,
              help="Queue again every waiting image that no queued task and no live worker holds "
                   "(after Redis lost its queue, say).")
@click.option("--older-than", type=int, default=None,
              help="With --stale: instead, every image waiting longer than this many seconds.")
@click.option("--failed", is_flag=True, help="Try failed images again.")
@click.option("--model", default=None, help="Embed every image with this model (e.g. ViT-B-16/openai).")
@click.option("--metadata", is_flag=True,
              help="Read EXIF facts (date, camera, place) into images registered without them.")
@click.option("--captions", is_flag=True,
              help="Give images without captions those of their file name and EXIF/XMP text.")
@click.option("--ocr", is_flag=True,
              help="Read the words in every indexed picture not read yet: those indexed before, "
                   "skipped while reading was off, or whose reading failed.")
@click.option("--wait", is_flag=True, help="Wait until the workers are done.")
@pass_context
def reindex(ctx: Context, stale: bool, older_than: int | None, failed: bool, model: str | None,
            metadata: bool, captions: bool, ocr: bool, wait: bool) -> None:
    """Queue images again: lost ones, failed ones, all of them for another model, or to read their words."""
    if not (stale or failed or model or metadata or captions or ocr):
        raise ClipSeekError("Say what to re-index: --stale, --failed, --model MODEL, --metadata, "
                            "--captions or --ocr.")
    if metadata:
        with ctx.db.session() as session:
            read = backfill_metadata(session)
        click.echo(f"Read the EXIF facts of {read} image(s).")
    if captions:
        with ctx.db.session() as session:
            read, captioned = backfill_captions(session)
        click.echo(f"Read the caption text of {read} image(s) without captions; "
                   f"{captioned} have captions now.")
    if ocr:
        read_words_again(ctx, wait=wait)
    if not (stale or failed or model):
        return
    parse_model_id(model or ctx.model)
    with ctx.db.session() as session, queue_errors(ctx):
        queued = reindex_images(session, settings=ctx.settings, enqueue=ctx.enqueue, stale=stale,
                                older_than_s=older_than, failed=failed, model=model)
    click.echo(f"Queued {len(queued.image_ids)} image(s) in {queued.tasks} task(s) for {queued.model}.")
    if wait and queued.image_ids:
        wait_for_indexing(ctx, queued.image_ids, timeout=86400, progress=True)


def read_words_again(ctx: Context, *, wait: bool) -> None:
    """Send the pictures whose words are not read to the workers; with `wait`, show their progress."""
    if not ctx.settings.ocr:
        raise ClipSeekError("Reading words in pictures is off (CLIPSEEK_OCR=0): turn it on for the "
                            "workers and this command, then run `clipseek reindex --ocr` again.")
    with ctx.db.session() as session, queue_errors(ctx):
        ids = reread_words(session, enqueue=ctx.enqueue_reading)
    click.echo(f"Sent {len(ids)} picture(s) to be read for words.")
    if not (wait and ids):
        return
    warn_without_workers(ctx)
    with position_bar("Reading words", "img", total=len(ids), show=True) as move:
        remaining = wait_until_read(ctx.db, ids, timeout_s=86400, on_progress=lambda done: move(done, None))
    with ctx.db.session() as session:
        counts = reading_counts(session, recent_failures=0)
    click.echo(f"Done: {counts.read} picture(s) read ({counts.with_text} with text), {counts.failed} "
               f"failed" + (f", {remaining} still waiting (timed out)." if remaining else "."))


@click.command()
@click.option("--json", "as_json", is_flag=True)
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """Show the active model, counts per status and model, the queue, workers, recent failures
    and, during a switch to another model, its progress and time left."""
    depth = queue_depth(ctx.settings)
    with ctx.db.session() as session:
        found = collection_status(session, model=ctx.model, queue_depth=depth)
    if as_json:
        click.echo(json.dumps(found.to_dict(), indent=2, default=str))
        return
    random_warning(ctx)
    counts = ", ".join(f"{k} {v}" for k, v in found.by_status.items())
    click.echo(f"Active model: {found.model}")
    if found.switch is not None:
        click.echo(f"Switching to {found.switch.model}: {switch_summary(found.switch)}")
        click.echo(f"  searches use {found.model} until then, and move by themselves when every "
                   f"image is embedded (`clipseek model use {found.switch.model} --force`: now).")
    click.echo(f"Images: {found.images} ({counts})")
    click.echo(f"Searchable with {found.model}: {found.searchable}")
    for name, count in found.embeddings_by_model.items():
        click.echo(f"  embeddings from {name}: {count}")
    workers = ", ".join(w.name + (f" (indexing {len(w.image_ids)})" if w.image_ids else "")
                        for w in found.live_workers)
    click.echo(f"Queue: {found.queue_depth if found.queue_depth is not None else 'unreachable'}"
               f" task(s) waiting; workers: {workers or 'none running'}")
    for failure in found.recent_failures:
        click.echo(f"  failed #{failure.image_id} {failure.path}: {failure.error}")
    if found.reading is not None:
        click.echo(f"Words in pictures: {reading_summary(found.reading, enabled=ctx.settings.ocr)}")
        for unread in found.reading.recent_failures:
            click.echo(f"  not read #{unread.image_id} {unread.name}: {unread.error}")


def import_candidates(ctx: Context, candidates: list[Candidate], *, inline: bool, wait: bool,
                      copy: bool = False, progress: bool = True, timeout: float = 86400) -> None:
    """Register candidates, then index them here (inline) or through the workers."""
    random_warning(ctx)
    if inline:
        report(index_here(ctx, candidates, copy=copy, progress=progress))
        return
    with ctx.db.session() as session:
        unsent = pending_image_ids(session, ctx.model, statuses=(ImageStatus.REGISTERED,))
    if wait:
        warn_without_workers(ctx)  # asked before queuing: a worker busy with a batch cannot answer
    with queue_errors(ctx), counting_bar("Registering", "file", total=len(candidates),
                                         show=progress) as registered:
        summary = ingest_queued(ctx.db, candidates, settings=ctx.settings, enqueue=ctx.enqueue,
                                copy=copy, extra_ids=unsent, on_registered=registered)
    report(summary)
    ids = sorted(set(summary.registered.new_ids) | set(unsent))
    if wait and ids:
        wait_for_indexing(ctx, ids, timeout=timeout, progress=progress)
    elif ids:
        click.echo("Workers index them in the background: run `clipseek worker` if none is running; "
                   "`clipseek status` shows progress.")


def warn_without_workers(ctx: Context) -> None:
    """Say so when no worker is alive to do what the command is about to wait for."""
    with ctx.db.session() as session:
        if not any(w.alive for w in worker_states(session)):
            click.echo("No worker is running: start one with `clipseek worker` (waiting for it).", err=True)


def wait_for_indexing(ctx: Context, ids: list[int], *, timeout: float, progress: bool) -> None:
    """Show a bar until the workers have indexed (or failed) these images; fail on timeout."""
    with position_bar("Indexing", "img", total=len(ids), show=progress) as move:
        remaining = wait_until_indexed(ctx.db, ids, model=ctx.model, timeout_s=timeout,
                                       on_progress=lambda done: move(done, None))
    with ctx.db.session() as session:
        counts = count_by_status(session, ids)
    indexed, failed = counts.get(ImageStatus.INDEXED, 0), counts.get(ImageStatus.FAILED, 0)
    click.echo(f"Done: {indexed} indexed, {failed} failed"
               + (f", {remaining} still waiting (timed out)." if remaining else "."))
    if remaining:
        raise ClipSeekError(f"{remaining} image(s) were not indexed within {timeout:.0f} s; "
                            "check that a worker is running (`clipseek status`).")
