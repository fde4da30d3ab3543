"""Titles, descriptions and keywords from a photo's XMP packet (Dublin Core), read safely."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

# Real packets are a few KiB (a JPEG segment holds at most 64 KiB); anything far larger is
# not worth parsing for a caption.
MAX_XMP_BYTES = 1 << 20
_DC = "{http://purl.org/dc/elements/1.1/}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# A DTD is how entity bombs and external entities get in; XMP never needs one.
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.I)


def _parse(packet: object) -> ET.Element | None:
    if isinstance(packet, str):
        packet = packet.encode("utf-8", "replace")
    if not isinstance(packet, bytes) or len(packet) > MAX_XMP_BYTES or _DTD.search(packet):
        return None
    packet = packet.strip(b"\0 \t\r\n")
    try:
        return ET.fromstring(packet)
    except ET.ParseError:
        return None


def _items(prop: ET.Element) -> list[ET.Element]:
    """The rdf:li of a Bag, Seq or Alt, or the property itself when it holds plain text."""
    items = list(prop.iter(f"{_RDF}li"))
    return items or [prop]


def _alt_text(prop: ET.Element) -> str | None:
    """A language alternative's default text (x-default), else its first one."""
    items = _items(prop)
    chosen = next((li for li in items if li.get(_LANG) == "x-default"), items[0])
    return "".join(chosen.itertext()).strip() or None


def xmp_texts(packet: object) -> Iterator[str]:
    """dc:title, dc:description and dc:subject (keywords joined by commas) of an XMP packet.

    A packet that is too large, declares a DTD, or is not well-formed yields nothing.
    """
    root = _parse(packet)
    if root is None:
        return
    for description in root.iter(f"{_RDF}Description"):
        for name in ("title", "description"):
            for prop in description.iter(f"{_DC}{name}"):
                if text := _alt_text(prop):
                    yield text
            if text := description.get(f"{_DC}{name}"):  # the short attribute form
                yield text
        for prop in description.iter(f"{_DC}subject"):
            keywords = ["".join(li.itertext()).strip() for li in _items(prop)]
            if joined := ", ".join(k for k in keywords if k):
                yield joined
