"""Syncs of nested folders wait for each other; syncs of folders side by side run at once."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select, text

from clipseek.library.ingest import decode_pool
from clipseek.library.register import Candidate
from clipseek.library.sync import SyncReport, _lock_key, sync_folder
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image
from tests.waiting import wait_for


def _library(tmp_path: Path, samples: list[Candidate]) -> Path:
    """photos/ with two pictures of its own and two in each of photos/b and photos/c."""
    top = tmp_path / "photos"
    for n, folder in enumerate((top, top / "b", top / "c")):
        folder.mkdir(parents=True)
        for c in samples[2 * n:2 * n + 2]:
            shutil.copy(c.path, folder / c.path.name)
    return top


def _sync(db: Database, settings: Settings, folder: Path, into: list[SyncReport]) -> None:
    with db.session() as session, decode_pool(settings) as pool:
        into.append(sync_folder(session, folder, model=settings.model,
                                max_pixels=settings.max_image_pixels, pool=pool))
        session.commit()


def _waiting_syncs(db: Database) -> int:
    """Sessions of this database waiting for a folder lock another sync holds."""
    with db.session() as session:
        return int(session.scalar(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND "
            "database = (SELECT oid FROM pg_database WHERE datname = current_database())")) or 0)


def _rows(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Image)) or 0)


@pytest.mark.parametrize(("held", "waiting"), [("b", ""), ("", "b")],
                         ids=["parent-waits-for-child", "child-waits-for-parent"])
def test_a_sync_of_a_nested_folder_waits_for_the_running_one(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
    held: str, waiting: str,
) -> None:
    top = _library(tmp_path, sample_photos)
    with db.session() as holder, decode_pool(settings) as pool:
        first = sync_folder(holder, top / held, model=settings.model,
                            max_pixels=settings.max_image_pixels, pool=pool)  # not committed yet
        second: list[SyncReport] = []
        thread = threading.Thread(target=_sync, args=(db, settings, top / waiting, second))
        thread.start()
        wait_for(lambda: _waiting_syncs(db) == 1, 30, "the nested sync to wait for the folder lock")
        assert thread.is_alive() and not second
        holder.commit()
    thread.join(timeout=120)
    assert not thread.is_alive() and len(second) == 1
    # The second sync saw what the first recorded: nothing is registered twice.
    assert len(first.new_ids) + len(second[0].new_ids) == _rows(db) == 6
    assert second[0].unchanged == 2  # the two pictures of photos/b, registered once


def test_syncs_of_folders_side_by_side_run_at_once(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    top = _library(tmp_path, sample_photos)
    with db.session() as holder, decode_pool(settings) as pool:
        first = sync_folder(holder, top / "b", model=settings.model,
                            max_pixels=settings.max_image_pixels, pool=pool)  # holds photos/b
        second: list[SyncReport] = []
        thread = threading.Thread(target=_sync, args=(db, settings, top / "c", second))
        thread.start()
        thread.join(timeout=120)  # finishes while photos/b is still being synced
        assert not thread.is_alive() and len(second[0].new_ids) == 2
        assert _waiting_syncs(db) == 0
        holder.commit()
    assert len(first.new_ids) == 2 and _rows(db) == 4


def test_a_sync_that_waits_says_who_holds_its_lock_and_goes_on_once_it_is_free(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    top = _library(tmp_path, sample_photos)
    caplog.set_level(logging.WARNING, logger="clipseek.store.lock_waits")
    address = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(address, autocommit=True) as holder:
        holder.execute("SET application_name = 'someone else'")
        holder.execute("SELECT pg_advisory_lock(%s)", (_lock_key(top.absolute()),))
        pid = holder.info.backend_pid
        reports: list[SyncReport] = []
        thread = threading.Thread(target=_sync, args=(db, settings, top, reports))
        thread.start()
        wait_for(lambda: any(f"pid {pid}" in r.getMessage() for r in caplog.records), 30,
                 "the waiting sync to name the lock's holder")
        said = next(r.getMessage() for r in caplog.records if f"pid {pid}" in r.getMessage())
        assert str(top.absolute()) in said and "'someone else'" in said and " since " in said
        assert thread.is_alive() and not reports
        holder.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(top.absolute()),))
        thread.join(timeout=120)
    assert not thread.is_alive() and len(reports[0].new_ids) == _rows(db) == 6
