"""Commands about the collection: ingest, ingest-coco, download-coco, samples, reindex and status."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clipseek.cli.base import (
    folder_options,
    import_options,
    index_here,
    left_out_lines,
    pass_context,
    queue_errors,
    random_warning,
    report,
    report_look_alikes,
)
from clipseek.cli.library import sync_paths
from clipseek.cli.progress import StageBars, counting_bar, position_bar
from clipseek.clip.encoder import parse_model_id
from clipseek.context import Context
from clipseek.errors import ClipSeekError
from clipseek.indexing.broker import queue_depth
from clipseek.indexing.encoding import pending_image_ids
from clipseek.indexing.hash_pairs import count_waiting_pairs
from clipseek.indexing.heartbeats import worker_states
from clipseek.indexing.queueing import wait_until_indexed
from clipseek.indexing.reading import reading_counts, wait_until_read
from clipseek.library.coco import COCO_BASE_URL, coco_candidates, download_coco
from clipseek.library.collections import collection_name, folder_collection
from clipseek.library.duplicates import count_unhashed
from clipseek.library.excludes import Excludes
from clipseek.library.forgotten import forgotten_among, remember_again
from clipseek.library.ingest import decode_pool, ingest_queued
from clipseek.library.places import NO_PLACE_REASON
from clipseek.library.register import Candidate, discover_files
from clipseek.library.samples import write_sample_photos
from clipseek.library.scan import FolderScan
from clipseek.library.sync import is_known_folder
from clipseek.store.tables import ImageStatus
from clipseek.upkeep.reindexing import (
    backfill_captions,
    backfill_hashes,
    backfill_metadata,
    backfill_pairs,
    backfill_places,
    reindex_images,
    reread_words,
)
from clipseek.upkeep.status import (
    collection_status,
    count_by_status,
    hashes_summary,
    people_summary,
    places_summary,
    reading_summary,
    switch_summary,
)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--copy", is_flag=True, help="Copy the files into ClipSeek's image store.")
@click.option("--collection", "collection_option", default=None,
              help="Put the images in this collection (default: the name of each folder given).")
@click.option("--all-files", is_flag=True, help="Read every file in the folders, whatever its name says.")
@folder_options
@import_options
@pass_context
def ingest(ctx: Context, paths: tuple[Path, ...], copy: bool, collection_option: str | None,
           all_files: bool, excludes: Excludes, bring_back: bool, inline: bool, wait: bool,
           timeout: float, progress: bool) -> None:
    """Register image files and folders (recursively) and index them.

    A folder imported before (and not copied) is synced instead: moved, changed and deleted
    files are recognised as such, not registered again. Files of deleted pictures, NAS/OS
    litter and what --exclude or a .clipseekignore names are left out of folders.
    """
    chosen = None if collection_option is None else collection_name(collection_option)
    with ctx.db.session() as session:
        known = tuple(p for p in paths if not copy and p.is_dir() and is_known_folder(session, p))
    if known:
        queued = sync_paths(ctx, known, all_files=all_files, allow_missing_root=False, inline=inline,
                            collection=chosen, excludes=excludes, bring_back=bring_back)
        if wait and queued:
            wait_for_indexing(ctx, queued, timeout=timeout, progress=progress)
        paths = tuple(p for p in paths if p not in known)
        if not paths:
            return
    scans: list[FolderScan] = []
    candidates = []
    for path in paths:
        try:
            files = list(discover_files([path], all_files=all_files, excludes=excludes,
                                        on_scan=lambda _folder, scan: scans.append(scan)))
        except FileNotFoundError as exc:
            raise ClipSeekError(str(exc)) from None
        name = chosen or folder_collection(path)
        candidates += [Candidate(path=p, source="folder", collection=name) for p in files]
    candidates = _leave_out_forgotten(ctx, candidates, named=paths, bring_back=bring_back)
    for line in _walk_lines(scans):
        click.echo(line)
    import_candidates(ctx, candidates, inline=inline, wait=wait, copy=copy, progress=progress,
                      timeout=timeout)


def _leave_out_forgotten(ctx: Context, candidates: list[Candidate], *, named: tuple[Path, ...],
                         bring_back: bool) -> list[Candidate]:
    """Files of pictures deleted before are left out of folders, unless `bring_back`; a file
    named on its own is always registered again."""
    explicit = {str(p.absolute()) for p in named if not p.is_dir()}
    with ctx.db.session() as session:
        forgotten = forgotten_among(session, [str(c.path) for c in candidates])
        again = forgotten if bring_back else forgotten & explicit
        remember_again(session, paths=again)
        session.commit()
    left = forgotten - again
    if left:
        click.echo(f"Left out {len(left)} file(s) of deleted pictures; --bring-back registers them again.")
    return [c for c in candidates if str(c.path) not in left]


def _walk_lines(scans: list[FolderScan]) -> list[str]:
    """What the walks of the folders left out, as lines for a person."""
    lines = left_out_lines(excluded=sum(s.excluded for s in scans), litter=sum(s.litter for s in scans),
                           names=[name for s in scans for name in s.left_out_names][:5])
    skipped = sum(s.skipped_by_extension for s in scans)
    if skipped:
        names = [Path(name).name for s in scans for name in s.skipped_names][:5]
        lines.append(f"Skipped {skipped} file(s) not named like images, e.g. " + ", ".join(names)
                     + " (--all-files reads them all).")
    unreadable = {path: why for s in scans for path, why in s.unreadable.items()}
    for path, why in sorted(unreadable.items())[:10]:
        lines.append(f"  cannot read {path}: {why}")
    return lines


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
@click.option("--hashes", is_flag=True,
              help="Compute the perceptual hash (for near-duplicates) of images indexed without one, "
                   "and look up the look-alikes of every hash not yet compared with the others.")
@click.option("--places", is_flag=True,
              help="Name the place (city, region, country) of pictures whose GPS was never looked up.")
@click.option("--ocr", is_flag=True,
              help="Read the words in every indexed picture not read yet: those indexed before, "
                   "skipped while reading was off, or whose reading failed.")
@click.option("--wait", is_flag=True, help="Wait until the workers are done.")
@pass_context
def reindex(ctx: Context, stale: bool, older_than: int | None, failed: bool, model: str | None,
            metadata: bool, captions: bool, hashes: bool, places: bool, ocr: bool, wait: bool) -> None:
    """Queue images again: lost ones, failed ones, all of them for another model, or to read
    their words; or fill in what older images lack (EXIF facts, captions, hashes, places)."""
    if not (stale or failed or model or metadata or captions or hashes or places or ocr):
        raise ClipSeekError("Say what to re-index: --stale, --failed, --model MODEL, --metadata, "
                            "--captions, --hashes, --places or --ocr.")
    if metadata:
        with ctx.db.session() as session:
            read = backfill_metadata(session)
        click.echo(f"Read the EXIF facts of {read} image(s).")
    if captions:
        with ctx.db.session() as session:
            read, captioned = backfill_captions(session)
        click.echo(f"Read the caption text of {read} image(s) without captions; "
                   f"{captioned} have captions now.")
    if hashes:
        backfill_hashes_here(ctx)
    if places:
        with ctx.db.session() as session, position_bar("Placing", "img", total=None, show=True) as move:
            placed = backfill_places(session, on_batch=move)
        click.echo(f"Looked up the place of {placed.looked_at} image(s): {placed.placed} placed, "
                   f"{placed.no_place} with {NO_PLACE_REASON}"
                   + (f", {placed.dropped} whose coordinates name no point (dropped)." if placed.dropped
                      else "."))
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


def backfill_hashes_here(ctx: Context) -> None:
    """Hash the indexed images that have no perceptual hash, with a progress bar."""
    with ctx.db.session() as session:
        total = count_unhashed(session)
    with decode_pool(ctx.settings) as pool, ctx.db.session() as session, \
            position_bar("Hashing", "img", total=total, show=True) as move:
        hashed, unreadable = backfill_hashes(session, max_pixels=ctx.settings.max_image_pixels, pool=pool,
                                             on_batch=lambda done: move(done, max(done, total)))
    gone = f"; {unreadable} could not be read (their files are gone or broken)" if unreadable else ""
    click.echo(f"Computed the perceptual hash of {hashed} image(s){gone}.")
    with ctx.db.session() as session:
        waiting = count_waiting_pairs(session)
    if not waiting:
        return
    with ctx.db.session() as session, position_bar("Pairing", "img", total=waiting, show=True) as move:
        paired = backfill_pairs(session, on_batch=lambda done: move(done, max(done, waiting)))
    click.echo(f"Compared the hashes of {paired} earlier hashed image(s) with the others.")


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
        found = collection_status(session, model=ctx.model, queue_depth=depth,
                                  replicas=ctx.db.replica_states(), settings=ctx.settings)
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
    click.echo(f"Images: {found.images} ({counts})" + (f"; {found.in_trash} in the trash"
                                                       if found.in_trash else ""))
    click.echo(f"Searchable with {found.model}: {found.searchable}")
    for name, count in found.embeddings_by_model.items():
        click.echo(f"  embeddings from {name}: {count}")
    workers = ", ".join(w.name + (f" (indexing {len(w.image_ids)})" if w.image_ids else "")
                        for w in found.live_workers)
    click.echo(f"Queue: {found.queue_depth if found.queue_depth is not None else 'unreachable'}"
               f" task(s) waiting; workers: {workers or 'none running'}")
    for failure in found.recent_failures:
        click.echo(f"  failed #{failure.image_id} {failure.path}: {failure.error}")
    for replica in found.replicas:
        click.echo(f"Replica {replica.summary()}")
    click.echo(f"Places: {places_summary(found.places)}")
    for unplaced in found.places.recent_no_place:
        click.echo(f"  no place #{unplaced.image_id} {unplaced.name} "
                   f"({unplaced.latitude:.5f}, {unplaced.longitude:.5f})")
    click.echo(f"Near-duplicates: {hashes_summary(found.hashes)}")
    if found.reading is not None:
        click.echo(f"Words in pictures: {reading_summary(found.reading, enabled=ctx.settings.ocr)}")
        for unread in found.reading.recent_failures:
            click.echo(f"  not read #{unread.image_id} {unread.name}: {unread.error}")
    if found.people is not None:
        click.echo(f"People: {people_summary(found.people)}")


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
        report_look_alikes(ctx, summary.registered.new_ids)
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
