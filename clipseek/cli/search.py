"""Commands that answer queries: search, and demo (a first look on the sample photos)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clipseek.cli.base import index_here, pass_context, random_warning, report
from clipseek.context import Context
from clipseek.display import render_grid
from clipseek.samples import write_sample_photos
from clipseek.search import search_images


@click.command()
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
    with ctx.db.session() as session:
        results = search_images(session, ctx.encoder, query, page=page, per_page=top_k,
                                ef_search=ctx.settings.ef_search)
    if as_json:
        click.echo(json.dumps(results.to_dict(), indent=2, ensure_ascii=False))
    else:
        random_warning(ctx)
        if not results.total:
            click.echo("No indexed images yet: add some with `clipseek ingest PATH`.")
        click.echo(f"Page {results.page} of {results.pages} ({results.total} images searched):")
        for hit in results.hits:
            caption = f"  “{hit.captions[0]}”" if hit.captions else ""
            click.echo(f"{hit.rank:>4}. {hit.score:.4f}  {hit.path}{caption}")
    if save:
        click.echo(f"Saved {render_grid(results, save_to=save)}", err=True)


@click.command()
@click.argument("query", default="a cat")
@pass_context
def demo(ctx: Context, query: str) -> None:
    """Index the sample photos and answer one search: a first look at ClipSeek."""
    ctx.encoder.load()  # stop at once, before any work, when the weights are missing
    random_warning(ctx)
    report(index_here(ctx, write_sample_photos(ctx.settings.home / "samples")))
    with ctx.db.session() as session:
        results = search_images(session, ctx.encoder, query, per_page=5,
                                ef_search=ctx.settings.ef_search)
    click.echo(f"Top 5 of {results.total} for “{results.query}”:")
    for hit in results.hits:
        click.echo(f"{hit.rank:>4}. {hit.score:.4f}  {hit.path}")
    click.echo(f"Database: {ctx.db.url}  (try: clipseek search \"a rocket\")")
