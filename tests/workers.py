"""Starting and stopping real `clipseek worker` processes for the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


class WorkerProcess:
    """A `clipseek worker` subprocess whose log goes to a file."""

    def __init__(self, env: dict[str, str], log: Path, *, beat: bool = False) -> None:
        self.log = log
        self._handle = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            ["clipseek", "worker", "--beat" if beat else "--no-beat", "--loglevel", "INFO"],
            env=env, stdout=self._handle, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 120) -> None:
        """Block until Celery reports the worker ready."""
        deadline = time.monotonic() + timeout
        while " ready." not in self.log.read_text():
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready:\n{self.log.read_text()}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no acknowledgement."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop the worker (warm shutdown, then kill) and close its log."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._handle.close()
