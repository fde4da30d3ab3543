"""What the commands share: the context decorator, the import options, and how results are reported."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from clipseek.cli.progress import counting_bar, position_bar
from clipseek.context import Context
from clipseek.errors import ClipSeekError
from clipseek.indexing.encoding import pending_image_ids
from clipseek.library.duplicates import look_alikes
from clipseek.library.excludes import Excludes
from clipseek.library.ingest import IngestSummary, ingest_inline, look_alike_line
from clipseek.library.register import Candidate

pass_context = click.make_pass_decorator(Context)


def random_warning(ctx: Context) -> None:
    """Warn on stderr when the active model has random weights, so rankings mean nothing."""
    if ctx.encoder.is_random:
        click.secho(f"Note: the model is {ctx.model}, which has random weights: "
                    "rankings are meaningless. `clipseek model use ViT-B-32/openai` moves "
                    "searches to real weights.", fg="yellow", err=True)


def index_here(ctx: Context, candidates: list[Candidate], *, copy: bool = False,
               progress: bool = True) -> IngestSummary:
    """Register and index candidates in this process, with what earlier imports left waiting."""
    with ctx.db.session() as session:
        waiting = pending_image_ids(session, ctx.encoder.model_id)
    with counting_bar("Registering", "file", total=len(candidates), show=progress) as registered, \
            position_bar("Indexing", "img", total=0, show=progress) as indexed:
        return ingest_inline(ctx.db, ctx.encoder, candidates, settings=ctx.settings, copy=copy,
                             extra_ids=waiting, on_registered=registered, on_indexed=indexed)


def report(summary: IngestSummary) -> None:
    """Print what an import did."""
    for line in summary.lines():
        click.echo(line)


def recover_image_store(ctx: Context) -> None:
    """Settle what an interrupted upload or import left in the image store; queue what it registers."""
    from kombu.exceptions import OperationalError as BrokerError

    from clipseek.indexing.queueing import queue_for_indexing
    from clipseek.library.store import reconcile_image_store

    settings = ctx.settings
    with ctx.db.session() as session:
        repair = reconcile_image_store(session, store=settings.image_store,
                                       max_pixels=settings.max_image_pixels)
        session.commit()
        try:
            queue_for_indexing(session, repair.registered_ids, model=ctx.model,
                               batch_size=settings.batch_size, enqueue=ctx.enqueue)
        except (BrokerError, OSError) as exc:
            click.echo(f"The recovered images are registered but not queued ({exc}); the "
                       "recovery check queues them once the broker answers.", err=True)


class queue_errors:
    """Turn a broker that cannot be reached into one sentence that says what to do."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        # Here, not at the top: kombu and redis would add a fifth of a second to every command's start.
        from kombu.exceptions import OperationalError as BrokerError
        from redis import RedisError

        if isinstance(exc, BrokerError | RedisError):
            where = self.ctx.settings.redis_url or "the embedded Redis"
            raise ClipSeekError(
                f"The images are registered, but the queue ({where}) cannot be reached ({exc}). "
                "Nothing is lost: once Redis runs again, a worker started with --beat queues them "
                "within seconds, or run `clipseek reindex --stale` (or import with --inline)."
            ) from None


def left_out_lines(*, excluded: int, litter: int, names: list[str], indent: str = "") -> list[str]:
    """The line that says what a walk left out by rule, if it left anything out."""
    if not excluded and not litter:
        return []
    shown = ", ".join(Path(name).name for name in names)
    return [f"{indent}{excluded + litter} left out ({excluded} by .clipseekignore/--exclude, {litter} "
            f"NAS/OS litter), e.g. {shown}."]


def folder_options(func: Any) -> Any:
    """The options of every command that walks folders: --exclude (repeatable) and --bring-back."""
    func = click.option("--bring-back", is_flag=True,
                        help="Register again the files of deleted pictures (and restore those in "
                             "the trash) instead of leaving them out.")(func)
    func = click.option("--exclude", "excludes", multiple=True, metavar="PATTERN",
                        callback=lambda _ctx, _param, patterns: Excludes(tuple(patterns)),
                        help="Leave out files and folders matching this gitignore-style pattern "
                             "(repeatable; a .clipseekignore in the folders is read too).")(func)
    return func


def import_options(func: Any) -> Any:
    """The options of every command that imports images: --inline, --wait, --timeout, --progress."""
    func = click.option("--progress/--no-progress", default=True, help="Show progress bars.")(func)
    func = click.option("--timeout", default=86400.0, help="Seconds --wait waits at most.")(func)
    func = click.option("--wait", is_flag=True, help="Wait until the workers have indexed them.")(func)
    func = click.option("--inline", is_flag=True,
                        help="Index in this process instead of through the workers.")(func)
    return func


def report_look_alikes(ctx: Context, image_ids: Sequence[int], *, indent: str = "") -> None:
    """Say how many of these newly indexed pictures look like pictures already there."""
    with ctx.db.session() as session:
        count = len(look_alikes(session, image_ids, distance=ctx.settings.duplicate_distance))
    if count:
        click.echo(indent + look_alike_line(count))
