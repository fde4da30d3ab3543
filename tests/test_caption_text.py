"""Caption text from file names and from the descriptions photos carry: what counts, what is noise."""

from __future__ import annotations

import pytest

from clipseek.photo.caption_text import MAX_CAPTION_CHARS, caption_from_filename, clean_description

FILE_NAMES = [
    ("beach-sunset-2024.jpg", "beach sunset 2024"),
    ("beach_sunset.JPG", "beach sunset"),
    ("beachSunsetWithDog.png", "beach Sunset With Dog"),
    ("Strand_Münster.jpg", "Strand Münster"),
    ("Route66 roadtrip.jpeg", "Route 66 roadtrip"),
    ("photo of mum.jpg", "photo of mum"),
    ("birthday party (3).jpg", "birthday party"),
    ("Grand Canyon - Copy.jpg", "Grand Canyon"),
    ("paris_20240315_183012.jpg", "paris"),
    ("IMG_20240101_123456_beach.jpg", "beach"),
    ("holiday_IMG_0042.jpg", "holiday"),
    ("東京タワー.jpg", "東京タワー"),
    ("snow.day.2023.webp", "snow day 2023"),
    ("/some/folder/red_bus.jpg", "red bus"),
    ("HTTPServerRoom.jpg", "HTTP Server Room"),
    ("cat_3f2a9c1e-8b7d-4e6f-a5c3-1d2e3f4a5b6c.jpg", "cat"),
]

NOTHING = [
    "IMG_0042.JPG", "IMG_2024.jpg", "DSC01234.jpg", "DSC_0001-Edit.jpg", "DSCN0042.JPG",
    "PXL_20240101_123456789.jpg", "PXL_20240101_123456789.MP.jpg", "Screenshot_2024-01-01-12-00-00.png",
    "Screen Shot 2024-01-01 at 12.00.00.png", "1689234567890.jpg", "20240101_123456.jpg",
    "IMG-20240101-WA0001.jpg", "P1010001.JPG", "GOPR0042.JPG", "DJI_0042.JPG", "MVIMG_20240101_1.jpg",
    "3f2a9c1e-8b7d-4e6f-a5c3-1d2e3f4a5b6c.jpg", "d41d8cd98f00b204e9800998ecf8427e.png",
    "a1b2c3d4e5f6.jpg", "image (3).jpeg", "image.png", "photo.jpg", "untitled.png", "0001.jpg",
    "", ".jpg", "___.png",
]


@pytest.mark.parametrize(("name", "expected"), FILE_NAMES)
def test_a_meaningful_file_name_gives_its_words(name: str, expected: str) -> None:
    assert caption_from_filename(name) == expected


@pytest.mark.parametrize("name", NOTHING)
def test_counters_timestamps_and_hashes_give_nothing(name: str) -> None:
    assert caption_from_filename(name) is None


DESCRIPTIONS = [
    ("  A red  bus\non a bridge ", "A red bus on a bridge"),
    ("Sonnenuntergang am Strand von Münster", "Sonnenuntergang am Strand von Münster"),
    ("beach", "beach"),
    ("Tom's 40th\x00\x00", "Tom's 40th"),
]

JUNK = ["OLYMPUS DIGITAL CAMERA", "SONY DSC", "KODAK Digital Still Camera".upper(), "   ", "",
        "Default", "default", "<none>", "SAMSUNG CAMERA PICTURES", "Exif_JPEG_PICTURE",
        "MINOLTA DIGITAL CAMERA", "IMG_0042", "DSC01234", "12345", "---", "Created with GIMP",
        "\x00\x00\x00\x00"]


@pytest.mark.parametrize(("raw", "expected"), DESCRIPTIONS)
def test_a_description_is_tidied(raw: str, expected: str) -> None:
    assert clean_description(raw) == expected


@pytest.mark.parametrize("raw", JUNK)
def test_camera_defaults_and_blanks_are_not_captions(raw: str) -> None:
    assert clean_description(raw) is None


def test_a_description_that_repeats_the_camera_is_dropped() -> None:
    assert clean_description("Canon EOS 5D", camera=("Canon", "Canon EOS 5D")) is None
    assert clean_description("NIKON D750", camera=("NIKON CORPORATION", "NIKON D750")) is None
    assert clean_description("Shot with my Canon", camera=("Canon", "Canon EOS 5D")) == "Shot with my Canon"


def test_a_long_description_is_cut_at_a_word() -> None:
    text = clean_description("word " * 400)
    assert text is not None and len(text) <= MAX_CAPTION_CHARS and text.endswith("word")
