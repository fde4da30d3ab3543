"""Reading when, with what and where a photo was taken, from real photos with written EXIF."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from PIL import ExifTags, Image

from clipseek.library.register import Candidate
from clipseek.photo.metadata import PhotoFacts, read_facts_from


def _with_exif(source: Path, target: Path, **tags: object) -> Path:
    with Image.open(source) as img:
        exif = Image.Exif()
        details = exif.get_ifd(ExifTags.IFD.Exif)
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        for key, value in tags.items():
            where, number = {"make": (exif, 271), "model": (exif, 272), "orientation": (exif, 274),
                             "datetime": (exif, 306), "original": (details, 36867),
                             "offset": (details, 36881), "lat_ref": (gps, 1), "lat": (gps, 2),
                             "lon_ref": (gps, 3), "lon": (gps, 4)}[key]
            where[number] = value
        img.convert("RGB").save(target, "JPEG", exif=exif)
    return target


def test_a_phone_photo_tells_time_offset_camera_place_and_upright_size(
    sample_photos: list[Candidate], tmp_path: Path
) -> None:
    source = sample_photos[0].path
    with Image.open(source) as img:
        width, height = img.size
    photo = _with_exif(source, tmp_path / "phone.jpg", make="Apple", model="iPhone 15\x00",
                       orientation=6, original="2024:07:14 18:30:05", offset="+02:00",
                       lat_ref="S", lat=(33.0, 51.0, 25.2), lon_ref="E", lon=(151.0, 12.0, 54.0))
    facts = read_facts_from(photo)
    assert facts.taken_at == datetime(2024, 7, 14, 18, 30, 5)
    assert facts.taken_offset_minutes == 120
    assert (facts.camera_make, facts.camera_model) == ("Apple", "iPhone 15")
    assert facts.latitude == pytest.approx(-33.857) and facts.longitude == pytest.approx(151.215)
    assert (facts.display_width, facts.display_height) == (height, width)  # turned a quarter


def test_a_photo_without_exif_has_only_its_size(sample_photos: list[Candidate], tmp_path: Path) -> None:
    photo = tmp_path / "plain.png"
    with Image.open(sample_photos[1].path) as img:
        img.save(photo)
        size = img.size
    assert read_facts_from(photo) == PhotoFacts(display_width=size[0], display_height=size[1])


def test_broken_values_are_ignored_not_fatal(sample_photos: list[Candidate], tmp_path: Path) -> None:
    photo = _with_exif(sample_photos[2].path, tmp_path / "odd.jpg", datetime="0000:00:00 00:00:00",
                       original="    :  :     :  :  ", offset="CEST", lat_ref="N", lat=(91.0, 0.0, 0.0),
                       lon_ref="E", lon=(10.0, 0.0, 0.0))
    facts = read_facts_from(photo)
    assert facts.taken_at is None and facts.taken_offset_minutes is None
    assert facts.latitude is None and facts.longitude is None  # half a position is no position
    assert facts.display_width is not None


def test_an_unreadable_file_has_no_facts(tmp_path: Path) -> None:
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a picture")
    assert read_facts_from(junk) == PhotoFacts()
