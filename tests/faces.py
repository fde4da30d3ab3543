"""Real face photos for the people tests and the benchmark: Grace Hopper (matplotlib) and the
astronaut Eileen Collins (scikit-image), each with flips, crops, resizes and re-encodes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np
import skimage.data
from PIL import Image, ImageOps

# Ways the same picture comes back: mirrored, cropped, smaller, larger, re-encoded badly.
VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "original": lambda im: im,
    "mirrored": ImageOps.mirror,
    "cropped": lambda im: im.crop((im.width // 10, im.height // 12, im.width - im.width // 10,
                                   im.height - im.height // 20)),
    "smaller": lambda im: im.resize((im.width * 2 // 3, im.height * 2 // 3)),
    "larger": lambda im: im.resize((im.width * 2, im.height * 2)),
}


def face_sources() -> dict[str, Image.Image]:
    """The two people, one picture each, as RGB."""
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(hopper) as img:
        grace = img.convert("RGB")
    astronaut = skimage.data.astronaut()  # type: ignore[no-untyped-call]
    return {"grace": grace, "astronaut": Image.fromarray(astronaut)}


def no_face() -> Image.Image:
    """A picture with no face in it (a cup of coffee)."""
    return Image.fromarray(skimage.data.coffee())  # type: ignore[no-untyped-call]


def write_face_photos(folder: Path, *, variants: tuple[str, ...] = tuple(VARIANTS)) -> dict[str, Path]:
    """Write each person's variants (JPEG quality 60, so each is also re-encoded) and the coffee;
    return them by name, e.g. "grace-mirrored"."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for person, picture in face_sources().items():
        for name in variants:
            path = folder / f"{person}-{name}.jpg"
            VARIANTS[name](picture).save(path, "JPEG", quality=60)
            written[path.stem] = path
    coffee = folder / "coffee.jpg"
    no_face().save(coffee, "JPEG", quality=90)
    written["coffee"] = coffee
    return written


def rotated_with_exif(picture: Image.Image, path: Path) -> Path:
    """Save the picture's pixels turned a quarter, with EXIF orientation 6 turning them upright again."""
    turned = picture.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    turned.save(path, "JPEG", quality=90, exif=exif.tobytes())
    return path


def descriptor_gap(a: np.ndarray, b: np.ndarray) -> float:
    """The Euclidean distance between two descriptors."""
    return float(np.linalg.norm(a - b))
