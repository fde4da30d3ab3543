"""Reading image files safely: probing, decoding any mode to RGB, and CLIP's preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# CLIP's input normalisation (the statistics OpenAI trained with).
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
CLIP_SIZE = 224

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".jfif"}
)


class ImageDecodeError(Exception):
    """A file that cannot be used as an image; the message is the reason a person reads."""


@dataclass(frozen=True)
class ImageInfo:
    """What a file's header says about the picture."""

    width: int
    height: int
    format: str


def _open(path: Path) -> Image.Image:
    # ClipSeek applies its own pixel limit (with a readable reason) instead of Pillow's
    # decompression-bomb error, which would also reject large JPEGs that draft() makes cheap.
    Image.MAX_IMAGE_PIXELS = None
    try:
        if path.stat().st_size == 0:
            raise ImageDecodeError("the file is empty")
        return Image.open(path)
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image format ClipSeek can read") from None
    except FileNotFoundError:
        raise ImageDecodeError(f"the file {path} no longer exists") from None
    except OSError as exc:
        raise ImageDecodeError(f"unreadable image file ({exc})") from None


def probe(path: Path, *, max_pixels: int) -> ImageInfo:
    """Read only the header: dimensions and format, or a reason the file is unusable."""
    with _open(path) as img:
        width, height = img.size
        fmt = img.format or "unknown"
    _check_size(width, height, fmt, max_pixels)
    return ImageInfo(width=width, height=height, format=fmt)


def _check_size(width: int, height: int, fmt: str, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"the image has no pixels ({width}x{height})")
    # JPEGs decode at up to 1/8 scale through draft(), so they may be 64 times larger.
    limit = max_pixels * 64 if fmt == "JPEG" else max_pixels
    if width * height > limit:
        raise ImageDecodeError(
            f"the image is {width}x{height} pixels, more than the limit of {limit:,} "
            "(raise CLIPSEEK_MAX_IMAGE_PIXELS to accept it)"
        )


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode (palette, CMYK, 16-bit, alpha, grey) to 8-bit RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float images: scale their actual range to 0-255 rather than clipping.
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(scaled.astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGB" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def load_rgb(path: Path, *, max_pixels: int, min_side: int = CLIP_SIZE) -> Image.Image:
    """Decode a file to an upright RGB image, at least `min_side` on its shorter side.

    JPEGs are decoded at reduced scale when they are much larger than needed, which
    saves most of the decoding time and memory on photos.
    """
    with _open(path) as img:
        return _decode(img, max_pixels=max_pixels, min_side=min_side)


def read_rgb(stream: IO[bytes], *, max_pixels: int, min_side: int = CLIP_SIZE) -> Image.Image:
    """Like `load_rgb`, for an open binary stream (an upload, say)."""
    try:
        img = Image.open(stream)
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image format ClipSeek can read") from None
    with img:
        return _decode(img, max_pixels=max_pixels, min_side=min_side)


def _decode(img: Image.Image, *, max_pixels: int, min_side: int) -> Image.Image:
    _check_size(img.width, img.height, img.format or "unknown", max_pixels)
    try:
        if img.format == "JPEG":
            # EXIF rotations swap sides, so ask for the shorter side in both directions.
            img.draft("RGB", (min_side, min_side))
        img.load()
        upright = ImageOps.exif_transpose(img)
        rgb = to_rgb(upright)
        rgb.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"the image data is corrupt or truncated ({exc})") from None
    return rgb


def clip_pixels(img: Image.Image, size: int = CLIP_SIZE) -> np.ndarray:
    """CLIP's preprocessing: shorter side to `size` (bicubic), centre crop, normalise; CHW."""
    width, height = img.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = img.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    cropped = resized.crop((left, top, left + size, top + size))
    arr = np.asarray(cropped, dtype=np.float32) / 255.0
    arr = (arr - CLIP_MEAN) / CLIP_STD
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def is_image_name(path: Path) -> bool:
    """Whether a file name has an image extension (used when walking folders)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS
