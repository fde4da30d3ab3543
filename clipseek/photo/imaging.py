"""Reading image files safely: probing, decoding any mode to RGB, and CLIP's preprocessing."""

from __future__ import annotations

import math
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import numpy as np
import pillow_heif
from PIL import ExifTags, Image, UnidentifiedImageError

from clipseek.photo.metadata import PhotoFacts, read_facts

# CLIP's input normalisation (the statistics OpenAI trained with).
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_MEAN = np.array(OPENAI_MEAN, dtype=np.float32)
CLIP_STD = np.array(OPENAI_STD, dtype=np.float32)
CLIP_SIZE = 224


@dataclass(frozen=True)
class Preprocess:
    """How a model wants its input: square side, resize filter and mode, per-channel mean and std.

    The defaults are OpenAI's; open_clip's other checkpoints name their own (MobileCLIP: mean 0,
    std 1, bilinear; SigLIP: 0.5 and 0.5, squashed to the square instead of cropped).
    """

    size: int = CLIP_SIZE
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    # "shortest": shorter side to `size`, then the centre square; "squash": the whole picture
    # resized to the square, its aspect ratio lost.
    resize_mode: str = "shortest"


OPENAI_PREPROCESS = Preprocess()
RESIZE_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
RESIZE_MODES = ("shortest", "squash")

# Phones save HEIC: pillow-heif teaches Pillow to open it (Pillow reads AVIF itself). Only an
# opener is registered here, which is cheap; a library decoder loads on the first such file.
pillow_heif.register_heif_opener()

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".jfif",
     ".heic", ".heif", ".avif"}
)
DEEP_MODES = frozenset({"I;16", "I;16B", "I;16L", "I", "F"})
EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Only JPEG can be decoded at reduced scale; any other format is held whole while it is
# reduced, at up to 4 bytes a pixel (400 MB for 100 megapixels). Above this size, only
# LARGE_DECODE_SLOTS decodes run at once in a process, so concurrent requests or decode
# threads queue instead of multiplying that.
LARGE_DECODE_PIXELS = 16_000_000
LARGE_DECODE_SLOTS = 2
_large_decodes = threading.BoundedSemaphore(LARGE_DECODE_SLOTS)
# Smaller images are returned whole: their full-size copy costs little, and callers' own
# resizing filters do better than an integer box reduction.
REDUCE_ABOVE_PIXELS = 4_000_000
# Conversions to RGB work on bands of about this many pixels (a few MB at a time).
BAND_PIXELS = 1 << 21


class ImageDecodeError(Exception):
    """A file that cannot be used as an image; the message is the reason a person reads."""


@dataclass(frozen=True)
class ImageInfo:
    """What a file's header says about the picture."""

    width: int
    height: int
    format: str


def _open(source: Path | IO[bytes]) -> Image.Image:
    # ClipSeek applies its own pixel limit (with a readable reason) instead of Pillow's
    # decompression-bomb error, which would also reject large JPEGs that draft() makes cheap.
    Image.MAX_IMAGE_PIXELS = None
    try:
        if isinstance(source, Path) and source.stat().st_size == 0:
            raise ImageDecodeError("the file is empty")
        return Image.open(source)
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image format ClipSeek can read") from None
    except FileNotFoundError:
        raise ImageDecodeError(f"the file {source} no longer exists") from None
    except OSError as exc:
        raise ImageDecodeError(f"unreadable image file ({exc})") from None


def probe(path: Path, *, max_pixels: int) -> ImageInfo:
    """Read only the header: dimensions and format, or a reason the file is unusable."""
    return probe_with_facts(path, max_pixels=max_pixels)[0]


def probe_with_facts(path: Path, *, max_pixels: int) -> tuple[ImageInfo, PhotoFacts]:
    """Like `probe`, also reading the photo's EXIF facts from the same open file."""
    with _open(path) as img:
        width, height = img.size
        fmt = img.format or "unknown"
        facts = read_facts(img)
    _check_size(width, height, fmt, max_pixels)
    return ImageInfo(width=width, height=height, format=fmt), facts


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


def to_rgb(img: Image.Image, *, value_range: tuple[float, float] | None = None) -> Image.Image:
    """Convert any Pillow mode (palette, CMYK, 16-bit, alpha, grey) to 8-bit RGB.

    16-bit and float images are scaled from `value_range` (their own extremes by default)
    through a float32 copy, so large ones should be converted a band at a time.
    """
    if img.mode in DEEP_MODES:
        # Their actual range is stretched to 0-255 rather than clipped.
        lo, hi = value_range if value_range is not None else _extremes(img)
        arr = np.asarray(img, dtype=np.float32)
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(scaled.astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGB" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def _extremes(img: Image.Image) -> tuple[float, float]:
    lo, hi = cast(tuple[float, float], img.getextrema())
    return lo, hi


def load_rgb(path: Path, *, max_pixels: int, min_side: int = CLIP_SIZE) -> Image.Image:
    """Decode a file to an upright RGB image; large ones shrink while the shorter side stays `min_side`.

    JPEGs are decoded at reduced scale, which saves most of the time and memory on photos;
    other formats above REDUCE_ABOVE_PIXELS are decoded whole and reduced band by band.
    """
    with _open(path) as img:
        return _decode(img, max_pixels=max_pixels, needed=_covering(img.size, min_side))


def fit_rgb(path: Path, *, max_pixels: int, side: int) -> Image.Image:
    """Decode a file to an upright RGB image that fits in a square of `side` pixels."""
    with _open(path) as img:
        rgb = _decode(img, max_pixels=max_pixels, needed=_fitting(img.size, side))
    rgb.thumbnail((side, side))
    return rgb


def read_rgb(stream: IO[bytes], *, max_pixels: int, min_side: int = CLIP_SIZE) -> Image.Image:
    """Like `load_rgb`, for an open binary stream (an upload, say)."""
    with _open(stream) as img:
        return _decode(img, max_pixels=max_pixels, needed=_covering(img.size, min_side))


def _covering(size: tuple[int, int], side: int) -> tuple[int, int]:
    return _scaled(size, side / max(1, min(size)))


def _fitting(size: tuple[int, int], side: int) -> tuple[int, int]:
    return _scaled(size, side / max(1, *size))


def _scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    if scale >= 1:
        return size
    return max(1, math.ceil(size[0] * scale)), max(1, math.ceil(size[1] * scale))


def _decode(img: Image.Image, *, max_pixels: int, needed: tuple[int, int]) -> Image.Image:
    _check_size(img.width, img.height, img.format or "unknown", max_pixels)
    try:
        if img.format == "JPEG":
            img.draft("RGB", needed)
        pixels = img.width * img.height
        factor = max(1, min(img.width // needed[0], img.height // needed[1]))
        if pixels <= REDUCE_ABOVE_PIXELS:
            factor = 1
        slot = _large_decodes if pixels > LARGE_DECODE_PIXELS else nullcontext()
        with slot:
            img.load()
            orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
            rgb = _reduced_rgb(img, factor)
            # The full-size pixels go now, before the next large decode may start (the base
            # class's close: the file's would also close a stream the caller owns).
            Image.Image.close(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"the image data is corrupt or truncated ({exc})") from None
    method = EXIF_TRANSPOSE.get(orientation)
    return rgb.transpose(method) if method is not None else rgb


def _reduced_rgb(img: Image.Image, factor: int) -> Image.Image:
    # Band by band, so the only full-size buffer is the decoded image in its own mode: a
    # whole-image conversion would add more (16-bit data passes through float32).
    value_range = _extremes(img) if img.mode in DEEP_MODES else None
    width, height = img.size
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    rows = max(1, BAND_PIXELS // (width * factor)) * factor
    for top in range(0, height, rows):
        band = to_rgb(img.crop((0, top, width, min(height, top + rows))), value_range=value_range)
        out.paste(band.reduce(factor) if factor > 1 else band, (0, top // factor))
    return out


def clip_pixels(img: Image.Image, preprocess: Preprocess = OPENAI_PREPROCESS) -> np.ndarray:
    """A model's preprocessing (OpenAI's by default): resize, centre crop, normalise; CHW float32."""
    size = preprocess.size
    width, height = img.size
    method = RESIZE_FILTERS[preprocess.interpolation]
    if preprocess.resize_mode == "squash":
        cropped = img.resize((size, size), method, reducing_gap=3.0)
    else:
        scale = size / min(width, height)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
        resized = img.resize((new_w, new_h), method, reducing_gap=3.0)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        cropped = resized.crop((left, top, left + size, top + size))
    mean, std = np.array(preprocess.mean, dtype=np.float32), np.array(preprocess.std, dtype=np.float32)
    arr = (np.asarray(cropped, dtype=np.float32) / 255.0 - mean) / std
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def is_image_name(path: Path) -> bool:
    """Whether a file name has an image extension (used when walking folders)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS
