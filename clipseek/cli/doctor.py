"""`clipseek doctor`: the CPU the model runs on, and the precision it runs in and why."""

from __future__ import annotations

import os

import click

from clipseek.cli.base import pass_context
from clipseek.clip.network import pick_device, runnable_precisions
from clipseek.clip.precision import check_runnable, measuring_since, read_cpu, report_lines
from clipseek.context import Context


@click.command()
@click.option("--measure", is_flag=True,
              help="Measure the precisions now if this machine has no measured choice yet "
                   "(one to a few minutes; `clipseek up` does it in the background).")
@pass_context
def doctor(ctx: Context, measure: bool) -> None:
    """Show the CPU, the flags that matter, and the model's precision with the measured rates."""
    # The machine's part first: a precision it cannot run is said before anything starts.
    device = pick_device(ctx.settings.device)
    check_runnable(ctx.settings.precision, device, runnable_precisions(device))
    encoder = ctx.encoder
    click.echo(f"Model: {encoder.model_id} (the active one).")
    encoder.load()
    choice, from_cache = encoder.precision_choice, encoder.precision_from_cache
    precision = encoder.precision
    if measure and choice is None:
        choice = encoder.measure_now(adopt=False)  # reported, not used
        from_cache = False
        precision = choice.precision if choice is not None else precision
    cache = encoder.precision_cache
    for line in report_lines(cpu=read_cpu(), cores=os.cpu_count(), device=encoder.device,
                             runnable=encoder.runnable_precisions, setting=ctx.settings.precision,
                             precision=precision, choice=choice, from_cache=from_cache,
                             measuring=measuring_since(cache) if cache is not None else None):
        click.echo(line)


@click.command("measure-precision", hidden=True)
@pass_context
def measure_precision(ctx: Context) -> None:
    """Measure this machine's precisions for the active model unless done or under way (`up` runs it)."""
    encoder = ctx.encoder
    if not encoder.needs_measuring():
        return
    choice = encoder.measure_now(adopt=False)
    if choice is not None:
        click.echo(f"Precision measured: {choice.precision} chosen for {encoder.model_id}; searches "
                   f"and indexing switch to it now (`clipseek doctor` says why).")
