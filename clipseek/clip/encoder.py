"""CLIP encoders: one interface, and the open_clip implementation that loads lazily."""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from clipseek.clip.catalog import MODELS, lookup
from clipseek.clip.checkpoint import LoadPolicy
from clipseek.clip.network import (
    build_network,
    convert,
    embed_pixels,
    embed_tokens,
    embedding_dim,
    pick_device,
    preprocess_for,
    runnable_precisions,
    text_features,
)
from clipseek.clip.precision import (
    CACHE_FILE,
    SAFE_PRECISION,
    Measurement,
    PrecisionChoice,
    cached_choice,
    check_runnable,
    machine_key,
    measure_once,
    measuring_since,
    read_cpu,
    resolve_auto,
    state_sentence,
    usable,
)
from clipseek.clip.probe import measure_precisions
from clipseek.errors import ConfigError
from clipseek.photo.imaging import Preprocess, clip_pixels
from clipseek.settings import Settings

log = logging.getLogger(__name__)

# Query embeddings remembered per process (2 KiB each).
QUERY_CACHE_SIZE = 4096
# How often a model serving in SAFE_PRECISION looks for the measured choice (reading a small file).
CHOICE_POLL_S = 2.0


class Encoder(Protocol):
    """What ClipSeek needs from a model: L2-normalised float32 rows of `dim` columns."""

    model_id: str
    dim: int

    @property
    def preprocess(self) -> Preprocess:
        """The input the model was trained on; `encode_pixels` takes images prepared this way."""
        ...

    def load(self) -> None:
        """Load the model now instead of on first use."""
        ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed decoded RGB images."""
        ...

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Embed a batch prepared by `clip_pixels` with `preprocess` (N, 3, size, size)."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed text queries."""
        ...


def parse_model_id(model_id: str) -> tuple[str, str]:
    """Split 'ViT-B-32/openai' into its architecture and its weights.

    Weights other than OpenAI's or random ones must be a catalogue model's, whose checkpoint
    ClipSeek knows where to find; an unknown one is refused with the nearest known names.
    """
    arch, sep, weights = model_id.partition("/")
    if not sep or not arch or not weights:
        raise ConfigError(
            f"CLIPSEEK_MODEL must look like ViT-B-32/openai (or ViT-B-32/random for tests), "
            f"not {model_id!r}."
        )
    if weights not in ("openai", "random"):
        lookup(model_id)
    return arch, weights


def is_random_model(model_id: str) -> bool:
    """Whether the model has random weights, so that its results mean nothing."""
    return model_id.endswith("/random")


class ClipEncoder:
    """CLIP through open_clip; the network loads on first use, once per process.

    How it loads (checkpoint, device, precision) is the business of the checkpoint and
    network modules; this class encodes, and remembers recent text queries.
    """

    def __init__(
        self,
        model_id: str,
        *,
        weights: Path | None = None,
        weights_sha256: str | None = None,
        cache_dir: Path | None = None,
        device: str = "auto",
        precision: str = "auto",
        allow_download: bool = True,
        precision_cache: Path | None = None,
    ) -> None:
        self.model_id = model_id
        arch, weights_kind = parse_model_id(model_id)
        self.policy = LoadPolicy(arch=arch, random=weights_kind == "random", pretrained=weights_kind,
                                 weights=weights,
                                 weights_sha256=weights_sha256, cache_dir=cache_dir, device=device,
                                 precision=precision, allow_download=allow_download)
        # Where `auto` remembers its choice; None: measured at every load, remembered nowhere.
        self.precision_cache = precision_cache
        entry = MODELS.get(model_id)
        # Until the network is loaded: the catalogue's dimension (the loaded network's afterwards).
        self.dim = entry.dim if entry else 512
        self._preprocess: Preprocess | None = None
        self._lock = threading.Lock()
        self._model: Any = None
        # The network queries run through: `_model` itself unless the choice runs them in another precision.
        self._text_model: Any = None
        self._tokenizer: Any = None
        self.device = "cpu"
        self.precision = "fp32"
        # What `auto` chose and why (None for an explicit CLIPSEEK_PRECISION), and whether the
        # choice came from the cache rather than a measurement in this process.
        self.precision_choice: PrecisionChoice | None = None
        self.precision_from_cache = False
        # Serving in SAFE_PRECISION until this machine's choice is measured (by another process).
        self.precision_pending = False
        self.runnable_precisions: tuple[str, ...] = ()
        self._key = ""
        # The fp32 network kept while pending, to convert once the choice lands.
        self._fp32_model: Any = None
        self._stop_watching = threading.Event()
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        # How many calls embedded texts: `clipseek up` measures the precisions after the first.
        self.queries_embedded = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ClipEncoder:
        """Build the encoder the settings describe (nothing is loaded yet)."""
        return cls(
            settings.model,
            weights=settings.weights,
            weights_sha256=settings.weights_sha256,
            cache_dir=settings.model_cache,
            device=settings.device,
            precision=settings.precision,
            allow_download=not settings.offline,
            precision_cache=settings.home / CACHE_FILE,
        )

    @property
    def is_random(self) -> bool:
        """Whether this encoder's results are meaningless (random weights)."""
        return self.policy.random

    @property
    def preprocess(self) -> Preprocess:
        """The model's input (size, resize, mean, std), read from open_clip's tables without loading it."""
        if self._preprocess is None:
            self._preprocess = preprocess_for(self.policy.arch, self.policy.pretrained)
        return self._preprocess

    def load(self) -> None:
        """Load the network now rather than on first use (idempotent, thread-safe)."""
        with self._lock:
            if self._model is None:
                self._load()

    def _load(self) -> None:
        device = pick_device(self.policy.device)
        runnable = runnable_precisions(device)
        check_runnable(self.policy.precision, device, runnable)
        model, self._tokenizer = build_network(self.policy, device)
        self.device, self.runnable_precisions = device, runnable
        precision = self.policy.precision
        if precision == "auto":
            self._key = self._machine_key(device)
            remembered = (cached_choice(self.precision_cache, self._key)
                          if self.precision_cache is not None else None)
            if remembered is not None and usable(remembered, runnable):
                self.precision_choice, self.precision_from_cache = remembered, True
                precision = remembered.precision
            elif self.precision_cache is None:
                # No home to remember a choice in, nor another process to measure: measured now.
                self.precision_choice, self.precision_from_cache = resolve_auto(
                    None, self._key, lambda: self._measure(model), runnable)
                precision = self.precision_choice.precision
            else:
                # Measuring takes minutes: serve now in the safe precision and switch when
                # a background process (`clipseek up`'s) has measured this machine.
                precision, self.precision_pending, self._fp32_model = SAFE_PRECISION, True, model
                threading.Thread(target=self._watch_for_choice, name="clipseek-precision",
                                 daemon=True).start()
        self.precision = precision
        text_model = self._text_copy(model, self.precision_choice)
        self._model = convert(model, precision, onnx_folder=self.onnx_folder, model_id=self.model_id)
        self._text_model = text_model if text_model is not None else self._model
        self.dim = embedding_dim(model, self.policy.arch)

    def _text_copy(self, fp32: Any, choice: PrecisionChoice | None) -> Any:
        """The network for queries where the choice runs them in another precision than images."""
        if choice is None or choice.query_precision == choice.precision:
            return None
        return convert(copy.deepcopy(fp32), choice.query_precision, onnx_folder=self.onnx_folder,
                       model_id=self.model_id)

    def _machine_key(self, device: str) -> str:
        import torch

        return machine_key(read_cpu(), torch_version=torch.__version__, model_id=self.model_id,
                           device=device)

    def _measure(self, model: Any) -> list[Measurement]:
        # Batches of 32 images in each precision, and an ONNX export: about a minute on a quiet
        # machine, 140 s was seen on a busy 2-core one.
        log.info("Measuring which precision runs %s fastest on this CPU (%s; once per machine, one "
                 "to a few minutes)…", self.model_id, ", ".join(self.runnable_precisions))
        started = time.monotonic()
        found = measure_precisions(model, self._tokenizer, self.device, self.runnable_precisions,
                                   preprocess=self.preprocess, onnx_folder=self.onnx_folder,
                                   model_id=self.model_id)
        log.info("Measured the precisions of %s in %.0f s.", self.model_id, time.monotonic() - started)
        return found

    def needs_measuring(self) -> bool:
        """Whether `auto` has no usable choice remembered for this machine and model (loads nothing)."""
        if self.policy.precision != "auto" or self.precision_cache is None:
            return False
        device = pick_device(self.policy.device)
        return not usable(cached_choice(self.precision_cache, self._machine_key(device)),
                          runnable_precisions(device))

    def measure_now(self, *, adopt: bool = True) -> PrecisionChoice | None:
        """Measure this machine's precisions and remember the choice, unless it is remembered already.

        With `adopt`, this encoder then runs in the choice (other processes switch by themselves).
        None when another process is measuring (its choice lands in the same file) or the
        precision is not `auto`.
        """
        self.load()
        if self.precision_choice is not None or self._fp32_model is None or self.precision_cache is None:
            return self.precision_choice
        if not adopt:
            self._stop_watching.set()  # a process that only measures need not convert
        choice = measure_once(self.precision_cache, self._key, lambda: self._measure(self._fp32_model),
                              self.runnable_precisions)
        if choice is not None and adopt:
            self._stop_watching.set()
            self._adopt(choice)
        return choice

    def _watch_for_choice(self) -> None:
        """Until the measured choice lands in the cache file, look for it; then switch to it."""
        assert self.precision_cache is not None
        while not self._stop_watching.wait(CHOICE_POLL_S):
            choice = cached_choice(self.precision_cache, self._key)
            if choice is None or not usable(choice, self.runnable_precisions):
                continue
            try:
                self._adopt(choice)
            except Exception as exc:  # a conversion that fails keeps the safe precision serving
                log.warning("%s stays in %s: switching to the measured %s failed (%s).", self.model_id,
                            self.precision, choice.precision, exc)
            return

    def _adopt(self, choice: PrecisionChoice) -> None:
        """Convert a copy of the fp32 network to the measured choice, then serve from it."""
        text_model = self._text_copy(self._fp32_model, choice)
        model = convert(copy.deepcopy(self._fp32_model), choice.precision, onnx_folder=self.onnx_folder,
                        model_id=self.model_id)
        with self._lock:
            self._model, self.precision, self.precision_choice = model, choice.precision, choice
            self._text_model = text_model if text_model is not None else model
            self.precision_from_cache, self.precision_pending, self._fp32_model = True, False, None
            # Within the bars `auto` keeps, but a repeated query should not change with the clock.
            self._query_cache.clear()
        log.info("%s now runs in %s, the precision measured for this machine.", self.model_id,
                 choice.precision)

    def precision_sentence(self) -> str:
        """The precision in one sentence (status page): measured and chosen, or safe for now."""
        if self._model is None and self.policy.precision == "auto" and self.precision_cache is not None:
            device = pick_device(self.policy.device)
            choice = cached_choice(self.precision_cache, self._machine_key(device))
            if choice is not None and usable(choice, runnable_precisions(device)):
                return state_sentence(setting="auto", precision=choice.precision, choice=choice,
                                      measuring=None)
            return state_sentence(setting="auto", precision=SAFE_PRECISION, choice=None,
                                  measuring=measuring_since(self.precision_cache))
        if self._model is None:
            return f"{self.policy.precision}, set by CLIPSEEK_PRECISION (nothing measured)."
        return state_sentence(setting=self.policy.precision, precision=self.precision,
                              choice=self.precision_choice,
                              measuring=measuring_since(self.precision_cache)
                              if self.precision_pending and self.precision_cache else None)

    @property
    def onnx_folder(self) -> Path:
        """Where the onnx-int8 precision keeps its exported image towers (the model cache's onnx/)."""
        return (self.policy.cache_dir or Settings.from_env().model_cache) / "onnx"

    def _encode_tensor(self, pixels: np.ndarray) -> np.ndarray:
        return embed_pixels(self._model, pixels, self.device)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Embed a batch prepared with `preprocess` (N, 3, size, size) in one forward pass."""
        self.load()
        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode_tensor(pixels)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed decoded RGB images."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_pixels(np.stack([clip_pixels(img, self.preprocess) for img in images]))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed text queries (each cut to CLIP's 77-token context), in the loaded precision.

        The latest 4,096 single queries are remembered, so paging through results or reloading a
        shared result page does not run the text encoder again.
        """
        self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.queries_embedded += 1
        if len(texts) == 1 and (cached := self._query_cache.get(texts[0])) is not None:
            return cached.copy()
        vectors = embed_tokens(self._text_model, self._tokenizer(list(texts)).to(self.device))
        if len(texts) == 1:
            with self._lock:
                self._query_cache[texts[0]] = vectors.copy()
                while len(self._query_cache) > QUERY_CACHE_SIZE:
                    self._query_cache.popitem(last=False)
        return vectors

    def _encode_tokens(self, tokens: Any) -> Any:
        """CLIP's text tower in the loaded precision, cut at the longest query's end of text."""
        return text_features(self._text_model, tokens)
