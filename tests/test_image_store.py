"""The image store after a crash: temporary files go, files without a row are registered or removed."""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image as PILImage
from sqlalchemy import insert, select

from clipseek.library.register import stored_path
from clipseek.library.store import LOCK_NAME, reconcile_image_store, writing_to
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image
from tests.images import photo_array

HOUR = 3600


def _jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(photo_array(seed, (96, 128))).save(out, format="JPEG")
    return out.getvalue()


def _put(path: Path, data: bytes, *, age_s: float = 2 * HOUR) -> Path:
    """Write a file as a killed server would have left it, `age_s` seconds ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def _in_store(store: Path, data: bytes, suffix: str = ".jpg", **age: float) -> Path:
    return _put(stored_path(store, hashlib.sha256(data).hexdigest(), suffix), data, **age)


def test_orphans_of_a_killed_upload_are_registered_or_removed(db: Database, settings: Settings) -> None:
    store = settings.image_store
    photo = _in_store(store, _jpeg(1))
    garbage = _in_store(store, b"half a picture", ".png")
    with_row = _in_store(store, _jpeg(2))
    copy_of_known = _in_store(store, _jpeg(3))
    known_elsewhere = _put(settings.home / "photos" / "three.jpg", _jpeg(3))
    stale_temp = _put(store / ".incoming" / "tmpa1b2.upload", b"partial")
    copying = _put(with_row.with_name(with_row.name + ".tmp"), b"partial copy")
    with db.session() as session:
        session.execute(insert(Image), [
            {"sha256": hashlib.sha256(_jpeg(2)).hexdigest(), "path": str(with_row),
             "original_name": "two.jpg", "source": "upload", "file_size": 1, "status": "indexed"},
            {"sha256": hashlib.sha256(_jpeg(3)).hexdigest(), "path": str(known_elsewhere),
             "original_name": "three.jpg", "source": "folder", "file_size": 1, "status": "indexed"},
        ])
        session.commit()
        repair = reconcile_image_store(session, store=store, max_pixels=settings.max_image_pixels)
        session.commit()
        recovered = session.scalars(select(Image).where(Image.id.in_(repair.registered_ids))).all()
    assert [(i.path, i.status, i.source, i.width, i.height, i.format) for i in recovered] == [
        (str(photo), "registered", "upload", 128, 96, "JPEG")]
    assert repair.removed_temporary == 2
    assert sorted(repair.removed) == sorted([garbage, copy_of_known])
    assert not garbage.exists() and not copy_of_known.exists() and known_elsewhere.exists()
    assert not stale_temp.exists() and not copying.exists()
    assert photo.exists() and with_row.exists()
    with db.session() as session:
        again = reconcile_image_store(session, store=store, max_pixels=settings.max_image_pixels)
    assert (again.registered_ids, again.removed, again.removed_temporary) == ([], [], 0)


def test_a_file_whose_rows_path_is_missing_is_kept(db: Database, settings: Settings) -> None:
    # A moved data folder: the row names the old place; the picture must not be deleted.
    picture = _in_store(settings.image_store, _jpeg(5))
    with db.session() as session:
        session.execute(insert(Image).values(
            sha256=hashlib.sha256(_jpeg(5)).hexdigest(), path="/old/home/images/x.jpg",
            original_name="five.jpg", source="upload", file_size=1, status="indexed"))
        repair = reconcile_image_store(session, store=settings.image_store,
                                       max_pixels=settings.max_image_pixels)
    assert picture.exists() and repair.removed == [] and repair.registered_ids == []


def test_a_second_process_leaves_the_store_to_the_first(db: Database, settings: Settings) -> None:
    orphan = _in_store(settings.image_store, b"not a picture")
    with open(settings.image_store / LOCK_NAME, "a") as held, db.session() as session:
        fcntl.flock(held, fcntl.LOCK_EX)
        repair = reconcile_image_store(session, store=settings.image_store,
                                       max_pixels=settings.max_image_pixels)
    assert repair.busy and orphan.exists()


def test_files_of_an_upload_in_flight_are_left_alone(db: Database, settings: Settings) -> None:
    placed = _in_store(settings.image_store, _jpeg(6), age_s=0)  # its row is not committed yet
    temporary = _put(settings.image_store / ".incoming" / "tmpc3d4.upload", b"arriving", age_s=0)
    with writing_to(settings.image_store), db.session() as session:
        repair = reconcile_image_store(session, store=settings.image_store,
                                       max_pixels=settings.max_image_pixels)
    assert repair.busy and placed.exists() and temporary.exists()


def test_a_killed_writer_leaves_its_files_to_the_next_start_at_once(db: Database, settings: Settings) -> None:
    store = settings.image_store
    left = _in_store(store, _jpeg(7), age_s=0)
    writer = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from pathlib import Path\n"
                               "from clipseek.library.store import writing_to\n"
                               "with writing_to(Path(sys.argv[1])):\n"
                               "    print('holding', flush=True); time.sleep(120)\n", str(store)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "holding"
        with db.session() as session:
            assert reconcile_image_store(session, store=store, max_pixels=settings.max_image_pixels).busy
        writer.kill()  # the kernel drops its lock with it
        writer.wait(timeout=10)
        with db.session() as session:
            repair = reconcile_image_store(session, store=store, max_pixels=settings.max_image_pixels)
            session.commit()
            paths = session.scalars(select(Image.path)).all()
        assert not repair.busy and paths == [str(left)]
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        if writer.stdout is not None:
            writer.stdout.close()


def test_a_store_that_does_not_exist_yet_needs_nothing(db: Database, settings: Settings) -> None:
    with db.session() as session:
        repair = reconcile_image_store(session, store=settings.image_store,
                                       max_pixels=settings.max_image_pixels)
    assert not repair.busy and repair.registered_ids == [] and not settings.image_store.exists()
