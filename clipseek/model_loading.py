"""Loading CLIP: where the weights come from, and which device and precision the network runs in."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipseek.errors import ConfigError, WeightsError
from clipseek.settings import Settings
from clipseek.weights import resolve_weights

# The random model's weights come from this seed, so every process (CLI, worker, web)
# builds the same network and their embeddings stay comparable.
RANDOM_SEED = 20240101
# bf16 is used only when it keeps embeddings this close (cosine) to fp32 ones.
BF16_MIN_COSINE = 0.999

# torch and open_clip are imported inside the functions that need them: importing them takes
# seconds, which a process that never encodes (most commands, the status page) should not pay.

# Embeds a preprocessed batch (N, 3, 224, 224) with the network as it is at the time of the call.
EncodePixels = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LoadPolicy:
    """Which network to build, from which checkpoint, on which device, in which precision."""

    arch: str
    random: bool
    weights: Path | None = None
    weights_sha256: str | None = None
    # None: the model cache folder of the settings in the environment.
    cache_dir: Path | None = None
    device: str = "auto"
    precision: str = "auto"
    allow_download: bool = True


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(previous)


def pick_device(setting: str) -> str:
    """The device CLIPSEEK_DEVICE asks for: `auto` takes a CUDA GPU when PyTorch sees one."""
    import torch

    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CLIPSEEK_DEVICE=cuda, but PyTorch sees no CUDA GPU; use auto or cpu.")
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def checkpoint_path(policy: LoadPolicy) -> Path:
    """The verified checkpoint file of the policy's network, downloaded first when allowed."""
    return resolve_weights(
        policy.arch,
        weights=policy.weights,
        expected_sha256=policy.weights_sha256,
        cache_dir=policy.cache_dir or Settings.from_env().model_cache,
        allow_download=policy.allow_download,
    )


def _read_checkpoint(policy: LoadPolicy) -> Any:
    import torch
    from open_clip.model import build_model_from_openai_state_dict

    path = checkpoint_path(policy)
    try:
        # OpenAI ships TorchScript archives; a plain state dict is accepted too.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit.load's deprecation notice
            state = torch.jit.load(str(path), map_location="cpu").state_dict()  # type: ignore[no-untyped-call]
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
            f"{path} does not hold CLIP {policy.arch} weights in OpenAI's layout ({exc})."
        ) from None
    return model.float()


def build_network(policy: LoadPolicy, device: str) -> tuple[Any, Any]:
    """The fp32 network in evaluation mode on `device`, and its tokenizer."""
    import open_clip
    import torch

    if policy.random:
        with torch.random.fork_rng(devices=[]), _quiet_root_logger():
            torch.manual_seed(RANDOM_SEED)
            # open_clip warns that no weights were loaded: that is the point here.
            model = open_clip.create_model(f"{policy.arch}-quickgelu", pretrained=None)
    else:
        model = _read_checkpoint(policy)
    return model.eval().to(device), open_clip.get_tokenizer(policy.arch)


def to_low_precision(model: Any, dtype: Any) -> None:
    """Cast the network to bf16 or fp16 in place, except its LayerNorms."""
    import torch
    from open_clip.transformer import LayerNormFp32

    model.to(dtype)
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            # LayerNorm statistics lose too much in 8 mantissa bits; keep them in fp32.
            module.float()
            module.__class__ = LayerNormFp32


def choose_precision(model: Any, device: str, setting: str,
                     encode: EncodePixels) -> tuple[str, float | None]:
    """Cast the fp32 network to the precision CLIPSEEK_PRECISION asks for; return it and its agreement.

    `auto` takes fp16 on a GPU and bf16 on a CPU that has it, but stays in fp32 when the
    lower precision moves the embeddings of a probe batch (cosine) below BF16_MIN_COSINE.
    """
    import torch

    wanted = setting
    if wanted == "auto":
        if device == "cuda":
            wanted = "fp16"
        elif torch.ops.mkldnn._is_mkldnn_bf16_supported():
            wanted = "bf16"
        else:
            wanted = "fp32"
    if wanted == "fp32":
        return "fp32", None
    probe = np.random.default_rng(0).standard_normal((4, 3, 224, 224)).astype(np.float32)
    reference = encode(probe)
    to_low_precision(model, torch.bfloat16 if wanted == "bf16" else torch.float16)
    cosine = float((encode(probe) * reference).sum(axis=1).min())
    if cosine < BF16_MIN_COSINE and setting == "auto":
        # Not close enough to fp32: the speed is not worth worse rankings.
        model.float()
        return "fp32", cosine
    return wanted, cosine
