"""The `clipseek` command line: thin adapters over the service functions."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from clipseek.catalog import Candidate, discover_files
from clipseek.context import Context
from clipseek.errors import ClipSeekError
from clipseek.ingest import IngestSummary, ingest_inline
from clipseek.settings import Settings

pass_context = click.make_pass_decorator(Context)


def _random_warning(ctx: Context) -> None:
    if ctx.encoder.is_random:
        click.secho(f"Note: the model is {ctx.settings.model}, which has random weights: "
                    "rankings are meaningless. Set CLIPSEEK_MODEL=ViT-B-32/openai for real "
                    "search.", fg="yellow", err=True)


def _pending_ids(ctx: Context) -> list[int]:
    from clipseek.indexing import pending_image_ids

    with ctx.db.session() as session:
        return pending_image_ids(session, ctx.encoder.model_id)


def _report(summary: IngestSummary) -> None:
    for line in summary.lines():
        click.echo(line)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(click_ctx: click.Context) -> None:
    """ClipSeek: semantic search over your own images."""
    context = Context(Settings.from_env())
    click_ctx.obj = context
    click_ctx.call_on_close(context.close)


def _import(ctx: Context, candidates: list[Candidate], *, inline: bool, wait: bool, copy: bool = False,
            progress: bool = True, timeout: float = 86400) -> None:
    """Register candidates, then index them here (inline) or through the workers."""
    from clipseek.indexing import pending_image_ids
    from clipseek.ingest import ingest_queued

    _random_warning(ctx)
    if inline:
        _report(ingest_inline(ctx.db, ctx.encoder, candidates, settings=ctx.settings, copy=copy,
                              total=len(candidates), progress=progress, extra_ids=_pending_ids(ctx)))
        return
    with ctx.db.session() as session:
        unsent = pending_image_ids(session, ctx.settings.model, statuses=("registered",))
    if wait:
        _warn_without_workers(ctx)  # asked before queuing: a worker busy with a batch cannot answer
    with _queue_errors(ctx):
        summary = ingest_queued(ctx.db, candidates, settings=ctx.settings, enqueue=ctx.enqueue,
                                copy=copy, total=len(candidates), progress=progress, extra_ids=unsent)
    _report(summary)
    ids = sorted(set(summary.registered.new_ids) | set(unsent))
    if wait and ids:
        _wait(ctx, ids, timeout=timeout, progress=progress)
    elif ids:
        click.echo("Workers index them in the background: run `clipseek worker` if none is running; "
                   "`clipseek status` shows progress.")


class _queue_errors:
    """Turn a broker that cannot be reached into one sentence that says what to do."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        from kombu.exceptions import OperationalError as BrokerError

        if isinstance(exc, BrokerError):
            where = self.ctx.settings.redis_url or "the embedded Redis"
            raise ClipSeekError(
                f"The images are registered, but the queue ({where}) cannot be reached ({exc}). "
                "Start Redis, then run `clipseek reindex --stale`, or import with --inline."
            ) from None


def _warn_without_workers(ctx: Context) -> None:
    from kombu.exceptions import OperationalError as BrokerError

    with contextlib.suppress(BrokerError, OSError):
        if not ctx.celery.control.ping(timeout=1.0):
            click.echo("No worker answers: start one with `clipseek worker` (waiting for it).", err=True)


def _wait(ctx: Context, ids: list[int], *, timeout: float, progress: bool) -> None:
    from tqdm import tqdm

    from clipseek.queueing import wait_until_indexed

    with tqdm(total=len(ids), desc="Indexing", unit="img", disable=not progress, leave=False) as bar:
        def update(done: int) -> None:
            bar.n = done
            bar.refresh()

        remaining = wait_until_indexed(ctx.db, ids, model=ctx.settings.model, timeout_s=timeout,
                                       on_progress=update)
    with ctx.db.session() as session:
        from sqlalchemy import func, select

        from clipseek.models import Image

        counts = dict(session.execute(select(Image.status, func.count()).where(Image.id.in_(ids))
                                      .group_by(Image.status)).all())
    click.echo(f"Done: {counts.get('indexed', 0)} indexed, {counts.get('failed', 0)} failed"
               + (f", {remaining} still waiting (timed out)." if remaining else "."))
    if remaining:
        raise ClipSeekError(f"{remaining} image(s) were not indexed within {timeout:.0f} s; "
                            "check that a worker is running (`clipseek status`).")


def _import_options(func: Any) -> Any:
    func = click.option("--progress/--no-progress", default=True, help="Show progress bars.")(func)
    func = click.option("--timeout", default=86400.0, help="Seconds --wait waits at most.")(func)
    func = click.option("--wait", is_flag=True, help="Wait until the workers have indexed them.")(func)
    func = click.option("--inline", is_flag=True,
                        help="Index in this process instead of through the workers.")(func)
    return func


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--copy", is_flag=True, help="Copy the files into ClipSeek's image store.")
@_import_options
@pass_context
def ingest(ctx: Context, paths: tuple[Path, ...], copy: bool, inline: bool, wait: bool, timeout: float,
           progress: bool) -> None:
    """Register image files and folders (recursively) and index them."""
    try:
        files = list(discover_files(paths))
    except FileNotFoundError as exc:
        raise ClipSeekError(str(exc)) from None
    candidates = [Candidate(path=p, source="folder", collection=str(p.parent)) for p in files]
    _import(ctx, candidates, inline=inline, wait=wait, copy=copy, progress=progress, timeout=timeout)


@cli.command("ingest-coco")
@click.option("--images", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder of COCO images, e.g. train2017/.")
@click.option("--annotations", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="captions_train2017.json or captions_val2017.json.")
@_import_options
@pass_context
def ingest_coco(ctx: Context, images: Path, annotations: Path, inline: bool, wait: bool, timeout: float,
                progress: bool) -> None:
    """Register MS-COCO 2017 images with their captions and index them."""
    from clipseek.coco import coco_candidates

    candidates, missing = coco_candidates(images, annotations)
    if missing:
        click.echo(f"{missing} annotated image(s) are not in {images}; they are skipped.", err=True)
    _import(ctx, candidates, inline=inline, wait=wait, progress=progress, timeout=timeout)


@cli.command("download-coco")
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
    from clipseek.coco import COCO_BASE_URL, download_coco

    target = dest or ctx.settings.home / "coco"
    images, captions = download_coco(split, target, base_url=mirror or COCO_BASE_URL,
                                     keep_archives=keep_archives)
    click.echo(f"Images in {images}, captions in {captions}.")
    click.echo(f"Next: clipseek ingest-coco --images {images} --annotations {captions}")


@cli.command()
@click.argument("query")
@click.option("--top-k", "-k", default=5, show_default=True, help="Results per page.")
@click.option("--page", "-p", default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--save", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also draw the results into this PNG file.")
@pass_context
def search(ctx: Context, query: str, top_k: int, page: int, as_json: bool,
           save: Path | None) -> None:
    """Find the stored images that best match a description."""
    from clipseek.display import render_grid
    from clipseek.search import search_images

    with ctx.db.session() as session:
        results = search_images(session, ctx.encoder, query, page=page, per_page=top_k,
                                ef_search=ctx.settings.ef_search)
    if as_json:
        click.echo(json.dumps(results.to_dict(), indent=2, ensure_ascii=False))
    else:
        _random_warning(ctx)
        if not results.total:
            click.echo("No indexed images yet: add some with `clipseek ingest PATH`.")
        click.echo(f"Page {results.page} of {results.pages} ({results.total} images searched):")
        for item in results.to_dict()["results"]:  # type: ignore[attr-defined]
            caption = f"  “{item['captions'][0]}”" if item["captions"] else ""
            click.echo(f"{item['rank']:>4}. {item['score']:.4f}  {item['path']}{caption}")
    if save:
        click.echo(f"Saved {render_grid(results, save_to=save)}", err=True)


@cli.command()
@_import_options
@pass_context
def samples(ctx: Context, inline: bool, wait: bool, timeout: float, progress: bool) -> None:
    """Register and index the sample photos that ship with ClipSeek."""
    from clipseek.samples import write_sample_photos

    candidates = write_sample_photos(ctx.settings.home / "samples")
    _import(ctx, candidates, inline=inline, wait=wait, progress=progress, timeout=timeout)


@cli.command()
@click.option("--beat/--no-beat", default=True,
              help="Also re-queue stale images periodically (one worker with --beat is enough).")
@click.option("--loglevel", default="INFO", show_default=True)
@pass_context
def worker(ctx: Context, beat: bool, loglevel: str) -> None:
    """Run a background worker that indexes queued images (run several to go faster)."""
    import os

    from worker.app import QUEUE

    argv = ["worker", "--pool=solo", f"--queues={QUEUE}", f"--loglevel={loglevel}",
            f"--hostname=clipseek-{os.getpid()}@%h", "--without-gossip", "--without-mingle"]
    if beat:
        argv += ["--beat", f"--schedule={ctx.settings.home / 'celerybeat-schedule'}"]
    ctx.settings.home.mkdir(parents=True, exist_ok=True)
    ctx.db.ping()  # fail fast, with a readable message, when the database is unreachable
    ctx.celery.worker_main(argv)


@cli.command()
@click.option("--loglevel", default="INFO", show_default=True)
@pass_context
def beat(ctx: Context, loglevel: str) -> None:
    """Run only the scheduler that re-queues stale images (when workers run with --no-beat)."""
    ctx.settings.home.mkdir(parents=True, exist_ok=True)
    ctx.celery.Beat(schedule=str(ctx.settings.home / "celerybeat-schedule"), loglevel=loglevel).run()


@cli.command("fetch-weights")
@pass_context
def fetch_weights(ctx: Context) -> None:
    """Download and verify the configured model's weights now (e.g. while building an image)."""
    from clipseek.encoder import parse_model_id
    from clipseek.weights import resolve_weights

    arch, kind = parse_model_id(ctx.settings.model)
    if kind == "random":
        click.echo(f"{ctx.settings.model} needs no weights.")
        return
    path = resolve_weights(arch, weights=ctx.settings.weights,
                           expected_sha256=ctx.settings.weights_sha256,
                           cache_dir=ctx.settings.model_cache, allow_download=not ctx.settings.offline)
    click.echo(f"Verified weights: {path}")


@cli.command()
@click.option("--stale", is_flag=True, help="Re-queue images registered or queued too long ago.")
@click.option("--older-than", type=int, default=None,
              help="With --stale: seconds after which an image counts as stale (default "
                   "CLIPSEEK_STALE_AFTER).")
@click.option("--failed", is_flag=True, help="Try failed images again.")
@click.option("--model", default=None, help="Embed every image with this model (e.g. ViT-B-16/openai).")
@click.option("--wait", is_flag=True, help="Wait until the workers are done.")
@pass_context
def reindex(ctx: Context, stale: bool, older_than: int | None, failed: bool, model: str | None,
            wait: bool) -> None:
    """Queue images again: stale ones, failed ones, or all of them for another model."""
    from clipseek.encoder import parse_model_id
    from clipseek.queueing import (
        ids_without,
        queue_for_indexing,
        reset_failed,
        stale_image_ids,
        touch,
    )

    if not (stale or failed or model):
        raise ClipSeekError("Say what to re-index: --stale, --failed or --model MODEL.")
    target = model or ctx.settings.model
    parse_model_id(target)
    ids: set[int] = set()
    with ctx.db.session() as session, _queue_errors(ctx):
        if failed:
            ids |= set(reset_failed(session))
        if stale:
            ids |= set(stale_image_ids(session, model=target,
                                       older_than_s=ctx.settings.stale_after_s if older_than is None
                                       else older_than))
        if model:
            ids |= set(ids_without(session, model=model))
        touch(session, sorted(ids))
        batches = queue_for_indexing(session, sorted(ids), model=target, mark=model is None,
                                     batch_size=ctx.settings.batch_size, enqueue=ctx.enqueue)
    click.echo(f"Queued {len(ids)} image(s) in {batches} batch(es) for {target}.")
    if wait and ids:
        _wait(ctx, sorted(ids), timeout=86400, progress=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """Show counts per status and model, the queue, workers and recent failures."""
    from clipseek.status import collection_status

    with ctx.db.session() as session:
        report = collection_status(session, model=ctx.settings.model)
    from worker.app import queue_report

    report.update(queue_report(ctx.celery))
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    _random_warning(ctx)
    counts = ", ".join(f"{k} {v}" for k, v in report["by_status"].items())
    click.echo(f"Images: {report['images']} ({counts})")
    click.echo(f"Searchable with {report['model']}: {report['searchable']}")
    for name, count in report["embeddings_by_model"].items():
        click.echo(f"  embeddings from {name}: {count}")
    click.echo(f"Queue: {report['queue_depth'] if report['queue_depth'] is not None else 'unreachable'}"
               f" batch(es) waiting; workers: {', '.join(report['workers']) or 'none answering'}")
    for failure in report["recent_failures"]:
        click.echo(f"  failed #{failure['image_id']} {failure['path']}: {failure['error']}")


@cli.command()
@click.argument("query", default="a cat")
@pass_context
def demo(ctx: Context, query: str) -> None:
    """Index the sample photos and answer one search: a first look at ClipSeek."""
    from clipseek.samples import write_sample_photos
    from clipseek.search import search_images

    ctx.encoder.load()  # stop at once, before any work, when the weights are missing
    _random_warning(ctx)
    candidates = write_sample_photos(ctx.settings.home / "samples")
    _report(ingest_inline(ctx.db, ctx.encoder, candidates, settings=ctx.settings,
                          total=len(candidates), extra_ids=_pending_ids(ctx)))
    with ctx.db.session() as session:
        results = search_images(session, ctx.encoder, query, per_page=5,
                                ef_search=ctx.settings.ef_search)
    click.echo(f"Top 5 of {results.total} for “{results.query}”:")
    for item in results.to_dict()["results"]:  # type: ignore[attr-defined]
        click.echo(f"{item['rank']:>4}. {item['score']:.4f}  {item['path']}")
    click.echo(f"Database: {ctx.db.url}  (try: clipseek search \"a rocket\")")


@cli.command()
@click.option("--host", default=None, help="Address to listen on (default CLIPSEEK_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default CLIPSEEK_PORT, 8000).")
@click.option("--samples/--no-samples", default=True,
              help="Register the bundled sample photos when the collection is empty.")
@click.option("--worker/--no-worker", "with_worker", default=True,
              help="Start a background worker too.")
@pass_context
def up(ctx: Context, host: str | None, port: int | None, samples: bool, with_worker: bool) -> None:
    """Run everything: database, queue, a worker and the web app; Ctrl-C stops it all."""
    from sqlalchemy import func, select

    from clipseek.ingest import ingest_queued
    from clipseek.launcher import Services, check_port_free, serve_until_stopped, start_worker, stop_process
    from clipseek.models import Image
    from clipseek.samples import write_sample_photos

    host = host or ctx.settings.web_host
    port = port or ctx.settings.web_port
    check_port_free(host, port)
    ctx.encoder.load()  # stop at once, before starting anything, when the weights are missing
    _random_warning(ctx)
    services = Services(ctx)
    worker_process = None
    try:
        services.start(click.echo)
        with ctx.db.session() as session:
            empty = not session.scalar(select(func.count()).select_from(Image))
        if samples and empty:
            candidates = write_sample_photos(ctx.settings.home / "samples")
            with _queue_errors(ctx):
                summary = ingest_queued(ctx.db, candidates, settings=ctx.settings, enqueue=ctx.enqueue,
                                        total=len(candidates), progress=False)
            click.echo(f"Registered {summary.queued} sample photos; the worker is indexing them.")
        if with_worker:
            worker_process = start_worker()
        serve_until_stopped(ctx, host, port, click.echo)
    finally:
        click.echo("Stopping…")
        if worker_process is not None:
            stop_process(worker_process)
        services.stop()
        click.echo("Stopped.")


@cli.group()
def db() -> None:
    """Manage the database."""


@db.command()
@pass_context
def upgrade(ctx: Context) -> None:
    """Apply pending schema migrations."""
    from clipseek.db import database_url, upgrade_schema

    upgrade_schema(database_url(ctx.settings))
    click.echo("The database schema is up to date.")


@db.command()
@click.option("--psql", is_flag=True, help="Print it in libpq form, for psql.")
@pass_context
def url(ctx: Context, psql: bool) -> None:
    """Print the database URL (start the embedded server if needed)."""
    from sqlalchemy.engine import make_url

    from clipseek.db import database_url

    address = database_url(ctx.settings)
    if psql:
        address = make_url(address).set(drivername="postgresql").render_as_string(
            hide_password=False)
    click.echo(address)


@db.command()
@pass_context
def stop(ctx: Context) -> None:
    """Stop the embedded PostgreSQL server."""
    from clipseek.embedded_db import EmbeddedPostgres

    if ctx.settings.database_url:
        raise ClipSeekError("DATABASE_URL is set: ClipSeek does not manage that server.")
    was_running = EmbeddedPostgres(ctx.settings.pgdata).stop()
    click.echo("Stopped the embedded PostgreSQL." if was_running else "It was not running.")


def main(argv: list[str] | None = None) -> Any:
    """Entry point: run the CLI and turn ClipSeek errors into one readable line."""
    try:
        return cli.main(args=argv, prog_name="clipseek", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ClipSeekError as exc:
        click.secho(f"Error: {exc}", fg="red", err=True)
        sys.exit(1)
