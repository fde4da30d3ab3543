"""Loading CLIP: where the weights come from, and which device and precision the network runs in."""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from clipseek.clip import onnx_int8
from clipseek.clip.catalog import MODELS, RANDOM_TAG, UnknownModel, lookup
from clipseek.clip.onnx_int8 import OnnxClip
from clipseek.clip.precision import Measurement, read_cpu
from clipseek.clip.weights import resolve_hub_weights, resolve_weights
from clipseek.errors import ConfigError, WeightsError
from clipseek.photo.imaging import (
    OPENAI_PREPROCESS,
    RESIZE_FILTERS,
    RESIZE_MODES,
    Preprocess,
    clip_pixels,
)
from clipseek.settings import Settings

log = logging.getLogger(__name__)

# The random model's weights come from this seed, so every process (CLI, worker, web)
# builds the same network and their embeddings stay comparable.
RANDOM_SEED = 20240101

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

# torch and open_clip are imported inside the functions that need them: importing them takes
# seconds, which a process that never encodes (most commands, the status page) should not pay.


@dataclass(frozen=True)
class LoadPolicy:
    """Which network to build, from which checkpoint, on which device, in which precision."""

    arch: str
    random: bool
    # The open_clip pretrained tag: `openai` (OpenAI's files), `random`, or a catalogue model's
    # tag whose weights are an open_clip checkpoint (the hub's open_clip_model.safetensors).
    pretrained: str = "openai"
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
    cache_dir = policy.cache_dir or Settings.from_env().model_cache
    if is_hub_checkpoint(policy):
        import open_clip

        name = f"{policy.arch}/{policy.pretrained}"
        entry = MODELS[name]
        return resolve_hub_weights(
            name,
            hub_repo=str(open_clip.get_pretrained_cfg(policy.arch, policy.pretrained).get("hf_hub", "")),
            filename=entry.weights_file,
            pinned_sha256=entry.sha256,
            weights=policy.weights,
            expected_sha256=policy.weights_sha256,
            cache_dir=cache_dir,
        )
    return resolve_weights(
        policy.arch,
        weights=policy.weights,
        expected_sha256=policy.weights_sha256,
        cache_dir=cache_dir,
        allow_download=policy.allow_download,
    )


def is_hub_checkpoint(policy: LoadPolicy) -> bool:
    """Whether the policy's weights are an open_clip checkpoint rather than OpenAI's or random."""
    return not policy.random and policy.pretrained != "openai"


def _pretrained_cfg(arch: str, tag: str) -> dict[str, Any]:
    """open_clip's published settings of `arch/tag`; for random weights, its catalogue model's."""
    import open_clip

    if tag == RANDOM_TAG:
        try:
            tag = lookup(f"{arch}/{RANDOM_TAG}").pretrained
        except UnknownModel:
            return {}
    return dict(open_clip.get_pretrained_cfg(arch, tag) or {})


def preprocess_for(arch: str, tag: str) -> Preprocess:
    """The input `arch/tag` was trained on: its image size, and its published mean, std and resize.

    A random model takes its catalogue model's, so that it costs what that model would.
    """
    import open_clip

    config = open_clip.get_model_config(arch)
    if not config:
        return OPENAI_PREPROCESS  # an unknown architecture fails when it is built, with its reason
    size = config["vision_cfg"].get("image_size", OPENAI_PREPROCESS.size)
    found = {**config.get("preprocess_cfg", {}), **_pretrained_cfg(arch, tag)}
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
    found = architecture_of(state) if isinstance(state, dict) else None
    expected = _expected_shape(policy.arch)
    if found is not None and expected is not None and found != expected:
        raise WeightsError(f"{path} holds the weights of another CLIP architecture "
                           f"({_describe(found)}), not {policy.arch} ({_describe(expected)}): "
                           f"give the {policy.arch} checkpoint, or choose the model it belongs to.")
    try:
        model = build_model_from_openai_state_dict(state)
    except (KeyError, RuntimeError, AttributeError) as exc:
        raise WeightsError(
            f"{path} does not hold CLIP {policy.arch} weights in OpenAI's layout ({exc})."
        ) from None
    return model.float()


# An architecture as its checkpoint shows it: embedding dim, vision layers, width, patch size.
Shape = tuple[int, tuple[int, ...], int, int | None]


def architecture_of(state: dict[str, Any]) -> Shape | None:
    """The architecture a checkpoint in OpenAI's layout holds, read from its tensors' shapes.

    OpenAI's loader infers the network from the shapes, so a ResNet-50 file loaded as
    ViT-B/32 would build a ResNet-50 without complaint; this is what catches it.
    """
    try:
        dim = int(state["text_projection"].shape[1])
        if "visual.proj" in state:
            conv = state["visual.conv1.weight"]
            blocks = {k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")}
            return dim, (len(blocks),), int(conv.shape[0]), int(conv.shape[-1])
        stages = tuple(len({k.split(".")[2] for k in state if k.startswith(f"visual.layer{n}.")})
                       for n in range(1, 5))
        return dim, stages, int(state["visual.layer1.0.conv1.weight"].shape[0]), None
    except (KeyError, AttributeError, IndexError):
        return None


def _expected_shape(arch: str) -> Shape | None:
    import open_clip

    config = open_clip.get_model_config(arch)
    if not config:
        return None
    vision = config["vision_cfg"]
    layers = vision["layers"]
    stages = tuple(layers) if isinstance(layers, (list, tuple)) else (int(layers),)
    return int(config["embed_dim"]), stages, int(vision["width"]), vision.get("patch_size")


def _describe(shape: Shape) -> str:
    dim, layers, width, patch = shape
    kind = f"ViT, patch {patch}" if patch else "ResNet"
    return f"{kind}, {'-'.join(map(str, layers))} layers of width {width}, {dim}-d"


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
                          f"({_first_line(exc)}).") from None
    if policy.random:
        # OpenAI's architectures were trained with QuickGELU: their random twins keep it.
        quick = f"{policy.arch}-quickgelu"
        with torch.random.fork_rng(devices=[]), _quiet_root_logger():
            torch.manual_seed(RANDOM_SEED)
            # open_clip warns that no weights were loaded: that is the point here.
            model = open_clip.create_model(quick if quick in open_clip.list_models() else policy.arch,
                                           pretrained=None)
    elif is_hub_checkpoint(policy):
        model = _read_hub_checkpoint(policy)
    else:
        model = _read_checkpoint(policy)
    return model.eval().to(device), tokenizer


def _first_line(exc: BaseException) -> str:
    # PyTorch's messages run over several lines; ClipSeek's refusals are one sentence.
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _read_state(path: Path, name: str) -> dict[str, Any]:
    """The tensors of a checkpoint file: safetensors, or a torch state dict (.bin, .pt)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state: Any = load_file(str(path), device="cpu")
    except SafetensorError:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle, zip and torch errors alike mean an unreadable file
            raise WeightsError(f"{path} is neither a safetensors file nor a state dict PyTorch "
                               f"can read ({_first_line(exc)}).") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} holds no state dict of tensors, so it is not a {name} checkpoint.")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _read_hub_checkpoint(policy: LoadPolicy) -> Any:
    """The network of an open_clip checkpoint, its tensors loaded strictly into `arch`."""
    import open_clip
    from open_clip.convert import convert_state_dict

    path = checkpoint_path(policy)
    name = f"{policy.arch}/{policy.pretrained}"
    state = _read_state(path, name)
    quick_gelu = bool(_pretrained_cfg(policy.arch, policy.pretrained).get("quick_gelu", False))
    with _quiet_root_logger():
        model = open_clip.create_model(policy.arch, pretrained=None, force_quick_gelu=quick_gelu)
    # What open_clip's own loader adapts: Apple's MobileCLIP layout, a scalar logit scale.
    state = convert_state_dict(model, state)
    if "logit_scale" in state and model.logit_scale.ndim != state["logit_scale"].ndim:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise WeightsError(f"{path} holds the weights of another network, not {name}: give the "
                           f"{name} checkpoint, or choose the model it belongs to.") from None
    return model.float()


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
        # ONNX Runtime runs the image tower from the file: PyTorch's copy would only take memory
        # (about 100 MB for ViT-B/32 once int8) in every process that encodes.
        model.visual = torch.nn.Identity()
        clip = OnnxClip(convert(model, "int8"), path)
        clip.check(side, torch.get_num_threads())
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
    from open_clip.transformer import text_global_pool

    if isinstance(model, OnnxClip):
        model = model.text_model
    tower = getattr(model, "text", model)
    pool = getattr(tower, "text_pool_type", getattr(tower, "pool_type", None))
    if (pool != "argmax" or getattr(tower, "attn_mask", None) is None
            or getattr(tower, "cls_emb", None) is not None or getattr(tower, "use_pad_mask", False)):
        return model.encode_text(tokens)
    length = int(tokens.argmax(dim=-1).max()) + 1
    tokens = tokens[:, :length]
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


def embed_tokens(model: Any, tokens: Any) -> np.ndarray:
    """Normalised embeddings of tokenised queries."""
    import torch

    with torch.inference_mode():
        return normalise(text_features(model, tokens))


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
