"""CLIP encoders: one interface, and the open_clip implementation that loads lazily."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from clipseek.errors import ConfigError
from clipseek.imaging import clip_pixels
from clipseek.model_loading import LoadPolicy, build_network, choose_precision, pick_device
from clipseek.settings import Settings

if TYPE_CHECKING:
    import torch

# Query embeddings remembered per process (2 KiB each).
QUERY_CACHE_SIZE = 4096


class Encoder(Protocol):
    """What ClipSeek needs from a model: L2-normalised float32 rows of `dim` columns."""

    model_id: str
    dim: int

    def load(self) -> None:
        """Load the model now instead of on first use."""
        ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed decoded RGB images."""
        ...

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Embed a batch already preprocessed by `clip_pixels` (N, 3, 224, 224)."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed text queries."""
        ...


def parse_model_id(model_id: str) -> tuple[str, str]:
    """Split 'ViT-B-32/openai' into its architecture and its weights."""
    arch, sep, weights = model_id.partition("/")
    if not sep or not arch or weights not in ("openai", "random"):
        raise ConfigError(
            f"CLIPSEEK_MODEL must look like ViT-B-32/openai (or ViT-B-32/random for tests), "
            f"not {model_id!r}."
        )
    return arch, weights


def is_random_model(model_id: str) -> bool:
    """Whether the model has random weights, so that its results mean nothing."""
    return model_id.endswith("/random")


def _normalise(features: torch.Tensor) -> np.ndarray:
    out = features.float()
    out = out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return np.ascontiguousarray(out.cpu().numpy(), dtype=np.float32)


class ClipEncoder:
    """CLIP through open_clip; the network loads on first use, once per process.

    How it loads (checkpoint, device, precision) is clipseek.model_loading's business; this
    class encodes, and remembers recent text queries.
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
    ) -> None:
        self.model_id = model_id
        arch, weights_kind = parse_model_id(model_id)
        self.policy = LoadPolicy(arch=arch, random=weights_kind == "random", weights=weights,
                                 weights_sha256=weights_sha256, cache_dir=cache_dir, device=device,
                                 precision=precision, allow_download=allow_download)
        self.dim = 512
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self.device = "cpu"
        self.precision = "fp32"
        self.bf16_cosine: float | None = None
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()

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
        )

    @property
    def is_random(self) -> bool:
        """Whether this encoder's results are meaningless (random weights)."""
        return self.policy.random

    def load(self) -> None:
        """Load the network now rather than on first use (idempotent, thread-safe)."""
        with self._lock:
            if self._model is None:
                self._load()

    def _load(self) -> None:
        device = pick_device(self.policy.device)
        model, self._tokenizer = build_network(self.policy, device)
        self.device, self._model = device, model
        # The probe that judges a lower precision runs through this encoder's own forward pass.
        self.precision, self.bf16_cosine = choose_precision(model, device, self.policy.precision,
                                                            self._encode_tensor)
        self.dim = int(model.text_projection.shape[1])

    def _encode_tensor(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        dtype = next(self._model.parameters()).dtype
        batch = torch.from_numpy(pixels).to(self.device, dtype=dtype)
        with torch.inference_mode():
            return _normalise(self._model.encode_image(batch))

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Embed a preprocessed batch (N, 3, 224, 224) in one forward pass."""
        self.load()
        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode_tensor(pixels)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed decoded RGB images."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_pixels(np.stack([clip_pixels(img) for img in images]))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed text queries (each cut to CLIP's 77-token context).

        The latest 4,096 single queries are remembered, so paging through results or reloading a
        shared result page does not run the text encoder again.
        """
        import torch

        self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) == 1 and (cached := self._query_cache.get(texts[0])) is not None:
            return cached.copy()
        tokens = self._tokenizer(list(texts)).to(self.device)
        with torch.inference_mode():
            vectors = _normalise(self._encode_tokens(tokens))
        if len(texts) == 1:
            with self._lock:
                self._query_cache[texts[0]] = vectors.copy()
                while len(self._query_cache) > QUERY_CACHE_SIZE:
                    self._query_cache.popitem(last=False)
        return vectors

    def _encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """CLIP's text tower, run only up to the longest query's end-of-text token.

        The text transformer is causal and pools the end-of-text position, so the padding
        after it cannot change the result: cutting it off gives the same embedding for a
        fraction of the work (a 10-token query does 8x fewer token steps than 77).
        """
        from open_clip.transformer import text_global_pool

        model = self._model
        if getattr(model, "text_pool_type", None) != "argmax" or getattr(model, "attn_mask", None) is None:
            full: torch.Tensor = model.encode_text(tokens)
            return full
        length = int(tokens.argmax(dim=-1).max()) + 1
        tokens = tokens[:, :length]
        cast = model.transformer.get_cast_dtype()
        x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:length].to(cast)
        x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
        x = model.ln_final(x)
        pooled: torch.Tensor = text_global_pool(x, tokens, "argmax") @ model.text_projection
        return pooled

