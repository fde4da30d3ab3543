"""Commands that run or manage services: worker, beat, reindex, status, up, weights, db."""

from __future__ import annotations

import json

import click

from clipseek.cli_support import (
    pass_context,
    queue_errors,
    random_warning,
    recover_image_store,
    wait_for_indexing,
)
from clipseek.context import Context
from clipseek.errors import ClipSeekError


@click.command()
@click.option("--beat/--no-beat", default=True,
              help="Also run the recovery checks that queue lost work again (any number of workers "
                   "may; one at a time does).")
@click.option("--loglevel", default="INFO", show_default=True)
@pass_context
def worker(ctx: Context, beat: bool, loglevel: str) -> None:
    """Run a background worker that indexes queued images (run several to go faster)."""
    from worker.app import run_worker

    ctx.settings.home.mkdir(parents=True, exist_ok=True)
    ctx.db.ping()  # fail fast, with a readable message, when the database is unreachable
    recover_image_store(ctx)
    run_worker(ctx, beat=beat, loglevel=loglevel)


@click.command()
@pass_context
def beat(ctx: Context) -> None:
    """Run only the recovery checks (when every worker runs with --no-beat); Ctrl-C stops."""
    import logging
    import os
    import socket

    from clipseek.recovery import scheduler_for

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    ctx.db.ping()
    scheduler = scheduler_for(ctx, name=f"scheduler-{os.getpid()}@{socket.gethostname()}")
    click.echo("Checking for lost work every few seconds (one scheduler at a time acts).")
    try:
        scheduler.run()
    except KeyboardInterrupt:
        pass
    finally:
        scheduler.stop()


@click.command("fetch-weights")
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


@click.command()
@click.option("--stale", is_flag=True,
              help="Queue again every waiting image that no queued task and no live worker holds "
                   "(after Redis lost its queue, say).")
@click.option("--older-than", type=int, default=None,
              help="With --stale: instead, every image waiting longer than this many seconds.")
@click.option("--failed", is_flag=True, help="Try failed images again.")
@click.option("--model", default=None, help="Embed every image with this model (e.g. ViT-B-16/openai).")
@click.option("--wait", is_flag=True, help="Wait until the workers are done.")
@pass_context
def reindex(ctx: Context, stale: bool, older_than: int | None, failed: bool, model: str | None,
            wait: bool) -> None:
    """Queue images again: lost ones, failed ones, or all of them for another model."""
    from clipseek.broker import broker_client
    from clipseek.encoder import parse_model_id
    from clipseek.queueing import ids_without, reset_failed
    from clipseek.recovery import Recovery, requeue, requeue_lost, waiting_image_ids

    if not (stale or failed or model):
        raise ClipSeekError("Say what to re-index: --stale, --failed or --model MODEL.")
    target = model or ctx.settings.model
    parse_model_id(target)
    ids: set[int] = set()
    lost = Recovery()
    with ctx.db.session() as session, queue_errors(ctx):
        if stale and older_than is None:
            client = broker_client(ctx.settings, timeout_s=5.0)
            try:
                lost = requeue_lost(session, client, model=target, batch_size=ctx.settings.batch_size,
                                    enqueue=ctx.enqueue, grace_s=0)
            finally:
                client.close()
        elif stale:
            ids |= set(waiting_image_ids(session, model=target, older_than_s=older_than or 0))
        if failed:
            ids |= set(reset_failed(session))
        if model:
            ids |= set(ids_without(session, model=model))
        ids -= set(lost.requeued)
        tasks = lost.tasks + requeue(session, sorted(ids), model=target, mark=model is None,
                                     batch_size=ctx.settings.batch_size, enqueue=ctx.enqueue)
    ids |= set(lost.requeued)
    click.echo(f"Queued {len(ids)} image(s) in {tasks} task(s) for {target}.")
    if wait and ids:
        wait_for_indexing(ctx, sorted(ids), timeout=86400, progress=True)


@click.command()
@click.option("--json", "as_json", is_flag=True)
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """Show counts per status and model, the queue, workers and recent failures."""
    from clipseek.broker import queue_depth
    from clipseek.status import collection_status

    depth = queue_depth(ctx.settings)
    with ctx.db.session() as session:
        report = collection_status(session, model=ctx.settings.model, queue_depth=depth)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
        return
    random_warning(ctx)
    counts = ", ".join(f"{k} {v}" for k, v in report.by_status.items())
    click.echo(f"Images: {report.images} ({counts})")
    click.echo(f"Searchable with {report.model}: {report.searchable}")
    for name, count in report.embeddings_by_model.items():
        click.echo(f"  embeddings from {name}: {count}")
    workers = ", ".join(w.name + (f" (indexing {len(w.image_ids)})" if w.image_ids else "")
                        for w in report.live_workers)
    click.echo(f"Queue: {report.queue_depth if report.queue_depth is not None else 'unreachable'}"
               f" task(s) waiting; workers: {workers or 'none running'}")
    for failure in report.recent_failures:
        click.echo(f"  failed #{failure.image_id} {failure.path}: {failure.error}")


@click.command()
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
    from clipseek.launcher import (
        Services,
        Watchdog,
        check_port_free,
        serve_until_stopped,
        start_worker,
        stop_process,
    )
    from clipseek.models import Image
    from clipseek.samples import write_sample_photos

    host = host or ctx.settings.web_host
    port = port or ctx.settings.web_port
    # The web app decides from the address it is served on which Host names it answers to.
    ctx.settings = ctx.settings.with_changes(web_host=host, web_port=port)
    check_port_free(host, port)
    ctx.encoder.load()  # stop at once, before starting anything, when the weights are missing
    random_warning(ctx)
    services = Services(ctx)
    worker_process = None
    watchdog: Watchdog | None = None
    try:
        services.start(click.echo)
        recover_image_store(ctx)
        with ctx.db.session() as session:
            empty = not session.scalar(select(func.count()).select_from(Image))
        if samples and empty:
            candidates = write_sample_photos(ctx.settings.home / "samples")
            with queue_errors(ctx):
                summary = ingest_queued(ctx.db, candidates, settings=ctx.settings, enqueue=ctx.enqueue,
                                        total=len(candidates), progress=False)
            click.echo(f"Registered {summary.queued} sample photos; the worker is indexing them.")
        if with_worker:
            worker_process = start_worker()
        watchdog = Watchdog(services.embedded, click.echo, worker=worker_process)
        watchdog.start()
        serve_until_stopped(ctx, host, port, click.echo)
    finally:
        click.echo("Stopping…")
        if watchdog is not None:
            watchdog.stop()
            worker_process = watchdog.worker
        if worker_process is not None:
            stop_process(worker_process)
        services.stop()
        click.echo("Stopped.")


@click.group()
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




@click.command("stop")
@pass_context
def stop_all(ctx: Context) -> None:
    """Stop the embedded PostgreSQL and Redis that earlier commands left running."""
    from clipseek.embedded_db import EmbeddedPostgres
    from clipseek.embedded_redis import EmbeddedRedis

    servers: list[tuple[str, EmbeddedPostgres | EmbeddedRedis]] = []
    if not ctx.settings.database_url:
        servers.append(("PostgreSQL", EmbeddedPostgres(ctx.settings.pgdata)))
    if not ctx.settings.redis_url:
        servers.append(("Redis", EmbeddedRedis(ctx.settings.redis_folder)))
    for name, server in servers:
        stopped = server.stop()
        click.echo(f"Stopped the embedded {name}." if stopped else f"The embedded {name} was not running.")
