"""The `clipseek` command line: thin adapters over the service functions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from clipseek import cli_services
from clipseek.catalog import Candidate, discover_files
from clipseek.cli_support import (
    import_candidates,
    import_options,
    pass_context,
    pending_ids,
    random_warning,
    report,
)
from clipseek.context import Context
from clipseek.errors import ClipSeekError
from clipseek.ingest import ingest_inline
from clipseek.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(click_ctx: click.Context) -> None:
    """ClipSeek: semantic search over your own images."""
    context = Context(Settings.from_env())
    click_ctx.obj = context
    click_ctx.call_on_close(context.close)



@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--copy", is_flag=True, help="Copy the files into ClipSeek's image store.")
@import_options
@pass_context
def ingest(ctx: Context, paths: tuple[Path, ...], copy: bool, inline: bool, wait: bool, timeout: float,
           progress: bool) -> None:
    """Register image files and folders (recursively) and index them."""
    try:
        files = list(discover_files(paths))
    except FileNotFoundError as exc:
        raise ClipSeekError(str(exc)) from None
    candidates = [Candidate(path=p, source="folder", collection=str(p.parent)) for p in files]
    import_candidates(ctx, candidates, inline=inline, wait=wait, copy=copy, progress=progress,
                      timeout=timeout)


@cli.command("ingest-coco")
@click.option("--images", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder of COCO images, e.g. train2017/.")
@click.option("--annotations", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="captions_train2017.json or captions_val2017.json.")
@import_options
@pass_context
def ingest_coco(ctx: Context, images: Path, annotations: Path, inline: bool, wait: bool, timeout: float,
                progress: bool) -> None:
    """Register MS-COCO 2017 images with their captions and index them."""
    from clipseek.coco import coco_candidates

    candidates, missing = coco_candidates(images, annotations)
    if missing:
        click.echo(f"{missing} annotated image(s) are not in {images}; they are skipped.", err=True)
    import_candidates(ctx, candidates, inline=inline, wait=wait, progress=progress, timeout=timeout)


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
        random_warning(ctx)
        if not results.total:
            click.echo("No indexed images yet: add some with `clipseek ingest PATH`.")
        click.echo(f"Page {results.page} of {results.pages} ({results.total} images searched):")
        for item in results.to_dict()["results"]:  # type: ignore[attr-defined]
            caption = f"  “{item['captions'][0]}”" if item["captions"] else ""
            click.echo(f"{item['rank']:>4}. {item['score']:.4f}  {item['path']}{caption}")
    if save:
        click.echo(f"Saved {render_grid(results, save_to=save)}", err=True)


@cli.command()
@import_options
@pass_context
def samples(ctx: Context, inline: bool, wait: bool, timeout: float, progress: bool) -> None:
    """Register and index the sample photos that ship with ClipSeek."""
    from clipseek.samples import write_sample_photos

    candidates = write_sample_photos(ctx.settings.home / "samples")
    import_candidates(ctx, candidates, inline=inline, wait=wait, progress=progress, timeout=timeout)



@cli.command()
@click.argument("query", default="a cat")
@pass_context
def demo(ctx: Context, query: str) -> None:
    """Index the sample photos and answer one search: a first look at ClipSeek."""
    from clipseek.samples import write_sample_photos
    from clipseek.search import search_images

    ctx.encoder.load()  # stop at once, before any work, when the weights are missing
    random_warning(ctx)
    candidates = write_sample_photos(ctx.settings.home / "samples")
    report(ingest_inline(ctx.db, ctx.encoder, candidates, settings=ctx.settings,
                          total=len(candidates), extra_ids=pending_ids(ctx)))
    with ctx.db.session() as session:
        results = search_images(session, ctx.encoder, query, per_page=5,
                                ef_search=ctx.settings.ef_search)
    click.echo(f"Top 5 of {results.total} for “{results.query}”:")
    for item in results.to_dict()["results"]:  # type: ignore[attr-defined]
        click.echo(f"{item['rank']:>4}. {item['score']:.4f}  {item['path']}")
    click.echo(f"Database: {ctx.db.url}  (try: clipseek search \"a rocket\")")



for _command in (cli_services.worker, cli_services.beat, cli_services.fetch_weights,
                 cli_services.reindex, cli_services.status, cli_services.up, cli_services.db,
                 cli_services.stop_all):
    cli.add_command(_command)


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
