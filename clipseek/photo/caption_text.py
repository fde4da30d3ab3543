"""Caption text a person would search for, from a file name or a photo's own description.

`beach-sunset-2024.jpg` says "beach sunset 2024"; `IMG_0042.JPG`, `PXL_20240101_123456789.jpg`,
a timestamp or a hash says nothing. Years and other short numbers are kept beside real words
(a person types "2024"); counters, timestamps and hashes are dropped.
"""

from __future__ import annotations

import itertools
import re
import unicodedata

# The longest caption ClipSeek stores, whoever writes it.
MAX_CAPTION_CHARS = 1000

# Names cameras, phones, scanners and editors give files: never what the picture shows.
_CAMERA_WORDS = frozenset({
    "img", "imgp", "image", "dsc", "dscn", "dscf", "dcim", "sdc", "cimg", "pict", "pxl", "mvimg",
    "vid", "mvi", "mov", "pano", "burst", "cover", "mp", "wa", "gopr", "gp", "dji", "screenshot",
    "screenshots", "snapshot", "copy", "edit", "edited", "untitled", "export", "exported", "scan",
    "signal", "whatsapp", "telegram", "download", "downloaded", "file", "unnamed", "original",
})
# Words that say something beside others but nothing alone ("photo of mum", not "photo").
_FILLER_WORDS = frozenset({
    "a", "an", "the", "at", "of", "on", "in", "and", "with", "to", "for", "from", "by",
    "photo", "photos", "picture", "pic", "pics", "screen", "shot", "new", "final", "jpeg", "jpg",
})
_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)
# A date (2024-01-01, 20240101, 2024_01_01) with the time that often follows it.
_DATE_TIME = re.compile(
    r"(?<!\d)(?:19|20)\d\d[-_.]?(?:0[1-9]|1[0-2])[-_.]?(?:0[1-9]|[12]\d|3[01])"
    r"(?:(?:[-_. T]|\s*at\s*)?\d{1,2}[-_.:h]?\d{2}(?:[-_.:m]?\d{2})?\d*)?(?!\d)", re.I)
_TIME = re.compile(r"(?<!\d)\d{1,2}[.:-]\d{2}[.:-]\d{2}(?!\d)")
# Copy counters: "image (3)", "beach - Copy", "beach copy 2".
_COPY_COUNTER = re.compile(r"\(\d+\)|\[\d+\]")
_HEX = re.compile(r"[0-9a-f]+", re.I)
_CHUNK = re.compile(r"[^\W_]+")
# A description a camera writes by itself: "OLYMPUS DIGITAL CAMERA", "SONY DSC", ...
_CAMERA_DEFAULT = re.compile(
    r"^[A-Z0-9 _.-]*(?:DIGITAL (?:STILL )?CAMERA|CAMERA PICTURES?|DSC|JPEG[_ ]PICTURE|DIGITAL IMAGE)$")
_JUNK_DESCRIPTIONS = frozenset({
    "default", "untitled", "image", "picture", "photo", "description", "imagedescription",
    "title", "subject", "comment", "keywords", "none", "<none>", "n/a", "na", "null", "ascii",
    "unicode", "jis", "hdr", "core", "camera", "screenshot", "dcim", "created with gimp",
    "lead technologies inc. v1.01", "exif_jpeg_picture", "copyright", "all rights reserved",
})


def _split_chunk(chunk: str) -> list[str]:
    """Split camelCase and letter-digit boundaries: "beachSunset2024" -> beach, Sunset, 2024."""
    parts: list[str] = []
    current = ""
    for i, ch in enumerate(chunk):
        if current:
            prev = current[-1]
            nxt = chunk[i + 1] if i + 1 < len(chunk) else ""
            boundary = (prev.isdigit() != ch.isdigit()) or (prev.islower() and ch.isupper()) or (
                prev.isupper() and ch.isupper() and nxt.islower())  # "HTTPServer" -> HTTP, Server
            if boundary:
                parts.append(current)
                current = ""
        current += ch
    if current:
        parts.append(current)
    return parts


def _looks_like_hash(chunk: str) -> bool:
    """Hex digests, ids and random keys: long, and digits mixed into them throughout."""
    if len(chunk) < 8 or not any(ch.isdigit() for ch in chunk):
        return False
    if _HEX.fullmatch(chunk):
        return True
    changes = sum(1 for a, b in itertools.pairwise(chunk) if a.isdigit() != b.isdigit())
    return changes >= 3


def _keeps_number(part: str) -> bool:
    """Years and short numbers ("route 66") say something; counters and ids do not."""
    return len(part) <= 4 and not part.startswith("0")


def _words(chunk: str) -> list[str]:
    if _looks_like_hash(chunk):
        return []
    parts = _split_chunk(chunk)
    mixed = any(p.isdigit() for p in parts) and any(not p.isdigit() for p in parts)
    words = [p for p in parts if not p.isdigit() and p.lower() not in _CAMERA_WORDS
             and not (mixed and len(p) <= 2)]
    if mixed and not words:
        return []  # "DSC01234", "P1010001": a counter with a camera's prefix
    return [p for p in parts if p in words or (p.isdigit() and _keeps_number(p))]


def caption_from_filename(name: str) -> str | None:
    """The words in a file name a person would search for, or None if it carries none."""
    stem = name.replace("\\", "/").rsplit("/", 1)[-1]
    if "." in stem.strip("."):
        stem = stem.rsplit(".", 1)[0]
    stem = unicodedata.normalize("NFC", stem)
    for pattern in (_UUID, _DATE_TIME, _TIME, _COPY_COUNTER):
        stem = pattern.sub(" ", stem)
    words = [word for chunk in _CHUNK.findall(stem) for word in _words(chunk)]
    if not any(w.isalpha() and w.lower() not in _FILLER_WORDS and len(w) > 1 for w in words):
        return None
    return " ".join(words)[:MAX_CAPTION_CHARS]


def clean_description(text: str, *, camera: tuple[str | None, ...] = ()) -> str | None:
    """A photo's own description or title, tidied; None for blanks and what cameras write by themselves.

    `camera` holds the make and model, which some cameras copy into the description.
    """
    kept = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    kept = " ".join(unicodedata.normalize("NFC", kept).split())
    if not kept or not any(ch.isalpha() for ch in kept):
        return None
    if kept.lower() in _JUNK_DESCRIPTIONS or _CAMERA_DEFAULT.match(kept):
        return None
    names = {c.strip().lower() for c in camera if c}
    if kept.lower() in names or (len(names) == 2 and kept.lower() == " ".join(
            c.strip().lower() for c in camera if c)):
        return None
    if " " not in kept and caption_from_filename(kept) is None:
        return None  # a file name such as "IMG_0042" copied into the description
    return shorten(kept)


def shorten(text: str) -> str:
    """Cut a text to the caption limit, at a word boundary where there is one."""
    if len(text) <= MAX_CAPTION_CHARS:
        return text
    cut = text[:MAX_CAPTION_CHARS]
    return cut.rsplit(" ", 1)[0] if " " in cut else cut
