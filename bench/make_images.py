"""COCO-like test photos: crops of the sample photos at varied sizes, re-encoded as JPEG."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from clipseek.library.samples import write_sample_photos


def make_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Write `count` distinct JPEGs of about 640x480 (COCO's typical size) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for candidate in write_sample_photos(folder / ".samples"):
        with Image.open(candidate.path) as img:
            sources.append(img.convert("RGB"))
    rng = np.random.default_rng(seed)
    paths = []
    for n in range(count):
        target = folder / f"{n:07d}.jpg"
        paths.append(target)
        if target.exists():
            continue
        src = sources[n % len(sources)]
        # A random crop of 40-100% of the source, scaled so the long side is 480-640 px.
        w, h = src.size
        cw, ch = int(w * rng.uniform(0.4, 1.0)), int(h * rng.uniform(0.4, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = src.crop((x, y, x + cw, y + ch))
        long_side = int(rng.integers(480, 641))
        scale = long_side / max(cw, ch)
        crop = crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.Resampling.BILINEAR)
        crop.save(target, quality=int(rng.integers(80, 96)))
    return paths


def main() -> None:
    """Command line: python -m bench.make_images FOLDER --count N."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    print(f"{len(make_photos(args.folder, args.count))} photos in {args.folder}")


if __name__ == "__main__":
    main()
