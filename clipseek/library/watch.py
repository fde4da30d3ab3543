"""Keeping folders in sync live: file events, gathered into one sync of each folder they touch.

A sync of an unchanged folder costs only a `stat` per file (0.2 s for 10,000 files,
BENCHMARKS.md), so the watcher does not track single files: it notes which watched folder
changed and syncs it once the events stop for a moment. Copying 5,000 photos in becomes a
few syncs, each registering and queueing what arrived since the last one.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

# Sync a folder once its events have been quiet this long, or at the latest this long after
# its first unsynced event (a copy that never pauses still shows up as it goes). At 15 s a
# steady trickle of one photo every 0.5 s waited 13.8 s (p50) to become searchable
# (bench/watch.py); at 5 s a 5,000-file copy still makes one sync per 5 s, each a stat
# pass over the folder, and a file caught half-copied is read again when its size changes.
QUIET_S = 2.0
MAX_WAIT_S = 5.0
# Events that say nothing about content: reading a file opens and closes it.
_IGNORED = frozenset({"opened", "closed_no_write"})


class FolderWatcher:
    """Watches folders (recursively) and calls `on_change(folder)` after each burst of events."""

    def __init__(self, folders: Sequence[Path], on_change: Callable[[Path], None], *,
                 quiet_s: float = QUIET_S, max_wait_s: float = MAX_WAIT_S) -> None:
        self.folders = [folder.absolute() for folder in folders]
        self.on_change = on_change
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s
        self._pending: dict[Path, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clipseek-watch", daemon=True)
        self._observer: object | None = None

    def start(self) -> None:
        """Start watching; raises a readable error for a folder that cannot be watched."""
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        from clipseek.errors import ClipSeekError

        watcher = self

        class Noted(FileSystemEventHandler):
            def __init__(self, folder: Path) -> None:
                self.folder = folder

            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type not in _IGNORED:
                    watcher.note(self.folder)

        # A folder moved out of a watched tree and back gets the inotify watch it had, and
        # watchdog warns (with a dump of its state) that it replaces the callback it finds
        # there with the same one: nothing is wrong, and the folder is watched again.
        warnings.filterwarnings("ignore", message=r"Callback with id .* already exists for watch",
                                category=RuntimeWarning)
        observer = Observer()
        for folder in self.folders:
            if not folder.is_dir():
                raise ClipSeekError(f"{folder} is not a folder: give the folders to watch.")
            observer.schedule(Noted(folder), str(folder), recursive=True)
        try:
            observer.start()
        except OSError as exc:
            raise ClipSeekError(f"The folders cannot be watched ({exc}); on Linux, raise "
                                "fs.inotify.max_user_watches for very large trees.") from None
        self._observer = observer
        self._thread.start()

    def note(self, folder: Path) -> None:
        """Record an event in `folder` (called from the observer's thread)."""
        now = time.monotonic()
        with self._lock:
            first, _ = self._pending.get(folder, (now, now))
            self._pending[folder] = (first, now)

    def due(self, now: float) -> list[Path]:
        """The folders whose events are quiet or have waited long enough; they are no longer pending."""
        with self._lock:
            ready = [folder for folder, (first, last) in self._pending.items()
                     if now - last >= self.quiet_s or now - first >= self.max_wait_s]
            for folder in ready:
                del self._pending[folder]
        return ready

    def stop(self) -> None:
        """Stop watching; a sync in progress finishes first."""
        self._stop.set()
        observer = self._observer
        if observer is not None:
            observer.stop()  # type: ignore[attr-defined]
            observer.join(timeout=10)  # type: ignore[attr-defined]
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            for folder in self.due(time.monotonic()):
                try:
                    self.on_change(folder)
                except Exception as exc:  # one failed sync must not end the watch
                    log.warning("syncing %s after changes failed: %s", folder, exc)
