"""The `clipseek` command run inside the test process, for answers that need no process of their own.

A command whose process is not what a test is about runs here: a subprocess only adds the
cost of importing PyTorch and building the model again (about 13 s each on 2 cores). What a
process does as a process (signals, servers it leaves running, workers) is still tested
through real processes.
"""

from __future__ import annotations

import getpass
import io
import os
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

from clipseek.cli import main


@dataclass(frozen=True)
class CliResult:
    """What the command printed and its exit status, as subprocess.CompletedProcess has them."""

    returncode: int
    stdout: str
    stderr: str


def run_in_process(env: dict[str, str], *args: str, stdin: str | None = None) -> CliResult:
    """Run `clipseek ARGS` here with `env` as the whole environment (and `stdin` as what is
    typed, for its questions), restored afterwards."""
    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    saved_stdin = sys.stdin
    os.environ.clear()
    os.environ.update(env)
    try:
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
            # No terminal here: a password prompt reads the given stdin, as it does in a pipe.
            warnings.simplefilter("ignore", getpass.GetPassWarning)
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin = saved_stdin
        os.environ.clear()
        os.environ.update(saved)
    return CliResult(code, out.getvalue(), err.getvalue())
