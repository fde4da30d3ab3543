"""`clipseek doctor`: the CPU the model runs on, and the precision it runs in and why."""

from __future__ import annotations

import os

import click

from clipseek.cli.base import pass_context
from clipseek.clip.network import pick_device, runnable_precisions
from clipseek.clip.precision import check_runnable, read_cpu, report_lines
from clipseek.context import Context


@click.command()
@pass_context
def doctor(ctx: Context) -> None:
    """Show the CPU, the flags that matter, and the model's precision with the measured rates."""
    # The machine's part first: a precision it cannot run is said before anything starts.
    device = pick_device(ctx.settings.device)
    check_runnable(ctx.settings.precision, device, runnable_precisions(device))
    encoder = ctx.encoder
    click.echo(f"Model: {encoder.model_id} (the active one).")
    encoder.load()
    for line in report_lines(cpu=read_cpu(), cores=os.cpu_count(), device=encoder.device,
                             runnable=encoder.runnable_precisions, setting=ctx.settings.precision,
                             precision=encoder.precision, choice=encoder.precision_choice,
                             from_cache=encoder.precision_from_cache):
        click.echo(line)
