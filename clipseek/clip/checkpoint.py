"""Reading CLIP checkpoints: where the weights come from (OpenAI's files, open_clip's hub
files, a file of your own), checked against the architecture they claim."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipseek.clip.catalog import MODELS, RANDOM_TAG, UnknownModel, lookup
from clipseek.clip.weights import resolve_hub_weights, resolve_weights
from clipseek.errors import WeightsError
from clipseek.settings import Settings

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
def quiet_root_logger() -> Iterator[None]:
    """Keep open_clip's and PyTorch's chatter while building a network out of the log."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(previous)


# Networks are built one at a time in a process: one built for a checkpoint skips its random
# initialisation (`weights_loaded_next`), which a random network built meanwhile needs.
BUILD_LOCK = threading.Lock()
# The initialisers PyTorch's layers and open_clip's networks draw their first weights with.
_INITIALISERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
                 "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
                 "orthogonal_")


@contextmanager
def weights_loaded_next() -> Iterator[None]:
    """Build a network without drawing random weights, because every one is loaded next (strictly).

    open_clip builds the network with random weights and then loads the checkpoint over them:
    drawing ViT-B/32's 150 million random numbers is 1-2 s of a start's CPU, thrown away.
    """
    import torch

    with BUILD_LOCK:
        saved = {name: getattr(torch.nn.init, name) for name in _INITIALISERS}
        for name in _INITIALISERS:
            setattr(torch.nn.init, name, _leave_as_is)
        try:
            yield
        finally:
            for name, initialiser in saved.items():
                setattr(torch.nn.init, name, initialiser)


def _leave_as_is(tensor: Any, *_args: Any, **_kwargs: Any) -> Any:
    return tensor


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


def pretrained_cfg(arch: str, tag: str) -> dict[str, Any]:
    """open_clip's published settings of `arch/tag`; for random weights, its catalogue model's."""
    import open_clip

    if tag == RANDOM_TAG:
        try:
            tag = lookup(f"{arch}/{RANDOM_TAG}").pretrained
        except UnknownModel:
            return {}
    return dict(open_clip.get_pretrained_cfg(arch, tag) or {})


def read_checkpoint(policy: LoadPolicy) -> Any:
    """The network of an OpenAI checkpoint (TorchScript archive or state dict), checked to be `arch`."""
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
        # Strict: a tensor the file lacks fails here rather than stay uninitialised.
        with weights_loaded_next():
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


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message."""
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
                               f"can read ({first_line(exc)}).") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} holds no state dict of tensors, so it is not a {name} checkpoint.")
    return {k.removeprefix("module."): v for k, v in state.items()}


def read_hub_checkpoint(policy: LoadPolicy) -> Any:
    """The network of an open_clip checkpoint, its tensors loaded strictly into `arch`."""
    import open_clip
    from open_clip.convert import convert_state_dict

    path = checkpoint_path(policy)
    name = f"{policy.arch}/{policy.pretrained}"
    state = _read_state(path, name)
    quick_gelu = bool(pretrained_cfg(policy.arch, policy.pretrained).get("quick_gelu", False))
    with quiet_root_logger(), weights_loaded_next():
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
