"""Generated files for every failure and format path: corrupt, truncated, exotic modes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def photo_array(seed: int = 0, size: tuple[int, int] = (480, 640)) -> np.ndarray:
    """A smooth, photo-like RGB array (gradients plus noise), deterministic per seed."""
    rng = np.random.default_rng(seed)
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * (1 + seed % 3)) % 256, (y * 2) % 256, (x + y + 40 * seed) % 256], -1)
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def write_bad_files(folder: Path, source: Path) -> dict[str, Path]:
    """Write an empty file, a text file, garbage bytes and a truncated JPEG named .jpg."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "empty": folder / "empty.jpg",
        "text": folder / "notes.jpg",
        "garbage": folder / "garbage.png",
        "truncated": folder / "truncated.jpg",
    }
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not a picture\n")
    files["garbage"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    data = source.read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 3])
    return files


def jpeg_with_orientation(path: Path, orientation: int, size: tuple[int, int] = (300, 200)) -> Path:
    """A JPEG stored landscape whose EXIF says how to rotate it."""
    img = Image.fromarray(photo_array(1, (size[1], size[0])))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif.tobytes())
    return path


def encoded(img: Image.Image, fmt: str) -> bytes:
    """Bytes of an image in a format."""
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()
