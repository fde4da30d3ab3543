"""Commands that answer queries: search, embed (a text's vector), and demo (a first look at the samples)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clipseek.cli.base import index_here, pass_context, random_warning, report
from clipseek.context import Context
from clipseek.library.samples import write_sample_photos
from clipseek.search.display import render_grid
from clipseek.search.query import parse_request
from clipseek.search.query_vectors import text_vectors
from clipseek.search.run import check_query, run_search, search_images
from clipseek.store.vector_indexes import quoted
from clipseek.switching.switch import active_model, serving_models


@click.command()
@click.argument("query", default="")
@click.option("--top-k", "-k", default=5, show_default=True, help="Results per page.")
@click.option("--page", "-p", default=1, show_default=True)
@click.option("--collection", multiple=True, help="Only this collection (repeat for several).")
@click.option("--album", multiple=True, help="Only this album, by name or id (repeat for several).")
@click.option("--source", multiple=True, help="Only images from coco, folder, samples or upload.")
@click.option("--folder", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Only images under this folder.")
@click.option("--taken-from", default="", help="Taken on or after YYYY-MM-DD (else added then).")
@click.option("--taken-to", default="", help="Taken on or before YYYY-MM-DD (else added then).")
@click.option("--added-from", default="", help="Added on or after YYYY-MM-DD.")
@click.option("--added-to", default="", help="Added on or before YYYY-MM-DD.")
@click.option("--format", "formats", multiple=True, help="Only this file format, e.g. jpeg, png.")
@click.option("--orientation", default="", help="portrait, landscape or square.")
@click.option("--min-size", default="", help="At least WIDTHxHEIGHT pixels, or megapixels (2mp).")
@click.option("--place", default="", help="Taken in this city, region or country (or country code, PT).")
@click.option("--person", multiple=True,
              help="Only pictures of this person, by name or id (repeat: pictures of all of them).")
@click.option("--mode", default="", help="semantic, hybrid or text (default: hybrid once captions exist).")
@click.option("--sort", default="", help="relevance (default) or date (newest first).")
@click.option("--min-score", default="", help="Show matches from this score up, instead of the cutoff.")
@click.option("--like", default="", help="Rank by similarity to this stored image id.")
@click.option("--all", "show_all", is_flag=True, help="Also show matches below the relevance cutoff.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--save", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also draw the results into this PNG file.")
@pass_context
def search(ctx: Context, query: str, top_k: int, page: int, collection: tuple[str, ...],
           album: tuple[str, ...], source: tuple[str, ...], folder: Path | None, taken_from: str,
           taken_to: str, added_from: str, added_to: str, formats: tuple[str, ...], orientation: str,
           min_size: str, place: str, person: tuple[str, ...], mode: str, sort: str, min_score: str,
           like: str, show_all: bool, as_json: bool, save: Path | None) -> None:
    """Find the stored images that best match a description (with no description: newest first).

    Combine descriptions as in: beach + "sunset" - "people".
    """
    params = {"q": [query], "page": [str(page)], "per_page": [str(top_k)],
              "collection": list(collection), "album": list(album), "source": list(source),
              "format": list(formats),
              "folder": [str(folder.absolute())] if folder else [], "taken_from": [taken_from],
              "taken_to": [taken_to], "added_from": [added_from], "added_to": [added_to],
              "orientation": [orientation], "min_size": [min_size], "place": [place],
              "person": list(person), "mode": [mode], "sort": [sort],
              "min_score": [min_score], "like": [like], "all": ["1" if show_all else ""]}
    request = parse_request(params)
    with ctx.db.session() as session:
        results = run_search(session, ctx.encoder, request, ef_search=ctx.settings.ef_search)
        session.commit()  # an example's or a text's last use
    if as_json:
        click.echo(json.dumps(results.to_dict(), indent=2, ensure_ascii=False))
    else:
        random_warning(ctx)
        if not results.total and not results.filters and results.mode != "text":
            click.echo("No indexed images yet: add some with `clipseek ingest PATH`.")
        elif not results.total:
            click.echo("Nothing matches: loosen the filters, or try other words.")
        counted = "images searched" if results.cutoff is None else "matches"
        total = f"{results.total:,}{'+' if results.total_capped else ''}"
        click.echo(f"Page {results.page} of {results.pages} ({total} {counted}), {results.mode} search:")
        for hit in results.hits:
            caption = f"  “{hit.captions[0]}”" if hit.captions else ""
            score = "" if hit.score is None else f"{hit.score:.4f}  "
            click.echo(f"{hit.rank:>4}. {score}{hit.path}{caption}")
        if results.hidden:
            click.echo(f"{results.hidden:,}{'+' if results.hidden_capped else ''} weaker matches "
                       "hidden: add --all to show them.")
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
        session.commit()
    click.echo(f"Top 5 of {results.total} for “{results.query}”:")
    for hit in results.hits:
        click.echo(f"{hit.rank:>4}. {hit.score:.4f}  {hit.path}")
    click.echo(f"Database: {ctx.db.url}  (try: clipseek search \"a rocket\")")


@click.command()
@click.argument("text")
@click.option("--sql", "as_sql", is_flag=True, help="Print a pgvector literal to paste into SQL.")
@click.option("--json", "as_json", is_flag=True, help="Print the model, dimension, text and vector as JSON.")
@click.option("--store", is_flag=True,
              help="Keep it in query_embeddings for good (during a switch, for both models), "
                   "so SQL can rank by it.")
@pass_context
def embed(ctx: Context, text: str, as_sql: bool, as_json: bool, store: bool) -> None:
    """Print the active model's vector of TEXT (a JSON list of numbers by default)."""
    if as_sql and as_json:
        raise click.UsageError("Choose --sql or --json, not both.")
    cleaned = check_query(text)
    with ctx.db.session() as session:
        model = active_model(session)
        vector = text_vectors(session, ctx.encoder_for(model), [cleaned], keep=store)[0]
        if store:
            for other in serving_models(session):
                if other != model:  # a switch is under way: SQL finds it after the switch too
                    text_vectors(session, ctx.encoder_for(other), [cleaned], keep=True)
            session.commit()
    numbers = vector.tolist()
    if as_sql:
        click.echo(f"'[{','.join(map(repr, numbers))}]'::halfvec({len(numbers)})")
    elif as_json:
        click.echo(json.dumps({"model": model, "dim": len(numbers), "text": cleaned,
                               "stored": store, "embedding": numbers}))
    else:
        click.echo(json.dumps(numbers))
    if store:
        click.echo(f"Kept in query_embeddings as {cleaned!r} for {model}; rank by it in SQL with "
                   f"(SELECT embedding FROM active_query_embeddings WHERE text = {quoted(cleaned)}).",
                   err=True)
