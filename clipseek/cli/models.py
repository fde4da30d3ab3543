"""`clipseek models`, `clipseek model use/drop` and `clipseek eval`: choosing a model, and measuring it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
from sqlalchemy import select

from clipseek.cli.base import pass_context, queue_errors
from clipseek.clip.catalog import lookup
from clipseek.clip.encoder import ClipEncoder
from clipseek.clip.network import missing_for
from clipseek.context import Context
from clipseek.errors import ConfigError
from clipseek.search.evaluation import (
    KS,
    EvalResult,
    Pair,
    check_evaluable,
    evaluate,
    pairs_from_file,
    stored_pairs,
)
from clipseek.store.tables import EmbeddingCount, ModelState, SearchModel
from clipseek.switching.overview import model_rows, random_model_rows
from clipseek.switching.switch import drop_model, use_model

STATE_MARKS = {ModelState.ACTIVE.value: "*", ModelState.INCOMING.value: "+", ModelState.KEPT.value: "~"}


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_context
def models(ctx: Context, as_json: bool) -> None:
    """List the known models: dimension, weights size, published COCO R@1, weights, coverage."""
    settings = ctx.settings
    with ctx.db.session() as session:
        rows = model_rows(session, cache_dir=settings.model_cache, weights=settings.weights,
                          active=settings.model)
        rows += random_model_rows(session, listed={row.model.name for row in rows})
        states = {name: state for name, state in session.execute(select(SearchModel.name, SearchModel.state))}
    if as_json:
        click.echo(json.dumps([{**row.to_dict(), "state": states.get(row.model.name)} for row in rows],
                              indent=2))
        return
    click.echo(f"{'model':46} {'dim':>4} {'MB':>5} {'COCO R@1':>8}  weights  embedded")
    for row in rows:
        m = row.model
        r1 = "-" if m.coco_t2i_r1 is None else f"{m.coco_t2i_r1:.1f}"
        mark = STATE_MARKS.get(states.get(m.name, ""), " ")
        click.echo(f"{mark}{m.name:45} {m.dim:>4} {m.size_mb:>5} {r1:>8}  "
                   f"{'present' if row.weights_present else 'absent ':7}  {row.embedded}/{row.indexed}")
    click.echo("* the active model (searches use it), + the incoming one (a switch is under way), "
               "~ kept (vectors stored). COCO R@1: open_clip's published COCO-5k text->image "
               "Recall@1; '-' where it lists none.")


def _encoder_for(ctx: Context, name: str, sha256: str | None = None) -> ClipEncoder:
    """The encoder of model `name`, validated against the catalogue and this machine first.

    `sha256` is the checksum its weights file must have where the catalogue pins none.
    """
    lookup(name)  # an unknown name is refused with the nearest known ones
    arch = name.partition("/")[0]
    # Whether the architecture can be built here decides, not its tag: open_clip builds most
    # networks itself, but a Hugging Face text tower needs `transformers` and the hub's tokenizer.
    missing = missing_for(arch)
    if missing is not None:
        raise ConfigError(f"ClipSeek cannot load {name} on this machine: it needs {missing}.")
    if name == ctx.settings.model and sha256 is None:
        return ctx.encoder_for(name)
    if name == ctx.settings.model:
        return ClipEncoder.from_settings(ctx.settings.with_changes(weights_sha256=sha256))
    return ClipEncoder.from_settings(ctx.settings.with_changes(model=name, weights=None,
                                                               weights_sha256=sha256))


def _checksum(value: str | None) -> str | None:
    """A --sha256 value as 64 lower-case hex digits, or a usage error."""
    if value is None:
        return None
    if re.fullmatch(r"[0-9a-fA-F]{64}", value) is None:
        raise click.BadParameter("a SHA-256 is 64 hexadecimal digits.")
    return value.lower()


@click.group("model")
def model_group() -> None:
    """Move searches to another model without downtime, or drop a model's vectors."""


@model_group.command("use")
@click.argument("name")
@click.option("--force", is_flag=True,
              help="Switch searches now; until the workers are done they find only the images "
                   "the new model has embedded.")
@click.option("--sha256", default=None, callback=lambda _c, _p, value: _checksum(value),
              help="SHA-256 of NAME's weights file, for a model whose checksum ClipSeek does not pin "
                   "(verified once; the workers then trust the verified file).")
@pass_context
def use(ctx: Context, name: str, force: bool, sha256: str | None) -> None:
    """Embed the collection with NAME through the workers; searches move to it when it covers all."""
    encoder = _encoder_for(ctx, name, sha256)
    # Loading checks the weights (present, checksum, architecture) before anything changes.
    encoder.load()
    with queue_errors(ctx):
        started = use_model(ctx.db.engine, name, force=force, batch_size=ctx.settings.batch_size,
                            enqueue=ctx.enqueue)
    if started.switched:
        click.echo(f"Searches use {name} ({started.dim}-d) now."
                   + (f" {started.queued_images} image(s) are still being embedded with it; until "
                      "then searches find only the others." if started.queued_images else ""))
    else:
        click.echo(f"Embedding {started.queued_images} image(s) with {name} ({started.dim}-d) in "
                   f"{started.tasks} task(s); the current model serves every search until {name} "
                   "covers them all, then searches switch by themselves. `clipseek status` shows "
                   "the progress.")
    if encoder.is_random:
        click.echo(f"Note: {name} has random weights: its results mean nothing.", err=True)


@model_group.command("drop")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def drop(ctx: Context, name: str, yes: bool) -> None:
    """Delete NAME's vectors and index (a switch to it is cancelled); never the active model."""
    with ctx.db.session() as session:
        stored = session.scalar(select(EmbeddingCount.images).where(EmbeddingCount.model == name)) or 0
    if not yes:
        click.confirm(f"Delete the {stored} stored vector(s) of {name}? Embedding them again takes "
                      "as long as the first time.", abort=True)
    dropped = drop_model(ctx.db.engine, name)
    click.echo(f"Dropped {name}: {dropped.embeddings} vector(s) and its index deleted"
               + ("; the switch to it is cancelled." if dropped.cancelled_switch else "."))


def _table(results: list[EvalResult]) -> list[str]:
    head = f"{'model':28} {'direction':22}" + "".join(f" {'R@' + str(k):>6}" for k in KS) + "  mean rank"
    lines = [head]
    for result in results:
        for label, recall in (("text->image exact", result.text_to_image),
                              ("text->image HNSW", result.text_to_image_index),
                              ("image->text exact", result.image_to_text)):
            cells = "".join(f" {100 * recall.at(k):6.1f}" for k in KS)
            rank = "-" if recall.mean_rank is None else f"{recall.mean_rank:.1f}"
            lines.append(f"{result.model:28} {label:22}{cells}  {rank:>9}")
    return lines


def _draw(results: list[EvalResult], path: Path) -> None:
    """Recall@K curves of every result, one line per model and direction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for result in results:
        for label, recall in (("text→image", result.text_to_image),
                              ("text→image HNSW", result.text_to_image_index),
                              ("image→text", result.image_to_text)):
            ks = range(1, len(recall.curve) + 1)
            axes.plot(ks, [100 * r for r in recall.curve], marker="o", label=f"{result.model} {label}")
    axes.set(xlabel="K", ylabel="Recall@K (%)", ylim=(0, 100),
             title=f"{results[0].images:,} images, {results[0].captions:,} captions")
    axes.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


@click.command("eval")
@click.option("--model", "model_name", default=None, help="Model to evaluate (default: the active one).")
@click.option("--captions", "captions_file", type=click.Path(path_type=Path), default=None,
              help="COCO-format captions JSON for stored images (default: the stored COCO captions).")
@click.option("--compare", nargs=2, default=None, help="Evaluate two models side by side.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for eval.json and eval.png (default: CLIPSEEK_HOME/eval).")
@pass_context
def eval_command(ctx: Context, model_name: str | None, captions_file: Path | None,
                 compare: tuple[str, str] | None, out: Path | None) -> None:
    """Measure text->image and image->text Recall@1/5/10 and mean rank, exact and through HNSW."""
    if compare and model_name:
        raise click.UsageError("Give either --model or --compare, not both.")
    names = list(compare) if compare else [model_name or ctx.model]
    encoders = [_encoder_for(ctx, name) for name in names]
    with ctx.db.session() as session:
        pairs: list[Pair]
        if captions_file is not None:
            pairs, unmatched = pairs_from_file(session, captions_file)
            if unmatched:
                click.echo(f"{unmatched} images of {captions_file} are not stored (or not indexed); "
                           "they are left out.", err=True)
        else:
            pairs = stored_pairs(session)
        # Every model is checked before any runs: a compare must not fail after minutes of work.
        for encoder in encoders:
            check_evaluable(session, encoder.model_id, pairs)
        results = [evaluate(session, encoder, pairs) for encoder in encoders]
    for line in _table(results):
        click.echo(line)
    for result in results:
        for note in result.notes:
            click.echo(note, err=True)
    if any(encoder.is_random for encoder in encoders):
        click.echo("Note: random weights: these recalls measure chance, not a model.", err=True)
    folder = out or ctx.settings.home / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "eval.json").write_text(json.dumps([r.to_dict() for r in results], indent=2))
    _draw(results, folder / "eval.png")
    click.echo(f"Wrote {folder / 'eval.json'} and {folder / 'eval.png'}.")
