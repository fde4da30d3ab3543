"""The `clipseek` command line: the group and its entry point; each concern's commands in a module."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from clipseek.cli import (
    albums,
    collection,
    database,
    doctor,
    duplicates,
    library,
    manage,
    models,
    people,
    run,
    search,
    trash,
    users,
)
from clipseek.context import Context
from clipseek.errors import ClipSeekError

# Loggers whose lines a command shows as they come: measuring a machine's precisions (and
# exporting a tower) takes minutes, and `clipseek doctor --measure` should not look hung.
PROGRESS_LOGGERS = ("clipseek.clip.encoder", "clipseek.clip.onnx_int8", "clipseek.store.lock_waits")


class _ProgressLines(logging.Handler):
    """Writes a record's message to the stderr of the moment, where nothing else logs it.

    `up`, `worker` and `beat` set up logging of their own (root handlers), which then shows
    these lines with a time; this handler stays silent there rather than print them twice.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            sys.stderr.write(self.format(record) + "\n")


def _show_model_progress() -> None:
    """Print those loggers' lines on stderr, once per process (tests call `main` many times)."""
    for name in PROGRESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _ProgressLines) for h in logger.handlers):
            logger.addHandler(_ProgressLines())
            logger.setLevel(logging.INFO)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(click_ctx: click.Context) -> None:
    """ClipSeek: semantic search over your own images."""
    _show_model_progress()
    context = Context.from_env()
    click_ctx.obj = context
    click_ctx.call_on_close(context.close)


for _command in (collection.ingest, collection.ingest_coco, collection.download_coco_command,
                 collection.samples, collection.reindex, collection.status, library.sync, library.prune,
                 library.watch,
                 search.search, search.embed, search.demo,
                 run.up, run.worker, run.beat, run.stop_all, run.fetch_weights, database.db,
                 manage.delete, manage.collections, trash.trash, duplicates.duplicates, doctor.doctor,
                 doctor.measure_precision,
                 models.models, models.model_group,
                 models.eval_command, users.user, users.token, albums.album,
                 people.people):
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
