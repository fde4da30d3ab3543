"""Titles, descriptions and keywords read from real photos' EXIF and XMP, and what is left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipseek.photo.metadata import PhotoText, read_facts_from
from clipseek.photo.xmp_text import MAX_XMP_BYTES, xmp_texts
from tests.images import XMP_TEMPLATE, photo_with_text, xmp_packet

XP_TITLE, XP_COMMENT, XP_KEYWORDS, XP_SUBJECT = 0x9C9B, 0x9C9C, 0x9C9E, 0x9C9F


def test_exif_description_xp_tags_and_user_comment_are_read(tmp_path: Path) -> None:
    photo = photo_with_text(
        tmp_path / "a.jpg", description="Sonnenuntergang am Strand von Münster".encode(),
        xp={XP_TITLE: "Family at the lake", XP_SUBJECT: "Summer holiday", XP_COMMENT: "Zoë's first swim",
            XP_KEYWORDS: "lake; swimming;family"},
        user_comment=b"ASCII\0\0\0Taken from the pier")
    assert read_facts_from(photo).text == PhotoText(exif=(
        "Sonnenuntergang am Strand von Münster", "Family at the lake", "Summer holiday",
        "Zoë's first swim", "lake, swimming, family", "Taken from the pier"))


@pytest.mark.parametrize("comment", [b"UNICODE\0" + "Möwe am Hafen".encode("utf-16-le"),
                                     b"UNICODE\0" + "Möwe am Hafen".encode("utf-16-be"),
                                     b"\0" * 8 + "Möwe am Hafen".encode()])
def test_a_user_comment_is_read_in_each_character_code(tmp_path: Path, comment: bytes) -> None:
    photo = photo_with_text(tmp_path / "a.jpg", user_comment=comment)
    assert read_facts_from(photo).text == PhotoText(exif=("Möwe am Hafen",))


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_xmp_title_description_and_keywords_are_read(tmp_path: Path, suffix: str) -> None:
    packet = xmp_packet(title="Zebra crossing", description="A zebra crossing in Abbey Road",
                        keywords=("zebra", "street", "London"))
    photo = photo_with_text(tmp_path / f"a{suffix}", xmp=packet)
    assert read_facts_from(photo).text == PhotoText(xmp=(
        "Zebra crossing", "A zebra crossing in Abbey Road", "zebra, street, London"))


def test_text_written_in_both_exif_and_xmp_counts_once(tmp_path: Path) -> None:
    photo = photo_with_text(tmp_path / "a.jpg", description="Red bus on a bridge",
                            xmp=xmp_packet(description="red bus on a bridge", keywords=("bus",)))
    assert read_facts_from(photo).text == PhotoText(exif=("Red bus on a bridge",), xmp=("bus",))


@pytest.mark.parametrize("junk", ["OLYMPUS DIGITAL CAMERA", "SONY DSC", "   ", "Default",
                                  "SAMSUNG CAMERA PICTURES", "Canon EOS R6"])
def test_camera_defaults_and_blanks_give_no_text(tmp_path: Path, junk: str) -> None:
    photo = photo_with_text(tmp_path / "a.jpg", description=junk, make="Canon", model="Canon EOS R6",
                            xp={XP_TITLE: "  "}, user_comment=b"ASCII\0\0\0" + b" " * 20)
    assert read_facts_from(photo).text == PhotoText()


def test_a_photo_without_text_and_a_damaged_file_give_none(tmp_path: Path) -> None:
    assert read_facts_from(photo_with_text(tmp_path / "plain.jpg")).text == PhotoText()
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff\xe1 not really")
    assert read_facts_from(junk).text == PhotoText()


def test_xmp_with_a_dtd_an_entity_bomb_or_broken_xml_is_ignored() -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            + XMP_TEMPLATE.format("<dc:title><rdf:Alt><rdf:li>&b;</rdf:li></rdf:Alt></dc:title>").encode())
    external = (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                + XMP_TEMPLATE.format("<dc:title>&e;</dc:title>").encode())
    huge = xmp_packet(description="x " * (MAX_XMP_BYTES // 2))
    for packet in (bomb, external, huge, b"<x:xmpmeta><unclosed>", "not xml at all", None, 42):
        assert list(xmp_texts(packet)) == []


def test_xmp_in_the_short_attribute_form_and_language_alternatives(tmp_path: Path) -> None:
    packet = XMP_TEMPLATE.format(
        '<dc:title><rdf:Alt><rdf:li xml:lang="de">Hafen</rdf:li>'
        '<rdf:li xml:lang="x-default">Harbour</rdf:li></rdf:Alt></dc:title>').replace(
        'rdf:about=""', 'rdf:about="" dc:description="Boats at dusk"').encode()
    assert list(xmp_texts(packet)) == ["Harbour", "Boats at dusk"]
