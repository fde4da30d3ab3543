"""Watching folders: real file events, gathered into a few syncs, with `clipseek watch` end to end."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
import warnings
from pathlib import Path

from sqlalchemy import select

from clipseek.library.register import Candidate
from clipseek.library.watch import FolderWatcher
from clipseek.store.db import Database
from clipseek.store.tables import Image, ImageStatus
from tests.waiting import wait_for


def test_a_burst_of_copies_becomes_a_few_syncs(sample_photos: list[Candidate], tmp_path: Path) -> None:
    folder = tmp_path / "watched"
    (folder / "deep").mkdir(parents=True)
    calls: list[Path] = []
    lock = threading.Lock()

    def changed(where: Path) -> None:
        with lock:
            calls.append(where)

    watcher = FolderWatcher([folder], changed, quiet_s=1.0, max_wait_s=30.0)
    watcher.start()
    try:
        for n in range(60):
            shutil.copy(sample_photos[n % len(sample_photos)].path, folder / "deep" / f"{n}.img")
        wait_for(lambda: bool(calls), 30, "the first sync")
        time.sleep(2)  # quiet: nothing more is due
        assert calls and len(calls) <= 3 and set(calls) == {folder}
        before = len(calls)
        (folder / "deep" / "0.img").unlink()
        wait_for(lambda: len(calls) > before, 30, "a sync after a deletion")
    finally:
        watcher.stop()


def test_clipseek_watch_indexes_what_arrives_and_notices_what_goes(
    cli_env: dict[str, str], db: Database, sample_photos: list[Candidate], tmp_path: Path
) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    shutil.copy(sample_photos[0].path, folder)
    log = tmp_path / "watch.log"
    with open(log, "w") as out:
        watch = subprocess.Popen(["clipseek", "watch", str(folder), "--inline"], env=cli_env,
                                 stdout=out, stderr=subprocess.STDOUT)

    def statuses() -> dict[str, str]:
        with db.session() as s:
            return {Path(i.path).name: i.status for i in s.scalars(select(Image))}

    try:
        wait_for(lambda: "Watching" in log.read_text(), 120, "the watch to start")
        assert statuses() == {sample_photos[0].path.name: ImageStatus.INDEXED}
        arrived = sample_photos[1].path.name
        shutil.copy(sample_photos[1].path, folder / arrived)
        landed = time.monotonic()
        wait_for(lambda: statuses().get(arrived) == ImageStatus.INDEXED, 60, "the new photo to be indexed")
        print(f"watch: landed to searchable in {time.monotonic() - landed:.1f} s (inline)")
        (folder / arrived).unlink()
        wait_for(lambda: statuses().get(arrived) == ImageStatus.MISSING, 60, "the photo to be missing")
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=60) == 0
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert "Stopped watching." in log.read_text()


def test_a_folder_moved_out_and_back_is_watched_again_without_a_warning(
    sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = tmp_path / "watched"
    (folder / "trip" / "day1").mkdir(parents=True)
    calls: list[Path] = []
    watcher = FolderWatcher([folder], calls.append, quiet_s=0.3, max_wait_s=30.0)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")  # every thread's warnings, recorded rather than raised
        watcher.start()
        try:
            for _ in range(3):
                (folder / "trip").rename(tmp_path / "trip")
                time.sleep(0.3)
                (tmp_path / "trip").rename(folder / "trip")
                time.sleep(0.3)
            wait_for(lambda: bool(calls), 30, "a sync after the moves")
            time.sleep(1)  # quiet again
            before = len(calls)
            shutil.copy(sample_photos[0].path, folder / "trip" / "day1" / "new.jpg")
            wait_for(lambda: len(calls) > before, 30, "a sync of a file in the folder moved back")
        finally:
            watcher.stop()
    assert [str(w.message) for w in seen] == []
