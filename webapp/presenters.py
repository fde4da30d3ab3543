"""Turning service results into the dictionaries the API returns and the templates show."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from flask import url_for

from clipseek.indexing.failures import is_retryable
from clipseek.library.captions import caption_dict, listed_captions
from clipseek.photo.places import Place
from clipseek.search.run import SearchHit, SearchPage
from clipseek.store.tables import Caption, CaptionSource, Image, ImageStatus
from clipseek.util.user_text import counted as counted  # the pages count with the same rule

# An id no image has, to make a URL template from url_for once per page of results.
_ANY_ID = 987654321987654321
_HIT_URLS = (("thumbnail_url", "files.thumbnail"), ("image_url", "files.original"),
             ("page_url", "pages.image"))


def _url_templates() -> list[tuple[str, str, str]]:
    """For each URL of a hit: its key and url_for's URL split around the image id."""
    out = []
    for key, endpoint in _HIT_URLS:
        before, _, after = url_for(endpoint, image_id=_ANY_ID).partition(str(_ANY_ID))
        out.append((key, before, after))
    return out


def hit_dict(hit: SearchHit, urls: list[tuple[str, str, str]] | None = None) -> dict[str, Any]:
    """One ranked result with the URLs of its thumbnail, file and page (`urls`: _url_templates())."""
    data: dict[str, Any] = {
        "rank": hit.rank, "image_id": hit.image_id, "original_name": hit.name,
        "score": None if hit.score is None else round(hit.score, 6),
        "captions": hit.captions, "path": hit.path, "width": hit.width, "height": hit.height,
        "source": hit.source,
    }
    for key, before, after in urls or _url_templates():
        data[key] = f"{before}{hit.image_id}{after}"
    return data


def page_dict(page: SearchPage) -> dict[str, Any]:
    """A page of results as the API returns it."""
    data = page.to_dict()
    # url_for three times a hit was 1.4 ms of a request for 24 results: once a page instead.
    urls = _url_templates()
    data["results"] = [hit_dict(h, urls) for h in page.hits]
    return data


def image_dict(image: Image) -> dict[str, Any]:
    """Everything ClipSeek knows about one image."""
    return {
        "image_id": image.id, "status": image.status, "error": image.error,
        # Whether POST /api/images/retry would queue it again.
        "retryable": image.status == ImageStatus.FAILED and is_retryable(image.error),
        "original_name": image.original_name, "path": image.path, "source": image.source,
        "collection": image.collection, "width": image.width, "height": image.height,
        "format": image.format, "file_size": image.file_size, "sha256": image.sha256,
        "captions": [c.text for c in listed_captions(image.captions)],
        # The same captions with their ids and where each came from, for editing them.
        "caption_details": [caption_dict(c) for c in listed_captions(image.captions)],
        "text_found": text_found(image),
        "created_at": image.created_at.isoformat() if image.created_at else None,
        "indexed_at": image.indexed_at.isoformat() if image.indexed_at else None,
        "missing_since": image.missing_since.isoformat() if image.missing_since else None,
        # The camera's own wall-clock time, without a zone, as EXIF gives it.
        "taken_at": image.taken_at.isoformat() if image.taken_at else None,
        "camera": " ".join(part for part in (image.camera_make, image.camera_model) if part) or None,
        "latitude": image.latitude, "longitude": image.longitude,
        # Named from the coordinates; None while not looked up, or where they name no place.
        "place": None if image.place_country is None else {
            "text": ", ".join(place_parts(image)), "city": image.place_city,
            "region": image.place_region, "country": image.place_country,
            "country_code": image.place_country_code},
        "display_width": image.display_width or image.width,
        "display_height": image.display_height or image.height,
        "thumbnail_url": url_for("files.thumbnail", image_id=image.id),
        "image_url": url_for("files.original", image_id=image.id),
        "page_url": url_for("pages.image", image_id=image.id),
    }


def words_read(image: Image) -> Caption | None:
    """The caption holding the words read in the picture, if any were found."""
    return next((c for c in image.captions if c.source == CaptionSource.OCR), None)


def text_found(image: Image) -> dict[str, Any]:
    """The words read in the picture, line by line, with the reader's confidence and state."""
    found = words_read(image)
    return {"state": image.ocr_state, "error": image.ocr_error,
            "lines": found.text.splitlines() if found else [],
            "confidence": None if found is None or found.confidence is None else round(found.confidence, 3)}


def missing_notice(image: Image, subject: str = "this image") -> str | None:
    """The sentence that says since when an image's file is missing (None while it is there)."""
    if image.status != ImageStatus.MISSING:
        return None
    since = (image.missing_since.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
             if image.missing_since else "the last sync")
    return (f"The file of {subject} has been missing since {since} (it was at {image.path}); put "
            "it back or mount its drive and sync the folder again, or delete the image.")


def server_timing(page: SearchPage | None) -> dict[str, str]:
    """A Server-Timing header with the encode and query times (browsers' devtools show it)."""
    if page is None:
        return {}
    return {"Server-Timing": ", ".join(f"{name};dur={ms:.2f}" for name, ms in page.timings_ms.items())}


# How each source reads after "Source": the stored words are filter values, not prose.
SOURCE_WORDS = {"upload": "uploaded in the browser", "folder": "a folder on the server",
                "samples": "the bundled sample photos", "coco": "the MS-COCO data set"}


def score_text(score: float) -> str:
    """A score with two decimals, a real minus sign, and never "-0.00"."""
    text = f"{abs(score):.2f}"
    return f"\u2212{text}" if score < 0 and text != "0.00" else text


def source_text(source: str) -> str:
    """Where an image came from, in words."""
    return SOURCE_WORDS.get(source, source)


def alt_text(captions: Sequence[str], name: str) -> str:
    """A picture's alternative text: its first caption, else its file name."""
    return captions[0] if captions else name


# How each parameter of a search reads on its chip, in the order the chips show.
CHIP_LABELS = {"example": "Like your example picture", "like": "Like image", "collection": "Collection",
               "album": "Album", "person": "Person", "source": "Source", "folder": "Folder",
               "format": "Format", "taken_from": "Taken from", "taken_to": "Taken to",
               "added_from": "Added from", "added_to": "Added to", "orientation": "Orientation",
               "min_size": "At least", "mode": "Mode", "sort": "Order", "min_score": "Minimum score",
               "all": "Weaker matches shown"}
_CHIP_VALUES = {"example": "", "all": "", "sort": "newest first"}


@dataclass(frozen=True)
class Chip:
    """One setting of a search shown as a chip: its words, and the search without it."""

    name: str
    label: str
    value: str
    without: dict[str, str]


def search_chips(params: dict[str, str], *, albums: Sequence[str] = ()) -> list[Chip]:
    """A chip for the example and for each filter, mode and order a search sets (its `params()`);
    `albums` are the names of the albums it looks in, which read better than their ids."""
    values = {**_CHIP_VALUES, "album": ", ".join(albums)} if albums else _CHIP_VALUES
    return [Chip(name, label, values.get(name, params[name]),
                 {k: v for k, v in params.items() if k != name})
            for name, label in CHIP_LABELS.items() if name in params]


def place_parts(image: Image) -> list[str]:
    """The city, region and country an image was placed in, each once (none if it has no place)."""
    if image.place_country is None:
        return []
    return Place(city=image.place_city or "", region=image.place_region, country=image.place_country,
                 country_code=image.place_country_code or "").parts


def coordinates_text(latitude: float, longitude: float) -> str:
    """A position as people read it: "38.72230° N, 9.13930° W"."""
    return (f"{abs(latitude):.5f}° {'N' if latitude >= 0 else 'S'}, "
            f"{abs(longitude):.5f}° {'E' if longitude >= 0 else 'W'}")
