"""Perceptual hashes: 64 bits that stay put when a picture is re-encoded, resized or lightly edited.

The DCT hash (pHash): the picture in grey, squeezed to 32x32, keeps the 8x8 lowest spatial
frequencies of its discrete cosine transform, one bit each: above their median or not. JPEG
artefacts, scaling, brightness and contrast change the high frequencies and the overall
level, which it leaves out; two different pictures differ in about half of the bits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from clipseek.photo.imaging import load_rgb

HASH_BITS = 64
_SIDE = 32
_KEEP = 8


def _dct_rows(side: int, keep: int) -> np.ndarray:
    """The first `keep` rows of the orthonormal DCT-II matrix for `side` samples."""
    k = np.arange(keep)[:, None]
    n = np.arange(side)[None, :]
    rows: np.ndarray = np.cos(np.pi * k * (2 * n + 1) / (2 * side)) * np.sqrt(2.0 / side)
    rows[0] /= np.sqrt(2.0)
    return rows


# Built once: the low-frequency part of the transform is two small matrix products.
_DCT = _dct_rows(_SIDE, _KEEP)


def perceptual_hash(img: Image.Image) -> str:
    """The picture's 64-bit DCT hash as pgvector writes a bit string: '0' and '1', 64 of them.

    `img` is the picture as people see it (upright, decoded at any size: the hash of a
    reduced decode is the hash of the whole).
    """
    grey = img.convert("L").resize((_SIDE, _SIDE), Image.Resampling.LANCZOS, reducing_gap=2.0)
    pixels = np.asarray(grey, dtype=np.float64)
    low = (_DCT @ pixels @ _DCT.T).ravel()
    bits = low > np.median(low)
    return "".join("1" if bit else "0" for bit in bits)


def hash_file(path: Path, *, max_pixels: int) -> str:
    """The hash of an image file, decoded as indexing decodes it; raises ImageDecodeError."""
    return perceptual_hash(load_rgb(path, max_pixels=max_pixels))


def hamming_distance(a: str, b: str) -> int:
    """How many of the bits of two hashes differ."""
    if len(a) != len(b):
        raise ValueError(f"hashes of {len(a)} and {len(b)} bits cannot be compared")
    return sum(x != y for x, y in zip(a, b, strict=True))
