"""Building the CLIP network on a device in a precision, and running its two towers."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from clipseek.clip import onnx_int8
from clipseek.clip.checkpoint import (
    BUILD_LOCK,
    LoadPolicy,
    first_line,
    is_hub_checkpoint,
    pretrained_cfg,
    quiet_root_logger,
    read_checkpoint,
    read_hub_checkpoint,
)
from clipseek.clip.onnx_int8 import OnnxClip
from clipseek.clip.precision import read_cpu
from clipseek.errors import ConfigError
from clipseek.photo.imaging import (
    OPENAI_PREPROCESS,
    RESIZE_FILTERS,
    RESIZE_MODES,
    Preprocess,
)
from clipseek.settings import Settings

log = logging.getLogger(__name__)

# The random model's weights come from this seed, so every process (CLI, worker, web)
# builds the same network and their embeddings stay comparable.
RANDOM_SEED = 20240101


def pick_device(setting: str) -> str:
    """The device CLIPSEEK_DEVICE asks for: `auto` takes a CUDA GPU when PyTorch sees one."""
    import torch

    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CLIPSEEK_DEVICE=cuda, but PyTorch sees no CUDA GPU; use auto or cpu.")
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def preprocess_for(arch: str, tag: str) -> Preprocess:
    """The input `arch/tag` was trained on: its image size, and its published mean, std and resize.

    A random model takes its catalogue model's, so that it costs what that model would.
    """
    import open_clip

    config = open_clip.get_model_config(arch)
    if not config:
        return OPENAI_PREPROCESS  # an unknown architecture fails when it is built, with its reason
    size = config["vision_cfg"].get("image_size", OPENAI_PREPROCESS.size)
    found = {**config.get("preprocess_cfg", {}), **pretrained_cfg(arch, tag)}
    preprocess = Preprocess(
        size=int(size[0] if isinstance(size, (list, tuple)) else size),
        mean=tuple(found.get("mean", OPENAI_PREPROCESS.mean)),
        std=tuple(found.get("std", OPENAI_PREPROCESS.std)),
        interpolation=found.get("interpolation", OPENAI_PREPROCESS.interpolation),
        resize_mode=found.get("resize_mode", OPENAI_PREPROCESS.resize_mode),
    )
    if preprocess.interpolation not in RESIZE_FILTERS or preprocess.resize_mode not in RESIZE_MODES:
        raise ConfigError(f"ClipSeek cannot preprocess images for {arch}/{tag} yet: it needs a "
                          f"{preprocess.interpolation} resize in mode {preprocess.resize_mode}.")
    return preprocess


def missing_for(arch: str) -> str | None:
    """What this machine lacks to build `arch` (None: nothing), without building it."""
    import importlib.util

    import open_clip

    config = open_clip.get_model_config(arch)
    if not config:
        return f"an architecture open_clip knows (it has no {arch})"
    text, vision = config.get("text_cfg", {}), config.get("vision_cfg", {})
    # Hugging Face text towers and tokenizers come from `transformers` and the hub's files.
    if (text.get("hf_model_name") or text.get("hf_tokenizer_name")) and \
            importlib.util.find_spec("transformers") is None:
        return ("the `transformers` package (not installed) and its Hugging Face tokenizer "
                f"{text.get('hf_tokenizer_name') or text.get('hf_model_name')}")
    if vision.get("timm_model_name") and importlib.util.find_spec("timm") is None:
        return "the `timm` package (not installed)"
    return None


def build_network(policy: LoadPolicy, device: str) -> tuple[Any, Any]:
    """The fp32 network in evaluation mode on `device`, and its tokenizer."""
    import open_clip
    import torch

    missing = missing_for(policy.arch)
    if missing is not None:
        raise ConfigError(f"ClipSeek cannot build {policy.arch} on this machine: it needs {missing}.")
    try:
        tokenizer = open_clip.get_tokenizer(policy.arch)
    except (ImportError, OSError, ValueError) as exc:
        raise ConfigError(f"ClipSeek cannot build the {policy.arch} tokenizer here "
                          f"({first_line(exc)}).") from None
    if policy.random:
        # OpenAI's architectures were trained with QuickGELU: their random twins keep it.
        quick = f"{policy.arch}-quickgelu"
        # BUILD_LOCK: its seeded draws must not be skipped by a checkpoint's build meanwhile.
        with BUILD_LOCK, torch.random.fork_rng(devices=[]), quiet_root_logger():
            torch.manual_seed(RANDOM_SEED)
            # open_clip warns that no weights were loaded: that is the point here.
            model = open_clip.create_model(quick if quick in open_clip.list_models() else policy.arch,
                                           pretrained=None)
    elif is_hub_checkpoint(policy):
        model = read_hub_checkpoint(policy)
    else:
        model = read_checkpoint(policy)
    return model.eval().to(device), tokenizer


def embedding_dim(model: Any, arch: str) -> int:
    """The number of columns the network's embeddings have."""
    import open_clip

    projection = getattr(model, "text_projection", None)
    if projection is not None:
        return int(projection.shape[1])
    return int(open_clip.get_model_config(arch)["embed_dim"])


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


def runnable_precisions(device: str) -> tuple[str, ...]:
    """The precisions this machine can run the network in, fp32 (the reference) first."""
    import torch

    if device == "cuda":
        return ("fp32", "fp16", "bf16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")
    found = ["fp32"]
    # Without AVX-512 BF16 or AMX, PyTorch emulates bf16 at a tenth of fp32's speed.
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        found.append("bf16")
    if {"x86", "fbgemm", "onednn"} & set(torch.backends.quantized.supported_engines):
        found.append("int8")
        # Its text tower is PyTorch's int8, so it needs the engine above as well.
        if onnx_int8.available():
            found.append(onnx_int8.PRECISION)
    return tuple(found)


def convert(model: Any, precision: str, *, onnx_folder: Path | None = None, model_id: str = "model") -> Any:
    """The network in `precision`: cast in place for bf16/fp16, Linear layers made int8 for int8.

    For onnx-int8, an OnnxClip: the image tower exported (or taken from `onnx_folder`, by
    default the model cache's `onnx/`, where `model_id` names the file) and the text tower
    made int8 in place.
    """
    import torch

    if precision == onnx_int8.PRECISION:
        folder = onnx_folder or Settings.from_env().model_cache / "onnx"
        try:
            path = onnx_int8.exported(model, folder, model_id,
                                      reduce_range=onnx_int8.reduce_range_for(read_cpu().flags))
        except ImportError as exc:  # installed, but broken
            raise ConfigError(f"onnx-int8 cannot run here: {exc}.") from None
        side = onnx_int8.image_side(model)
        text_path = _exported_text(model, folder, model_id)
        # ONNX Runtime runs the image tower from the file: PyTorch's copy would only take memory
        # (about 100 MB for ViT-B/32 once int8) in every process that encodes.
        model.visual = torch.nn.Identity()
        clip = OnnxClip(convert(model, "int8"), path, text_path)
        clip.check(side, torch.get_num_threads())
        if text_path is not None:
            try:
                clip.check_text(torch.get_num_threads())
            except onnx_int8.ExportRefused as exc:
                log.warning("The text tower stays in PyTorch's int8: %s", exc)
                clip.text_path = None
        return clip
    if precision in ("bf16", "fp16"):
        to_low_precision(model, torch.bfloat16 if precision == "bf16" else torch.float16)
    elif precision == "int8":
        # Dynamic quantisation: int8 weights, activations quantised per batch as they come,
        # so it needs no calibration set; the attention's fused projections stay in fp32.
        with warnings.catch_warnings():
            # PyTorch marks torch.ao.quantization deprecated in favour of torchao (not a
            # dependency); it still works in the pinned torch, and tests check that it does.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=r"(?s).*quantized tensor creation",
                                    category=UserWarning)
            spec: dict[Any, Any] = {torch.nn.Linear: torch.ao.quantization.default_dynamic_qconfig}
            # A ResNet CLIP's attention pool reads its projections' weights and biases as
            # tensors, which a quantised Linear does not offer: it stays fp32.
            pools = [name for name, module in model.named_modules()
                     if type(module).__name__ == "AttentionPool2d"]
            # By name, each of its Linear layers too: the type entry would apply to them again.
            spec.update({name: None for name, _ in model.named_modules()
                         if any(name == pool or name.startswith(pool + ".") for pool in pools)})
            model = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                model, spec, dtype=torch.qint8, inplace=True)
    return model


def _exported_text(model: Any, folder: Path, model_id: str) -> Path | None:
    """The int8 ONNX file of the text tower, or None where it keeps PyTorch's int8.

    Only a text tower of CLIP's usual shape (causal, pooled at the end of text) is exported:
    it is run on tokens cut at the longest query's end of text, as `text_features` does.
    """
    tower = getattr(model, "text", model)
    if not _cut_length_allowed(tower):
        return None
    try:
        return onnx_int8.exported(model, folder, model_id, tower=onnx_int8.TEXT,
                                  text_tower=text_tower_module(model),
                                  reduce_range=onnx_int8.reduce_range_for(read_cpu().flags))
    except onnx_int8.ExportRefused as exc:
        log.warning("The text tower stays in PyTorch's int8: %s", exc)
        return None


def _cut_length_allowed(tower: Any) -> bool:
    """Whether the text tower can run on tokens cut at the end of text (CLIP's causal, argmax-pooled one)."""
    pool = getattr(tower, "text_pool_type", getattr(tower, "pool_type", None))
    return not (pool != "argmax" or getattr(tower, "attn_mask", None) is None
                or getattr(tower, "cls_emb", None) is not None or getattr(tower, "use_pad_mask", False))


def _text_tower_on_cut(model: Any, tokens: Any) -> Any:
    """The text tower's features of tokens already cut at the longest query's end of text."""
    import torch
    from open_clip.transformer import text_global_pool

    tower = getattr(model, "text", model)
    length = tokens.shape[1]
    # The token embedding's dtype is the network's (bf16, fp16, or fp32 also for int8, whose
    # quantised layers take fp32 in and out).
    cast = tower.token_embedding.weight.dtype
    x = tower.token_embedding(tokens).to(cast) + tower.positional_embedding[:length].to(cast)
    x = tower.transformer(x, attn_mask=tower.attn_mask[:length, :length])
    pooled = text_global_pool(tower.ln_final(x), tokens, "argmax")
    projection = tower.text_projection
    if projection is None:
        return pooled
    return projection(pooled) if isinstance(projection, torch.nn.Module) else pooled @ projection


def text_tower_module(model: Any) -> Any:
    """The text tower as a module of its own, for the ONNX export (cut tokens in, features out)."""
    import torch

    class TextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, tokens: torch.Tensor) -> Any:
            return _text_tower_on_cut(self.clip, tokens)

    return TextTower()


def normalise(features: Any) -> np.ndarray:
    """L2-normalised float32 rows on the CPU, whatever the network's dtype and device."""
    out = features.float()
    out = out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return np.ascontiguousarray(out.cpu().numpy(), dtype=np.float32)


def embed_pixels(model: Any, pixels: np.ndarray, device: str) -> np.ndarray:
    """Embeddings of a preprocessed batch (N, 3, 224, 224) through the network as it is now."""
    import torch

    if isinstance(model, OnnxClip):
        # As many threads as PyTorch has here: all cores, or one inside `auto`'s probe.
        return normalise(torch.from_numpy(model.image_features(pixels, torch.get_num_threads())))
    dtype = next(model.parameters()).dtype
    batch = torch.from_numpy(pixels).to(device, dtype=dtype)
    with torch.inference_mode():
        return normalise(model.encode_image(batch))


def text_features(model: Any, tokens: Any) -> Any:
    """CLIP's text tower, run only up to the longest query's end-of-text token.

    The text transformer is causal and pools the end-of-text position, so the padding
    after it cannot change the result: cutting it off gives the same embedding for a
    fraction of the work (a 10-token query does 8x fewer token steps than 77). open_clip's
    CustomTextCLIP (MobileCLIP) keeps the same tower apart, as `model.text`.
    """
    import torch

    if isinstance(model, OnnxClip):
        if model.text_path is not None:
            cut = tokens[:, :int(tokens.argmax(dim=-1).max()) + 1]
            return torch.from_numpy(model.text_features(cut.numpy(), torch.get_num_threads()))
        model = model.text_model
    if not _cut_length_allowed(getattr(model, "text", model)):
        return model.encode_text(tokens)
    return _text_tower_on_cut(model, tokens[:, :int(tokens.argmax(dim=-1).max()) + 1])


def embed_tokens(model: Any, tokens: Any) -> np.ndarray:
    """Normalised embeddings of tokenised queries."""
    import torch

    with torch.inference_mode():
        return normalise(text_features(model, tokens))
