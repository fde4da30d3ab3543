"""The sample photos ClipSeek ships with: scikit-image's test images and matplotlib's Grace Hopper."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clipseek.library.register import Candidate

# name in skimage.data -> (file name, caption written for it)
SKIMAGE_SAMPLES: dict[str, tuple[str, str]] = {
    "astronaut": ("astronaut.jpg", "an astronaut in a white space suit in front of an American flag"),
    "coffee": ("coffee.jpg", "a cup of coffee on a saucer with a spoon"),
    "chelsea": ("cat.jpg", "a tabby cat looking to the side"),
    "rocket": ("rocket.jpg", "a rocket on the launch pad against a blue sky"),
    "hubble_deep_field": ("galaxies.jpg", "hundreds of galaxies in deep space"),
    "immunohistochemistry": ("tissue.jpg", "a stained tissue sample under a microscope"),
    "stereo_motorcycle": ("motorcycle.jpg", "a red motorcycle parked in a room"),
    "retina": ("retina.jpg", "a photograph of the back of a human eye"),
    "colorwheel": ("colorwheel.png", "a colour wheel with every hue"),
    "camera": ("cameraman.png", "a black and white photo of a man with a camera on a tripod"),
    "coins": ("coins.png", "old coins lying on a table"),
    "moon": ("moon.png", "the surface of the moon with craters"),
    "page": ("page.png", "a scanned page of printed text"),
    "text": ("text.png", "handwritten and printed text on a photograph"),
    "grass": ("grass.png", "close-up of grass"),
    "gravel": ("gravel.png", "a close-up of gravel stones"),
    "brick": ("brick.png", "a brick wall"),
    "horse": ("horse.png", "the silhouette of a horse"),
    "logo": ("logo.png", "the scikit-image logo on a transparent background"),
    "clock": ("clock.png", "a clock on a wall"),
    "cell": ("cell.png", "a cell seen under a microscope"),
}


def _as_image(array: np.ndarray) -> Image.Image:
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    return Image.fromarray(array)


def write_sample_photos(folder: Path) -> list[Candidate]:
    """Write the sample photos into `folder` (once) and return them with their captions."""
    import matplotlib
    import skimage.data

    folder.mkdir(parents=True, exist_ok=True)
    candidates = []
    for name, (filename, caption) in SKIMAGE_SAMPLES.items():
        target = folder / filename
        if not target.exists():
            array = getattr(skimage.data, name)()
            if isinstance(array, tuple):  # stereo_motorcycle returns (left, right, disparity)
                array = array[0]
            options: dict[str, Any] = {"quality": 92} if filename.endswith(".jpg") else {}
            _as_image(array).save(target, **options)
        candidates.append(Candidate(path=target, source="samples", collection="samples",
                                    captions=(caption,)))
    hopper = folder / "grace_hopper.jpg"
    if not hopper.exists():
        source = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        hopper.write_bytes(source.read_bytes())
    candidates.append(Candidate(path=hopper, source="samples", collection="samples",
                                captions=("a portrait of Grace Hopper in a navy uniform",)))
    return candidates
