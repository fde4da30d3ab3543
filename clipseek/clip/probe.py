"""`auto`'s probe: timing each precision this machine can run on real photos, and checking
that each agrees with fp32."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from clipseek.clip import onnx_int8
from clipseek.clip.network import convert, embed_pixels, embed_tokens
from clipseek.clip.precision import Measurement
from clipseek.errors import ConfigError
from clipseek.photo.imaging import (
    OPENAI_PREPROCESS,
    Preprocess,
    clip_pixels,
)

log = logging.getLogger(__name__)

# `auto` times the candidate precisions for at least this long, and at least two passes each
# (plus one untimed warm-up pass each).
PROBE_BUDGET_S = 1.0
# The images are timed in batches of the workers' default size (CLIPSEEK_BATCH_SIZE), the 8
# photos four times over: on one thread of an AMX Xeon, batches of 8 put ONNX Runtime's
# int8 ahead of bf16 (32.5 against 27.9 images/s per core) while at batch 32 bf16 leads
# (38.7 against 28.9), as it does where it counts, at batch 32 on both cores (96.9 against
# 40.6). AMX's tiles fill better with more rows; int8's kernels gain little from them.
PROBE_BATCH = 32
# Real photos bundled with scikit-image (no download), and queries like a user's.
PROBE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
PROBE_QUERIES = ("a dog running on the beach", "a red motorcycle parked in a room",
                 "a cup of coffee on a saucer", "the surface of the moon with craters")


def probe_pixels(preprocess: Preprocess = OPENAI_PREPROCESS) -> np.ndarray:
    """Eight real photos (scikit-image's samples and their mirror images), prepared for the model."""
    try:
        import skimage.data

        photos = [Image.fromarray(getattr(skimage.data, name)()) for name in PROBE_PHOTOS]
    except (ImportError, OSError, ValueError):
        # Without scikit-image's files: smooth gradients with noise, which behave like photos.
        rng = np.random.default_rng(0)
        y, x = np.mgrid[0:240, 0:320]
        photos = [Image.fromarray(np.clip(np.stack([x * (i + 1) % 256, y * 2 % 256, (x + y) % 256], -1)
                                          + rng.normal(0, 12, (240, 320, 3)), 0, 255).astype(np.uint8))
                  for i in range(4)]
    photos += [ImageOps.mirror(photo) for photo in photos]
    return np.stack([clip_pixels(photo.convert("RGB"), preprocess) for photo in photos])


def probe_batch(pixels: np.ndarray) -> np.ndarray:
    """The probe's photos repeated to a batch of PROBE_BATCH, the size `auto` times images at."""
    return np.concatenate([pixels] * (PROBE_BATCH // len(pixels)))


def _agreement(vectors: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    cosines = (vectors * reference).sum(axis=1)
    return round(float(cosines.mean()), 6), round(float(cosines.min()), 6)


@contextmanager
def probe_clock(device: str) -> Iterator[Callable[[], float]]:
    """The clock `auto` times precisions with: on the CPU, this thread's CPU time with one thread.

    Wall-clock time on a shared machine measures the neighbours as much as the kernels: under
    a load of 5-7 on 2 cores it once put fp32 ahead of bf16, which is 4.5 times faster on that
    CPU when quiet. A thread's CPU time stops while the thread waits for a core, so with the
    network on one thread (the caller's) the passes are timed by the work they do alone. The
    order of the precisions, which is all `auto` needs, is the same on one thread as on many:
    it is set by the instruction set each precision's kernels use. A GPU works asynchronously
    to the CPU, so there the wall clock stays.
    """
    if device != "cpu":
        yield time.perf_counter
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield time.thread_time
    finally:
        torch.set_num_threads(threads)


def time_round_robin(passes: dict[str, Callable[[], object]], clock: Callable[[], float],
                     budget_s: float = PROBE_BUDGET_S) -> dict[str, float]:
    """The fastest time of each pass by `clock`, the passes taking turns for at least `budget_s`.

    Round robin, keeping each one's fastest pass: a neighbour's load on a shared machine then
    slows every candidate alike instead of whichever happened to run at the time. Two rounds
    at least, and the budget is counted on `clock`, so a busy machine does not cut the probe short.
    """
    best = dict.fromkeys(passes, math.inf)
    started, rounds = clock(), 0
    while rounds < 2 or clock() - started < budget_s:
        for name, run in passes.items():
            begun = clock()
            run()
            best[name] = min(best[name], clock() - begun)
        rounds += 1
    return best


def precision_copies(model: Any, precisions: Sequence[str], *, onnx_folder: Path | None = None,
                     model_id: str = "model", refused: dict[str, str] | None = None) -> dict[str, Any]:
    """The network in each precision: fp32 is `model` itself, the others converted copies.

    A precision that cannot be made (onnx-int8 of an image tower ONNX cannot export, or whose
    export cannot be written) is left out with a warning, and `auto` chooses among the others;
    where the model is the cause, the reason goes into `refused` as well.
    """
    copies = {}
    for p in precisions:
        try:
            copies[p] = model if p == "fp32" else convert(copy.deepcopy(model), p, onnx_folder=onnx_folder,
                                                          model_id=model_id)
        except ConfigError as exc:
            if p != onnx_int8.PRECISION:
                raise
            log.warning("%s is left out: %s", p, exc)
            if isinstance(exc, onnx_int8.ExportRefused) and refused is not None:
                refused[p] = str(exc)
    return copies


def measure_precisions(model: Any, tokenizer: Any, device: str, precisions: Sequence[str],
                       budget_s: float = PROBE_BUDGET_S,
                       preprocess: Preprocess = OPENAI_PREPROCESS, *, onnx_folder: Path | None = None,
                       model_id: str = "model") -> list[Measurement]:
    """Time each precision on real photos and compare its image and text embeddings with fp32's.

    Images are timed in batches of PROBE_BATCH (the 8 photos repeated), queries one at a time.
    `precisions` starts with fp32, the reference; the others run on copies, so `model` stays fp32.
    On the CPU the rates are per core (one thread, timed in CPU time; see `probe_clock`).
    """
    pixels = probe_pixels(preprocess)
    batch = probe_batch(pixels)
    queries, one_query = tokenizer(list(PROBE_QUERIES)).to(device), tokenizer([PROBE_QUERIES[0]]).to(device)
    refused: dict[str, str] = {}
    candidates = precision_copies(model, precisions, onnx_folder=onnx_folder, model_id=model_id,
                                  refused=refused)
    # The first pass of each allocates and picks kernels, so it is not timed; it gives the agreement.
    vectors = {p: np.vstack([embed_pixels(c, pixels, device), embed_tokens(c, queries)])
               for p, c in candidates.items()}
    passes: dict[str, Callable[[], object]] = {}
    for p, c in candidates.items():
        passes[f"{p} images"] = partial(embed_pixels, c, batch, device)
        passes[f"{p} query"] = partial(embed_tokens, c, one_query)
    with probe_clock(device) as clock:
        for c in candidates.values():  # one untimed pass on this clock's thread count
            embed_pixels(c, pixels[:1], device)
        seconds = time_round_robin(passes, clock, budget_s)
    reference = vectors[precisions[0]]
    return [Measurement(p, round(len(batch) / seconds[f"{p} images"], 2),
                        round(1000 * seconds[f"{p} query"], 2), *_agreement(vectors[p], reference))
            for p in candidates] + [Measurement(p, 0.0, 0.0, 0.0, 0.0, refused=why)
                                    for p, why in refused.items()]
