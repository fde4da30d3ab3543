"""Thumbnails: made once per image at a fixed size, cached on disk by content hash."""

from __future__ import annotations

from pathlib import Path

from clipseek.imaging import load_rgb

THUMBNAIL_SIZE = 320


def thumbnail_path(folder: Path, sha256: str) -> Path:
    """Where the cached thumbnail of an image lives."""
    return folder / sha256[:2] / f"{sha256}-{THUMBNAIL_SIZE}.jpg"


def ensure_thumbnail(folder: Path, *, sha256: str, source: Path, max_pixels: int) -> Path:
    """Return the cached thumbnail, making it first if needed (EXIF-oriented, RGB, JPEG).

    Raises ImageDecodeError when the source cannot be read.
    """
    target = thumbnail_path(folder, sha256)
    if target.exists():
        return target
    img = load_rgb(source, max_pixels=max_pixels, min_side=THUMBNAIL_SIZE)
    img.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name so a concurrent request never serves half a file.
    tmp = target.with_name(f"{target.name}.{id(img)}.tmp")
    img.save(tmp, format="JPEG", quality=85)
    tmp.replace(target)
    return target

