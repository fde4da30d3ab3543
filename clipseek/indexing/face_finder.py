"""Finding faces in pictures and describing them: dlib's HOG detector, its 5-point landmarks and
its ResNet descriptor (128 numbers; the same person lies within about 0.6 Euclidean).

The models ship in the `face_recognition_models` wheel and dlib comes prebuilt (`dlib-bin`),
so nothing is downloaded or compiled. They load on the first picture, once per process.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clipseek.photo.imaging import fit_rgb, probe

# Pictures are searched for faces at most this large (longer side, pixels): HOG's cost grows
# with the pixels, and a face smaller than about 1/30 of a 1,280-pixel picture is too small
# to be told apart from another anyway (bench/people.py).
MAX_SIDE = 1280
# Below this size (longer side) the picture is doubled first: HOG finds faces from about
# 80 pixels across, and in small pictures faces are small.
UPSAMPLE_BELOW = 800
# Detections scoring below this are mostly patterns taken for faces (the astronaut's patch
# scores 0.12 and a tilted one 0.33, the sample photos' faces 0.9 to 1.4, tilted 8 degrees still 0.88).
MIN_SCORE = 0.5
# Faces narrower than this (pixels of the searched picture) give descriptors too unsure to group.
MIN_FACE_PX = 40
DESCRIPTOR_DIM = 128


@dataclass(frozen=True)
class FoundFace:
    """One face: its box in the picture as displayed (pixels), how sure, and its descriptor."""

    left: int
    top: int
    right: int
    bottom: int
    score: float
    descriptor: np.ndarray


def models_folder() -> Path:
    """Where the `face_recognition_models` wheel keeps dlib's model files.

    Found without importing the package, which needs `pkg_resources` (gone from new setuptools).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the face models are not installed: pip install face_recognition_models")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class FaceFinder:
    """Finds and describes faces; the models load on the first picture (about half a second)."""

    def __init__(self, *, max_side: int = MAX_SIDE, min_score: float = MIN_SCORE) -> None:
        self.max_side = max_side
        self.min_score = min_score
        self._models: tuple[Any, Any, Any] | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the detector, the landmarks and the descriptor network now rather than on first use."""
        with self._lock:
            if self._models is None:
                import dlib

                folder = models_folder()
                self._models = (
                    dlib.get_frontal_face_detector(),
                    dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")),
                    dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat")),
                )

    def find(self, rgb: Image.Image, *, scale: float = 1.0) -> list[FoundFace]:
        """The faces in an RGB picture, left to right; `scale` maps its pixels to the displayed picture's."""
        self.load()
        assert self._models is not None
        detector, landmarks, network = self._models
        pixels = np.ascontiguousarray(np.asarray(rgb.convert("RGB")))
        upsample = 1 if max(rgb.size) < UPSAMPLE_BELOW else 0
        found = []
        with self._lock:  # dlib's objects are not shared between threads
            boxes, scores, _ = detector.run(pixels, upsample, 0.0)
            for box, score in zip(boxes, scores, strict=True):
                if score < self.min_score or box.width() < MIN_FACE_PX:
                    continue
                shape = landmarks(pixels, box)
                descriptor = np.asarray(network.compute_face_descriptor(pixels, shape), dtype=np.float32)
                width, height = rgb.size
                left, top = max(0, box.left()), max(0, box.top())
                right, bottom = min(width, box.right()), min(height, box.bottom())
                found.append(FoundFace(left=round(left * scale), top=round(top * scale),
                                       right=round(right * scale), bottom=round(bottom * scale),
                                       score=float(score), descriptor=descriptor))
        return sorted(found, key=lambda face: face.left)

    def find_in_file(self, path: Path, *, max_pixels: int) -> list[FoundFace]:
        """The faces in an image file, searched at most `max_side` pixels large.

        Raises clipseek.photo.imaging.ImageDecodeError when the file cannot be decoded.
        """
        info = probe(path, max_pixels=max_pixels)
        rgb = fit_rgb(path, max_pixels=max_pixels, side=self.max_side)
        # Turning a photo upright keeps its longer side: one scale serves both orientations.
        return self.find(rgb, scale=max(info.width, info.height) / max(rgb.size))
