"""Derived pictures: thumbnails and display copies, made once per image and cached on disk."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from PIL import Image

from clipseek.photo.imaging import fit_rgb, probe

THUMBNAIL_SIZE = 320
# Display copies (of formats browsers cannot show) fit in this square: enough for a screen,
# and a few MB however large the original is.
DISPLAY_SIZE = 2048
# Requests for one picture share a lock, so the second waits for the first one's copy
# instead of decoding the original again; 64 stripes keep unrelated pictures apart.
_making = tuple(threading.Lock() for _ in range(64))


def thumbnail_path(folder: Path, sha256: str) -> Path:
    """Where the cached thumbnail of an image lives."""
    return folder / sha256[:2] / f"{sha256}-{THUMBNAIL_SIZE}.jpg"


def display_copy_path(folder: Path, sha256: str) -> Path:
    """Where the cached display copy of an image lives, next to its thumbnail."""
    return folder / sha256[:2] / f"{sha256}-{DISPLAY_SIZE}.png"


def ensure_thumbnail(folder: Path, *, sha256: str, source: Path, max_pixels: int) -> Path:
    """Return the cached thumbnail, making it first if needed (EXIF-oriented, RGB, JPEG).

    Raises ImageDecodeError when the source cannot be read.
    """
    return _ensure(thumbnail_path(folder, sha256), source, max_pixels=max_pixels,
                   side=THUMBNAIL_SIZE, fmt="JPEG", quality=85)


def ensure_display_copy(folder: Path, *, sha256: str, source: Path, max_pixels: int) -> Path:
    """Return the cached PNG display copy, at most DISPLAY_SIZE a side, making it first if needed.

    Raises ImageDecodeError when the source cannot be read.
    """
    return _ensure(display_copy_path(folder, sha256), source, max_pixels=max_pixels,
                   side=DISPLAY_SIZE, fmt="PNG")


FACE_SIZE = 160
# A face is shown with this much of its box around it on each side, so hair and chin show.
FACE_MARGIN = 0.3


def face_thumbnail_path(folder: Path, sha256: str, box: tuple[int, int, int, int]) -> Path:
    """Where the cached square crop of one face (its box in the picture as displayed) lives."""
    left, top, right, bottom = box
    return folder / sha256[:2] / f"{sha256}-face-{left}-{top}-{right}-{bottom}.jpg"


def ensure_face_thumbnail(folder: Path, *, sha256: str, source: Path, box: tuple[int, int, int, int],
                          max_pixels: int) -> Path:
    """Return the cached crop of a face, making it first if needed (a JPEG FACE_SIZE square).

    Raises ImageDecodeError when the source cannot be read.
    """
    target = face_thumbnail_path(folder, sha256, box)
    if target.exists():
        return target
    with _making[hash(target.name) % len(_making)]:
        if not target.exists():
            info = probe(source, max_pixels=max_pixels)
            full = max(info.width, info.height)
            left, top, right, bottom = box
            # Decoded no larger than needed for the face to fill the square.
            side = min(full, max(FACE_SIZE, round(full * FACE_SIZE / max(1, right - left))))
            rgb = fit_rgb(source, max_pixels=max_pixels, side=side)
            scale = max(rgb.size) / full
            pad = (right - left) * FACE_MARGIN
            crop = rgb.crop((round((left - pad) * scale), round((top - pad) * scale),
                             round((right + pad) * scale), round((bottom + pad) * scale)))
            _write_atomically(crop.resize((FACE_SIZE, FACE_SIZE)), target, "JPEG", {"quality": 85})
    return target


def remove_face_thumbnails(folder: Path) -> int:
    """Delete every cached face crop (people turned off: no face stays on disk); return how many."""
    removed = 0
    for path in folder.glob("*/*-face-*.jpg"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def _ensure(target: Path, source: Path, *, max_pixels: int, side: int, fmt: str,
            **params: int) -> Path:
    if target.exists():
        return target
    with _making[hash(target.name) % len(_making)]:
        if not target.exists():
            _write_atomically(fit_rgb(source, max_pixels=max_pixels, side=side), target, fmt, params)
    return target


def _write_atomically(img: Image.Image, target: Path, fmt: str, params: dict[str, int]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written under a name of its own, synced, then renamed: a reader (in this process or
    # another) sees the whole file or none, even after a crash, as browsers keep it a year.
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            img.save(handle, format=fmt, **params)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
