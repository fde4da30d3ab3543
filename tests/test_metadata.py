"""Reading when, with what and where a photo was taken, from real photos with written EXIF."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from clipseek.library.register import Candidate
from clipseek.photo.metadata import PhotoFacts, read_facts_from
from tests.images import photo_with_exif


def test_a_phone_photo_tells_time_offset_camera_place_and_upright_size(
    sample_photos: list[Candidate], tmp_path: Path
) -> None:
    source = sample_photos[0].path
    with Image.open(source) as img:
        width, height = img.size
    photo = photo_with_exif(source, tmp_path / "phone.jpg", make="Apple", model="iPhone 15\x00",
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
    photo = photo_with_exif(sample_photos[2].path, tmp_path / "odd.jpg", datetime="0000:00:00 00:00:00",
                            original="    :  :     :  :  ", offset="CEST", lat_ref="N",
                            lat=(91.0, 0.0, 0.0), lon_ref="E", lon=(10.0, 0.0, 0.0))
    facts = read_facts_from(photo)
    assert facts.taken_at is None and facts.taken_offset_minutes is None
    assert facts.latitude is None and facts.longitude is None  # half a position is no position
    assert facts.display_width is not None


def test_an_unreadable_file_has_no_facts(tmp_path: Path) -> None:
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a picture")
    assert read_facts_from(junk) == PhotoFacts()


LISBON_LAT, LISBON_LON = (38.0, 43.0, 20.0), (9.0, 8.0, 21.0)
BAD_POSITIONS = {
    # Phones without a fix write zeros for both.
    "zeros_of_a_phone_without_a_fix": {"lat_ref": "N", "lat": (0.0, 0.0, 0.0), "lon_ref": "E",
                                       "lon": (0.0, 0.0, 0.0)},
    "latitude_without_its_reference": {"lat": LISBON_LAT, "lon_ref": "W", "lon": LISBON_LON},
    "longitude_without_its_reference": {"lat_ref": "N", "lat": LISBON_LAT, "lon": LISBON_LON},
    "a_reference_that_is_no_direction": {"lat_ref": "X", "lat": LISBON_LAT, "lon_ref": "W",
                                         "lon": LISBON_LON},
    "minutes_past_sixty": {"lat_ref": "N", "lat": (38.0, 75.0, 0.0), "lon_ref": "W", "lon": LISBON_LON},
    "seconds_past_sixty": {"lat_ref": "N", "lat": LISBON_LAT, "lon_ref": "W", "lon": (9.0, 8.0, 99.0)},
    "longitude_past_180": {"lat_ref": "N", "lat": LISBON_LAT, "lon_ref": "E", "lon": (181.0, 0.0, 0.0)},
}


@pytest.mark.parametrize("case", sorted(BAD_POSITIONS))
def test_bad_gps_gives_no_position(sample_photos: list[Candidate], tmp_path: Path, case: str) -> None:
    photo = photo_with_exif(sample_photos[3].path, tmp_path / f"{case}.jpg", **BAD_POSITIONS[case])
    facts = read_facts_from(photo)
    assert (facts.latitude, facts.longitude) == (None, None)


def test_a_position_on_the_equator_or_the_meridian_is_kept(sample_photos: list[Candidate],
                                                           tmp_path: Path) -> None:
    # Only both at zero marks a missing fix: Quito lies on the equator, Greenwich on the meridian.
    quito = read_facts_from(photo_with_exif(sample_photos[3].path, tmp_path / "quito.jpg", lat_ref="N",
                                            lat=(0.0, 0.0, 0.0), lon_ref="W", lon=(78.0, 27.0, 18.0)))
    greenwich = read_facts_from(photo_with_exif(sample_photos[3].path, tmp_path / "greenwich.jpg",
                                                lat_ref="N", lat=(51.0, 28.0, 40.0), lon_ref="E",
                                                lon=(0.0, 0.0, 0.0)))
    assert quito.latitude == 0.0 and quito.longitude == pytest.approx(-78.455)
    assert greenwich.latitude == pytest.approx(51.4778) and greenwich.longitude == 0.0
