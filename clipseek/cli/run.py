"""Commands that run ClipSeek's processes: up, worker, beat, stop, and fetch-weights to prepare them."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import click

from clipseek.accounts import accounts_required, ready_for_accounts
from clipseek.cli.base import pass_context, queue_errors, random_warning, recover_image_store
from clipseek.cli.launcher import (
    Services,
    StartLater,
    Watchdog,
    check_port_free,
    embedded_servers,
    measure_later,
    refuse_before_starting,
    serve_until_stopped,
    server_name,
    start_measuring,
    stop_process,
    worker_later,
)
from clipseek.cli.library import start_watching
from clipseek.clip.checkpoint import checkpoint_path
from clipseek.context import Context
from clipseek.library.forgotten import any_forgotten
from clipseek.library.ingest import ingest_queued
from clipseek.library.samples import write_sample_photos
from clipseek.library.watch import FolderWatcher
from clipseek.upkeep.recovery import scheduler_for
from clipseek.upkeep.status import count_images


@click.command()
@click.option("--beat/--no-beat", default=True,
              help="Also run the recovery checks that queue lost work again (any number of workers "
                   "may; one at a time does).")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--measure/--no-measure", default=True, hidden=True,
              help="Measure this machine's precisions in the background if they are not yet.")
@pass_context
def worker(ctx: Context, beat: bool, loglevel: str, measure: bool) -> None:
    """Run a background worker that indexes queued images, then reads their words (run several: faster)."""
    # Here, not at the top: Celery takes a second to import, which other commands need not pay.
    from worker.app import run_worker

    ctx.settings.home.mkdir(parents=True, exist_ok=True)
    ctx.db.ping()  # fail fast, with a readable message, when the database is unreachable
    recover_image_store(ctx)
    # A worker started on its own (no `clipseek up`) measures in its spare time: it indexes in
    # the safe precision meanwhile, then switches.
    measuring = start_measuring() if measure and ctx.encoder.needs_measuring() else None
    try:
        run_worker(ctx, beat=beat, loglevel=loglevel)
    finally:
        if measuring is not None:
            stop_process(measuring)


@click.command()
@pass_context
def beat(ctx: Context) -> None:
    """Run only the recovery checks (when every worker runs with --no-beat); Ctrl-C stops."""
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
    if ctx.encoder.is_random:
        click.echo(f"{ctx.settings.model} needs no weights.")
        return
    click.echo(f"Verified weights: {checkpoint_path(ctx.encoder.policy)}")


@click.command()
@click.option("--host", default=None, help="Address to listen on (default CLIPSEEK_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default CLIPSEEK_PORT, 8000).")
@click.option("--samples/--no-samples", default=True,
              help="Register the bundled sample photos when the collection is empty.")
@click.option("--worker/--no-worker", "with_worker", default=True,
              help="Start a background worker too.")
@click.option("--watch", "watched", multiple=True, type=click.Path(path_type=Path),
              help="Keep this folder in sync while running (repeat for several).")
@pass_context
def up(ctx: Context, host: str | None, port: int | None, samples: bool, with_worker: bool,
       watched: tuple[Path, ...]) -> None:
    """Run everything: database, queue, a worker and the web app; Ctrl-C stops it all."""
    host = host or ctx.settings.web_host
    port = port or ctx.settings.web_port
    # The web app decides from the address it is served on which Host names it answers to.
    ctx.settings = ctx.settings.with_changes(web_host=host, web_port=port)
    check_port_free(host, port)
    # On a new home a missing account or missing weights are refused here, before the
    # embedded PostgreSQL is created (seconds) only to be left behind.
    refuse_before_starting(ctx.settings, ctx.encoder_for(ctx.settings.model))
    services = Services(ctx)
    later: list[StartLater] = []
    watchdog = Watchdog(services.embedded, click.echo)
    measuring: StartLater | None = None
    watcher: FolderWatcher | None = None
    try:
        services.start(click.echo)
        if accounts_required(ctx.settings):
            # Before the worker starts: a server bound beyond this machine needs an account.
            with ctx.db.session() as session:
                ready_for_accounts(session, ctx.settings)
            click.echo(f"Accounts: required (bound to {host}); sign in at /login.")
        recover_image_store(ctx)
        with ctx.db.session() as session:
            # A library whose pictures were all deleted is not a new one: the samples stay out.
            empty = count_images(session) == 0 and not any_forgotten(session)
        if samples and empty:
            # Before the model loads: registering needs none, and the worker starts later.
            candidates = write_sample_photos(ctx.settings.home / "samples")
            with queue_errors(ctx):
                summary = ingest_queued(ctx.db, candidates, settings=ctx.settings, enqueue=ctx.enqueue)
            click.echo(f"Registered {summary.queued} sample photos; the worker indexes them once it "
                       f"has started.")
        # The database says which model is active; missing weights stop everything here,
        # before any worker starts, and what was started is stopped below. Loading measures
        # nothing: a machine without a measured precision serves in a safe one meanwhile.
        ctx.encoder.load()
        if ctx.model != ctx.settings.model:
            click.echo(f"Searches use {ctx.model}, the database's active model; CLIPSEEK_MODEL="
                       f"{ctx.settings.model} picks only a database's first model: `clipseek model "
                       f"use {ctx.settings.model}` moves searches to it.", err=True)
        random_warning(ctx)
        if with_worker:
            later.append(worker_later(ctx, on_start=watchdog.adopt_worker))
        if ctx.encoder.precision_pending:
            measuring = measure_later(ctx)
            later.append(measuring)
            click.echo(f"Precision: {ctx.encoder.precision} for now; measuring which precision runs "
                       f"fastest in the background once the first search is answered or the worker "
                       f"is idle (a few minutes), then switching to it.")
        watchdog.start()
        if watched:
            watcher = start_watching(ctx, watched)

        def on_serving() -> None:
            # The first search comes before the worker's start and the measurement.
            for child in later:
                child.start()

        serve_until_stopped(ctx, host, port, click.echo, on_serving=on_serving)
    finally:
        click.echo("Stopping…")
        for child in later:
            child.stop()
        if watcher is not None:
            watcher.stop()
        watchdog.stop()
        if watchdog.worker is not None:
            stop_process(watchdog.worker)
        if measuring is not None and measuring.process is not None:
            stop_process(measuring.process)
        services.stop()
        click.echo("Stopped.")


@click.command("stop")
@pass_context
def stop_all(ctx: Context) -> None:
    """Stop the embedded PostgreSQL and Redis that earlier commands left running."""
    for server in embedded_servers(ctx.settings):
        name = server_name(server)
        stopped = server.stop()
        click.echo(f"Stopped the embedded {name}." if stopped else f"The embedded {name} was not running.")
