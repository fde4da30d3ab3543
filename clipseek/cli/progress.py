"""Progress bars: how the command line draws the progress that services report through callbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm


@contextmanager
def counting_bar(desc: str, unit: str, *, total: int | None, show: bool) -> Iterator[Callable[[int], None]]:
    """A bar that moves on by each count it is given (the files of a registered chunk, say)."""
    with tqdm(total=total, desc=desc, unit=unit, disable=not show, leave=False) as bar:
        yield bar.update


@contextmanager
def position_bar(desc: str, unit: str, *, total: int | None,
                 show: bool) -> Iterator[Callable[[int, int | None], None]]:
    """A bar set to how far a service got, of a total it may change as it goes (None: unchanged)."""
    with tqdm(total=total, desc=desc, unit=unit, disable=not show, leave=False) as bar:
        def move(done: int, new_total: int | None) -> None:
            if new_total is not None and bar.total != new_total:
                bar.total = new_total
                bar.refresh()
            bar.update(done - bar.n)  # tqdm redraws at most ten times a second

        yield move


class StageBars:
    """One bar at a time for a service that reports stage after stage (download, then extract)."""

    def __init__(self) -> None:
        self._stage: str | None = None
        self._bar: Any = None

    def __enter__(self) -> StageBars:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def show(self, stage: str, done: int, total: int | None, **options: Any) -> None:
        """Set the bar of `stage` (replacing the previous stage's) to `done` of `total`."""
        if stage != self._stage:
            self.close()
            self._stage, self._bar = stage, tqdm(desc=stage, total=total, leave=False, **options)
        if total is not None and self._bar.total != total:
            self._bar.total = total
            self._bar.refresh()
        self._bar.update(done - self._bar.n)  # tqdm redraws at most ten times a second

    def close(self) -> None:
        """Remove the current bar."""
        if self._bar is not None:
            self._bar.close()
        self._stage, self._bar = None, None
