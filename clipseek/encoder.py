"""CLIP encoders: one interface, and the open_clip implementation that loads lazily."""

from __future__ import annotations

import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from clipseek.errors import ConfigError, WeightsError
from clipseek.imaging import clip_pixels
from clipseek.settings import Settings

if TYPE_CHECKING:
    import torch

# The random model's weights come from this seed, so every process (CLI, worker, web)
# builds the same network and their embeddings stay comparable.
RANDOM_SEED = 20240101
# bf16 is used only when it keeps embeddings this close (cosine) to fp32 ones.
BF16_MIN_COSINE = 0.999
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


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(previous)


def _normalise(features: torch.Tensor) -> np.ndarray:
    out = features.float()
    out = out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return np.ascontiguousarray(out.cpu().numpy(), dtype=np.float32)


class ClipEncoder:
    """CLIP through open_clip; the network loads on first use, once per process."""

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
        self.arch, self.weights_kind = parse_model_id(model_id)
        self.dim = 512
        self._weights = weights
        self._weights_sha256 = weights_sha256
        self._cache_dir = cache_dir or Path.home() / ".cache" / "clipseek"
        self._device_setting = device
        self._precision_setting = precision
        self._allow_download = allow_download
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
        return self.weights_kind == "random"

    def load(self) -> None:
        """Load the network now rather than on first use (idempotent, thread-safe)."""
        with self._lock:
            if self._model is None:
                self._load()

    def _load(self) -> None:
        import open_clip
        import torch

        self.device = self._pick_device(torch)
        if self.is_random:
            with torch.random.fork_rng(devices=[]), _quiet_root_logger():
                torch.manual_seed(RANDOM_SEED)
                # open_clip warns that no weights were loaded: that is the point here.
                model = open_clip.create_model(f"{self.arch}-quickgelu", pretrained=None)
        else:
            model = self._load_checkpoint(torch, open_clip)
        model = model.eval().to(self.device)
        self._tokenizer = open_clip.get_tokenizer(self.arch)
        self._model = model
        self._apply_precision(torch)
        self.dim = int(model.text_projection.shape[1])

    def _pick_device(self, torch: Any) -> str:
        if self._device_setting == "cuda" and not torch.cuda.is_available():
            raise ConfigError("CLIPSEEK_DEVICE=cuda, but PyTorch sees no CUDA GPU; use auto or cpu.")
        if self._device_setting == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self._device_setting

    def _load_checkpoint(self, torch: Any, open_clip: Any) -> Any:
        from open_clip.model import build_model_from_openai_state_dict

        from clipseek.weights import resolve_weights

        path = resolve_weights(
            self.arch,
            weights=self._weights,
            expected_sha256=self._weights_sha256,
            cache_dir=self._cache_dir,
            allow_download=self._allow_download,
        )
        try:
            # OpenAI ships TorchScript archives; a plain state dict is accepted too.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # jit.load's deprecation notice
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
        except RuntimeError:
            try:
                state = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception as exc:
                raise WeightsError(f"{path} is not a CLIP checkpoint PyTorch can read ({exc}).") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = {k.removeprefix("module."): v for k, v in state["state_dict"].items()}
        try:
            model = build_model_from_openai_state_dict(state)
        except (KeyError, RuntimeError, AttributeError) as exc:
            raise WeightsError(
                f"{path} does not hold CLIP {self.arch} weights in OpenAI's layout ({exc})."
            ) from None
        return model.float()

    def _apply_precision(self, torch: Any) -> None:
        wanted = self._precision_setting
        if wanted == "auto":
            if self.device == "cuda":
                wanted = "fp16"
            elif torch.ops.mkldnn._is_mkldnn_bf16_supported():
                wanted = "bf16"
            else:
                wanted = "fp32"
        if wanted == "fp32":
            return
        dtype = torch.bfloat16 if wanted == "bf16" else torch.float16
        probe = self._precision_probe()
        reference = self._encode_tensor(probe)
        self._to_low_precision(torch, dtype)
        self.bf16_cosine = float((self._encode_tensor(probe) * reference).sum(axis=1).min())
        if self.bf16_cosine < BF16_MIN_COSINE and self._precision_setting == "auto":
            # Not close enough to fp32: the speed is not worth worse rankings.
            self._model.float()
            self.precision = "fp32"
            return
        self.precision = wanted

    def _to_low_precision(self, torch: Any, dtype: Any) -> None:
        from open_clip.transformer import LayerNormFp32

        self._model.to(dtype)
        for module in self._model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                # LayerNorm statistics lose too much in 8 mantissa bits; keep them in fp32.
                module.float()
                module.__class__ = LayerNormFp32

    def _precision_probe(self) -> np.ndarray:
        rng = np.random.default_rng(0)
        return rng.standard_normal((4, 3, 224, 224)).astype(np.float32)

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

