"""Captions every picture brings by itself (its name, its EXIF and XMP text): on import, on sync
after an edit or a rename, and for images registered before ClipSeek read them."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

from sqlalchemy import delete, select

from clipseek.library.captions import CaptionText, add_caption, edit_caption
from clipseek.library.ingest import decode_pool, register_candidates
from clipseek.library.register import Candidate, discover_files
from clipseek.library.sync import sync_folder
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Caption, Image
from clipseek.upkeep.reindexing import backfill_captions
from tests.images import photo_with_text, xmp_packet

Captions = dict[str, list[tuple[str, str]]]


def _captions(db: Database) -> Captions:
    """Each image's captions as (source, text), by file name."""
    found: Captions = {}
    with db.session() as session:
        for image in session.scalars(select(Image).order_by(Image.id)):
            found[Path(image.path).name] = [(c.source, c.text) for c in image.captions]
    return found


def _camera_folder(folder: Path) -> Path:
    """Photos as a camera, a phone and a person leave them."""
    folder.mkdir(parents=True)
    photo_with_text(folder / "beach-sunset-2024.jpg", seed=1)
    photo_with_text(folder / "IMG_0042.JPG", seed=2, description="Red bus on Tower Bridge",
                    xmp=xmp_packet(keywords=("bus", "London")))
    photo_with_text(folder / "DSC01234.jpg", seed=3, description="OLYMPUS DIGITAL CAMERA")
    photo_with_text(folder / "Strand_Münster.png", seed=4,
                    xmp=xmp_packet(title="Möwen am Strand"))
    return folder


def _register(db: Database, settings: Settings, candidates: list[Candidate]) -> list[int]:
    with decode_pool(settings) as pool:
        return register_candidates(db, candidates, settings=settings, pool=pool).new_ids


def _sync(db: Database, settings: Settings, folder: Path) -> None:
    with db.session() as session, decode_pool(settings) as pool:
        sync_folder(session, folder, model=settings.model, max_pixels=settings.max_image_pixels,
                    pool=pool)
        session.commit()


def test_a_folder_import_takes_captions_from_names_and_the_photos_own_text(
    db: Database, settings: Settings, tmp_path: Path,
) -> None:
    folder = _camera_folder(tmp_path / "camera")
    _register(db, settings, [Candidate(path=p, source="folder") for p in discover_files([folder])])
    assert _captions(db) == {
        "DSC01234.jpg": [],
        "IMG_0042.JPG": [("exif", "Red bus on Tower Bridge"), ("xmp", "bus, London")],
        "Strand_Münster.png": [("xmp", "Möwen am Strand"), ("filename", "Strand Münster")],
        "beach-sunset-2024.jpg": [("filename", "beach sunset 2024")],
    }


def test_pictures_that_arrive_with_captions_keep_only_theirs(
    db: Database, settings: Settings, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = tmp_path / "samples"
    folder.mkdir()
    coffee = Path(shutil.copy(sample_photos[1].path, folder))
    _register(db, settings, [replace(sample_photos[1], path=coffee)])
    expected = {"coffee.jpg": [("samples", "a cup of coffee on a saucer with a spoon")]}
    assert _captions(db) == expected
    photo_with_text(coffee, description="Espresso")  # edited, then synced: still only its own
    _sync(db, settings, folder)
    assert _captions(db) == expected


def test_a_sync_after_an_edit_replaces_derived_captions_but_keeps_peoples(
    db: Database, settings: Settings, tmp_path: Path,
) -> None:
    folder = tmp_path / "trip"
    folder.mkdir()
    photo = photo_with_text(folder / "harbour_boats.jpg", description="Boats at noon")
    _sync(db, settings, folder)
    assert _captions(db) == {"harbour_boats.jpg": [("exif", "Boats at noon"), ("filename", "harbour boats")]}
    with db.session() as session:
        image_id = session.scalars(select(Image.id)).one()
        add_caption(session, image_id=image_id, text=CaptionText("Uncle Tom's boat"))
        exif = session.scalars(select(Caption).where(Caption.source == "exif")).one()
        edit_caption(session, caption_id=exif.id, text=CaptionText("Boats at noon in Kiel"))
        session.commit()
    photo_with_text(photo, seed=5, description="Boats at dusk", xmp=xmp_packet(keywords=("sunset",)))
    _sync(db, settings, folder)
    assert sorted(_captions(db)["harbour_boats.jpg"]) == [
        ("exif", "Boats at dusk"), ("filename", "harbour boats"), ("user", "Boats at noon in Kiel"),
        ("user", "Uncle Tom's boat"), ("xmp", "sunset")]
    photo.rename(folder / "kiel-harbour.jpg")
    _sync(db, settings, folder)
    assert sorted(_captions(db)["kiel-harbour.jpg"]) == [
        ("exif", "Boats at dusk"), ("filename", "kiel harbour"), ("user", "Boats at noon in Kiel"),
        ("user", "Uncle Tom's boat"), ("xmp", "sunset")]


def test_a_file_that_loses_its_text_loses_its_derived_captions(
    db: Database, settings: Settings, tmp_path: Path,
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    photo = photo_with_text(folder / "IMG_0001.jpg", description="Grandma's garden")
    _sync(db, settings, folder)
    assert _captions(db) == {"IMG_0001.jpg": [("exif", "Grandma's garden")]}
    photo_with_text(photo, seed=9)
    _sync(db, settings, folder)
    assert _captions(db) == {"IMG_0001.jpg": []}


def test_reindex_captions_gives_older_images_their_captions_once(
    db: Database, settings: Settings, cli_env: dict[str, str], sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    folder = _camera_folder(tmp_path / "camera")
    _register(db, settings, [Candidate(path=p, source="folder") for p in discover_files([folder])]
              + sample_photos[1:2])
    expected = _captions(db)
    with db.session() as session:
        # As images registered before ClipSeek derived captions.
        session.execute(delete(Caption).where(Caption.source != "samples"))
        session.commit()
    run = subprocess.run(["clipseek", "reindex", "--captions"], env=cli_env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    assert "Read the caption text of 4 image(s) without captions; 3 have captions now." in run.stdout
    assert _captions(db) == expected
    with db.session() as session:
        assert backfill_captions(session) == (1, 0)  # only the photo that says nothing is read again
