"""Phone formats: HEIC and HEIF through pillow-heif, AVIF through Pillow, registered and indexed."""

from __future__ import annotations

from pathlib import Path

from PIL import Image as PILImage
from sqlalchemy import select

from clipseek.clip.encoder import ClipEncoder
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate, discover_files
from clipseek.photo.imaging import load_rgb, probe
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Embedding, Image, ImageStatus


def _phone_photos(folder: Path, source: Path) -> list[Path]:
    folder.mkdir()
    with PILImage.open(source) as img:
        rgb = img.convert("RGB")
    written = []
    # Different qualities, so that the two HEIF files are different pictures, not duplicates.
    for name, fmt, quality in (("IMG_0001.HEIC", "HEIF", 80), ("burst.heif", "HEIF", 60),
                               ("web.avif", "AVIF", 80)):
        rgb.save(folder / name, format=fmt, quality=quality)
        written.append(folder / name)
    return written


def test_heic_heif_and_avif_photos_are_found_decoded_and_indexed(
    db: Database, encoder: ClipEncoder, settings: Settings, sample_photos: list[Candidate],
    tmp_path: Path,
) -> None:
    source = sample_photos[0].path
    with PILImage.open(source) as img:
        size = img.size
    photos = _phone_photos(tmp_path / "phone", source)
    assert sorted(discover_files([tmp_path / "phone"])) == sorted(photos)
    for photo in photos:
        info = probe(photo, max_pixels=settings.max_image_pixels)
        assert (info.width, info.height) == size
        assert load_rgb(photo, max_pixels=settings.max_image_pixels).mode == "RGB"
    summary = ingest_inline(db, encoder, [Candidate(path=p, source="folder") for p in photos],
                            settings=settings)
    assert len(summary.indexed.indexed) == 3 and not summary.indexed.failed
    with db.session() as session:
        rows = session.scalars(select(Image)).all()
        assert {r.format for r in rows} == {"HEIF", "AVIF"}
        assert all(r.status == ImageStatus.INDEXED and r.display_width == size[0] for r in rows)
        assert len(session.scalars(select(Embedding.image_id)).all()) == 3
