"""The `clipseek` command run inside the test process, for answers that need no process of their own.

A refusal is said before anything starts, so running it in a subprocess only adds the cost
of importing PyTorch again; the commands' real work is still tested through real processes.
"""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

from clipseek.cli import main


@dataclass(frozen=True)
class CliResult:
    """What the command printed and its exit status, as subprocess.CompletedProcess has them."""

    returncode: int
    stdout: str
    stderr: str


def run_in_process(env: dict[str, str], *args: str) -> CliResult:
    """Run `clipseek ARGS` here with `env` as the whole environment, restored afterwards."""
    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    os.environ.clear()
    os.environ.update(env)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return CliResult(code, out.getvalue(), err.getvalue())
