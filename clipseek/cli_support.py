"""Shared pieces of the command line: the context decorator, import flow, waiting and reports."""

from __future__ import annotations

from typing import Any

import click

from clipseek.catalog import Candidate
from clipseek.context import Context
from clipseek.errors import ClipSeekError
from clipseek.ingest import IngestSummary, ingest_inline

pass_context = click.make_pass_decorator(Context)


def random_warning(ctx: Context) -> None:
    if ctx.encoder.is_random:
        click.secho(f"Note: the model is {ctx.settings.model}, which has random weights: "
                    "rankings are meaningless. Set CLIPSEEK_MODEL=ViT-B-32/openai for real "
                    "search.", fg="yellow", err=True)


def pending_ids(ctx: Context) -> list[int]:
    from clipseek.indexing import pending_image_ids

    with ctx.db.session() as session:
        return pending_image_ids(session, ctx.encoder.model_id)


def report(summary: IngestSummary) -> None:
    for line in summary.lines():
        click.echo(line)



def import_candidates(ctx: Context, candidates: list[Candidate], *, inline: bool, wait: bool,
                      copy: bool = False, progress: bool = True, timeout: float = 86400) -> None:
    """Register candidates, then index them here (inline) or through the workers."""
    from clipseek.indexing import pending_image_ids
    from clipseek.ingest import ingest_queued

    random_warning(ctx)
    if inline:
        report(ingest_inline(ctx.db, ctx.encoder, candidates, settings=ctx.settings, copy=copy,
                              total=len(candidates), progress=progress, extra_ids=pending_ids(ctx)))
        return
    with ctx.db.session() as session:
        unsent = pending_image_ids(session, ctx.settings.model, statuses=("registered",))
    if wait:
        warn_without_workers(ctx)  # asked before queuing: a worker busy with a batch cannot answer
    with queue_errors(ctx):
        summary = ingest_queued(ctx.db, candidates, settings=ctx.settings, enqueue=ctx.enqueue,
                                copy=copy, total=len(candidates), progress=progress, extra_ids=unsent)
    report(summary)
    ids = sorted(set(summary.registered.new_ids) | set(unsent))
    if wait and ids:
        wait_for_indexing(ctx, ids, timeout=timeout, progress=progress)
    elif ids:
        click.echo("Workers index them in the background: run `clipseek worker` if none is running; "
                   "`clipseek status` shows progress.")


def recover_image_store(ctx: Context) -> None:
    """Settle what an interrupted upload or import left in the image store; queue what it registers."""
    from kombu.exceptions import OperationalError as BrokerError

    from clipseek.image_store import reconcile_image_store
    from clipseek.queueing import queue_for_indexing

    settings = ctx.settings
    with ctx.db.session() as session:
        repair = reconcile_image_store(session, store=settings.image_store,
                                       max_pixels=settings.max_image_pixels)
        session.commit()
        try:
            queue_for_indexing(session, repair.registered_ids, model=settings.model,
                               batch_size=settings.batch_size, enqueue=ctx.enqueue)
        except (BrokerError, OSError) as exc:
            click.echo(f"The recovered images are registered but not queued ({exc}); the "
                       "periodic stale check will queue them.", err=True)


class queue_errors:
    """Turn a broker that cannot be reached into one sentence that says what to do."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        from kombu.exceptions import OperationalError as BrokerError
        from redis import RedisError

        if isinstance(exc, BrokerError | RedisError):
            where = self.ctx.settings.redis_url or "the embedded Redis"
            raise ClipSeekError(
                f"The images are registered, but the queue ({where}) cannot be reached ({exc}). "
                "Nothing is lost: once Redis runs again, a worker started with --beat queues them "
                "within seconds, or run `clipseek reindex --stale` (or import with --inline)."
            ) from None


def warn_without_workers(ctx: Context) -> None:
    from clipseek.workers import worker_states

    with ctx.db.session() as session:
        if not any(w.alive for w in worker_states(session)):
            click.echo("No worker is running: start one with `clipseek worker` (waiting for it).", err=True)


def wait_for_indexing(ctx: Context, ids: list[int], *, timeout: float, progress: bool) -> None:
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


def import_options(func: Any) -> Any:
    func = click.option("--progress/--no-progress", default=True, help="Show progress bars.")(func)
    func = click.option("--timeout", default=86400.0, help="Seconds --wait waits at most.")(func)
    func = click.option("--wait", is_flag=True, help="Wait until the workers have indexed them.")(func)
    func = click.option("--inline", is_flag=True,
                        help="Index in this process instead of through the workers.")(func)
    return func


