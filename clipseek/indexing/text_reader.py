"""The text reader: PP-OCRv4 (detection, direction, recognition) run by ONNX Runtime, loaded on first use.

The models ship inside the `rapidocr-onnxruntime` wheel, so nothing is downloaded. A
picture is shrunk to fit MAX_SIDE first, lines the recognizer is unsure of are dropped, and
the words it ran together are split apart (clipseek.photo.word_splitting).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clipseek.photo.imaging import fit_rgb, probe
from clipseek.photo.word_splitting import recover_words

# Pictures are read at most this large (longer side, pixels). On 12-megapixel photos with
# signs (bench/ocr.py, BENCHMARKS.md) 1,280 found as many words as 1,600 or 2,000 (the
# detector keeps large letters better when they are not huge) for 40% and 60% less CPU;
# 960 lost some.
MAX_SIDE = 1280
# Lines read with less confidence are mostly texture taken for letters.
MIN_CONFIDENCE = 0.75
# Each reader runs on one core: it works beside CLIP indexing in other workers without
# taking their cores, and the recognizer gains little from more on small crops.
THREADS = 1


@dataclass(frozen=True)
class TextLine:
    """One line read in a picture: its words (recovered), as recognized, how sure, and where."""

    text: str
    raw: str
    confidence: float
    # The four corners of the line in the file's upright pixels: [[x, y], ...].
    box: list[list[float]]


@dataclass(frozen=True)
class TextFound:
    """Every line read in one picture, top to bottom."""

    lines: list[TextLine]

    @property
    def text(self) -> str:
        """The lines' words, one line each."""
        return "\n".join(line.text for line in self.lines)

    @property
    def confidence(self) -> float | None:
        """The recognizer's confidence over all lines, each weighted by its length."""
        weight = sum(len(line.raw) for line in self.lines)
        if not weight:
            return None
        return sum(line.confidence * len(line.raw) for line in self.lines) / weight


def _meaningful(text: str) -> bool:
    """Whether a line holds two letters or digits at least (a lone mark is noise)."""
    return sum(ch.isalnum() for ch in text) >= 2


class TextReader:
    """Reads the lines of text in pictures; the models load on the first read (about a second)."""

    def __init__(self, *, use_cls: bool = True, max_side: int = MAX_SIDE,
                 min_confidence: float = MIN_CONFIDENCE, threads: int = THREADS) -> None:
        self.use_cls = use_cls
        self.max_side = max_side
        self.min_confidence = min_confidence
        self.threads = threads
        self._engine: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the three models now rather than on the first read."""
        with self._lock:
            if self._engine is None:
                import cv2
                from rapidocr_onnxruntime import RapidOCR

                # OpenCV's own threads (resizing, warping the crops) stay on the same core.
                cv2.setNumThreads(self.threads)
                self._engine = RapidOCR(intra_op_num_threads=self.threads, inter_op_num_threads=1,
                                        use_cls=self.use_cls)

    def read(self, rgb: Image.Image, *, scale: float = 1.0) -> TextFound:
        """The lines in an RGB picture; `scale` maps its pixels to the file's (for the boxes)."""
        self.load()
        # The models were trained on OpenCV's BGR order.
        bgr = np.ascontiguousarray(np.asarray(rgb.convert("RGB"))[:, :, ::-1])
        with self._lock:  # one ONNX session set per reader; reads take turns
            found, _ = self._engine(bgr, use_cls=self.use_cls)
        lines = []
        for box, raw, confidence in found or ():
            raw = " ".join(str(raw).split())
            if float(confidence) < self.min_confidence or not _meaningful(raw):
                continue
            corners = [[round(float(x) * scale, 1), round(float(y) * scale, 1)] for x, y in box]
            lines.append(TextLine(text=recover_words(raw), raw=raw, confidence=float(confidence),
                                  box=corners))
        return TextFound(lines)

    def read_file(self, path: Path, *, max_pixels: int) -> TextFound:
        """The lines in an image file, read at most `max_side` pixels large.

        Raises clipseek.photo.imaging.ImageDecodeError when the file cannot be decoded.
        """
        info = probe(path, max_pixels=max_pixels)
        full = max(info.width, info.height)
        rgb = fit_rgb(path, max_pixels=max_pixels, side=self.max_side)
        # Turning a photo upright keeps its longer side: one scale serves both orientations.
        return self.read(rgb, scale=full / max(rgb.size))
