"""The encoder: checkpoint loading in OpenAI's formats, checksums, and normalised output."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipseek.clip.checkpoint import LoadPolicy
from clipseek.clip.encoder import ClipEncoder, parse_model_id
from clipseek.clip.network import build_network, convert, embed_tokens, runnable_precisions
from clipseek.errors import ConfigError, WeightsError
from clipseek.settings import RANDOM_MODEL
from tests.images import photo_array


class _Holder(torch.nn.Module):
    def forward(self) -> int:
        return 0


def _random_state(seed: int) -> dict[str, torch.Tensor]:
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    # OpenAI's checkpoints hold fp16 weights.
    return {k: v.half() for k, v in model.state_dict().items()}


def _torchscript_archive(state: dict[str, torch.Tensor], path: Path) -> Path:
    """A TorchScript archive whose state_dict has OpenAI's keys, like the published .pt files."""
    root = _Holder()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        module: torch.nn.Module = root
        for name in parents:
            if not hasattr(module, name):
                module.add_module(name, _Holder())
            module = getattr(module, name)
        module.register_parameter(leaf, torch.nn.Parameter(value, requires_grad=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still read
        torch.jit.save(torch.jit.script(root), str(path))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    state = _random_state(7)
    plain = folder / "state_dict.pt"
    torch.save(state, plain)
    return {"plain": plain, "torchscript": _torchscript_archive(state, folder / "ViT-B-32.pt")}


@pytest.mark.parametrize("kind", ["plain", "torchscript"])
def test_checkpoint_with_matching_checksum_loads_and_encodes(
    checkpoints: dict[str, Path], kind: str, tmp_path: Path
) -> None:
    path = checkpoints[kind]
    enc = ClipEncoder("ViT-B-32/openai", weights=path, weights_sha256=_sha(path),
                      cache_dir=tmp_path, allow_download=False, precision="fp32")
    texts = enc.encode_texts(["a dog running on the beach", "a cat"])
    images = enc.encode_images([Image.fromarray(photo_array(5))])
    assert texts.shape == (2, 512) and images.shape == (1, 512)
    assert texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, rtol=1e-5)
    assert not enc.is_random


def test_both_formats_give_the_same_embeddings(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    outputs = []
    for path in checkpoints.values():
        enc = ClipEncoder("ViT-B-32/openai", weights=path, weights_sha256=_sha(path),
                          cache_dir=tmp_path, allow_download=False, precision="fp32")
        outputs.append(enc.encode_texts(["a red motorcycle"]))
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-6)


def test_a_checkpoint_fills_every_weight_of_the_network(checkpoints: dict[str, Path],
                                                        tmp_path: Path) -> None:
    path = checkpoints["plain"]
    policy = LoadPolicy(arch="ViT-B-32", random=False, weights=path, weights_sha256=_sha(path),
                        cache_dir=tmp_path, allow_download=False)
    model, _ = build_network(policy, "cpu")
    # Built without random draws: every weight is the file's (none left as uninitialised memory).
    source = torch.load(path, weights_only=True)
    loaded = model.state_dict()
    assert set(source) - {"input_resolution", "context_length", "vocab_size"} <= set(loaded)
    for key, value in loaded.items():
        if key in source:
            torch.testing.assert_close(value, source[key].float(), rtol=0, atol=0)
    # PyTorch draws random weights again afterwards, and the seeded random model is unchanged.
    assert float(torch.nn.init.normal_(torch.zeros(8)).abs().sum()) > 0
    random_policy = LoadPolicy(arch="ViT-B-32", random=True, pretrained="random", allow_download=False)
    first, second = build_network(random_policy, "cpu")[0], build_network(random_policy, "cpu")[0]
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(),
                                                 strict=True))
    assert float(first.visual.conv1.weight.detach().abs().sum()) > 0


def test_wrong_checksum_is_refused_with_what_to_do(checkpoints: dict[str, Path],
                                                   tmp_path: Path) -> None:
    enc = ClipEncoder("ViT-B-32/openai", weights=checkpoints["plain"], weights_sha256="0" * 64,
                      cache_dir=tmp_path, allow_download=False)
    with pytest.raises(WeightsError, match="CLIPSEEK_WEIGHTS_SHA256"):
        enc.encode_texts(["x"])


def test_a_file_that_is_not_the_official_checkpoint_is_refused(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    enc = ClipEncoder("ViT-B-32/openai", weights=checkpoints["plain"], cache_dir=tmp_path,
                      allow_download=False)
    with pytest.raises(WeightsError, match="not the expected ViT-B-32 checkpoint"):
        enc.load()


def test_missing_weights_file_names_the_setting(tmp_path: Path) -> None:
    enc = ClipEncoder("ViT-B-32/openai", weights=tmp_path / "nope.pt", cache_dir=tmp_path,
                      allow_download=False)
    with pytest.raises(WeightsError, match=r"CLIPSEEK_WEIGHTS points to .*does not exist"):
        enc.load()


def test_no_weights_offline_says_how_to_provide_them(tmp_path: Path) -> None:
    enc = ClipEncoder("ViT-B-32/openai", cache_dir=tmp_path, allow_download=False)
    with pytest.raises(WeightsError) as info:
        enc.load()
    message = str(info.value)
    assert "CLIPSEEK_WEIGHTS=" in message and "ViT-B-32.pt" in message
    assert str(tmp_path / "ViT-B-32.pt") in message


def test_cached_checkpoint_is_used_when_it_verifies(checkpoints: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from clipseek.clip import weights

    path = checkpoints["torchscript"]
    official = weights.OPENAI_CHECKPOINTS["ViT-B-32"]
    # Pretend the published file is ours, so the cache check runs on a file we have.
    monkeypatch.setitem(weights.OPENAI_CHECKPOINTS, "ViT-B-32",
                        weights.Checkpoint(official.url, _sha(path), "ViT-B-32.pt", 1))
    (tmp_path / "ViT-B-32.pt").symlink_to(path)
    found = weights.resolve_weights("ViT-B-32", weights=None, expected_sha256=None,
                                    cache_dir=tmp_path, allow_download=False)
    assert found == tmp_path / "ViT-B-32.pt"
    assert (tmp_path / "ViT-B-32.pt.verified").exists()


def test_random_model_is_identical_in_every_process(encoder: ClipEncoder) -> None:
    other = ClipEncoder("ViT-B-32/random", allow_download=False, precision=encoder.precision)
    np.testing.assert_allclose(other.encode_texts(["a cat"]), encoder.encode_texts(["a cat"]),
                               atol=1e-6)
    assert other.is_random


def test_batch_and_single_images_agree(encoder: ClipEncoder) -> None:
    imgs = [Image.fromarray(photo_array(s)) for s in range(3)]
    batch = encoder.encode_images(imgs)
    single = encoder.encode_images(imgs[1:2])
    if encoder.precision == "int8":
        # Dynamic int8 scales activations per batch, so batch-mates move a row by rounding only.
        assert float(batch[1] @ single[0]) > 0.999
    else:
        np.testing.assert_allclose(batch[1], single[0], atol=1e-4)


def test_bad_model_id_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="CLIPSEEK_MODEL"):
        parse_model_id("clip")


def test_trimmed_text_tower_equals_the_full_77_token_pass() -> None:
    # fp32 on purpose: the session's encoder runs bf16 on CPUs that have it, where two
    # different sequence lengths round differently and "identical" cannot be checked.
    encoder = ClipEncoder(RANDOM_MODEL, allow_download=False, precision="fp32")
    encoder.load()
    texts = ["a dog", "a dog running on the beach at sunset with a red ball", "x" * 400]
    tokens = encoder._tokenizer(texts)
    with torch.inference_mode():
        full = encoder._model.encode_text(tokens)
        trimmed = encoder._encode_tokens(tokens)
    np.testing.assert_allclose(trimmed.numpy(), full.numpy(), rtol=1e-4, atol=1e-5)


def test_repeated_queries_come_from_the_cache(encoder: ClipEncoder) -> None:
    first = encoder.encode_texts(["a lighthouse at night"])
    first[0, 0] = 42.0  # callers may modify what they get without poisoning the cache
    again = encoder.encode_texts(["a lighthouse at night"])
    assert again[0, 0] != 42.0 and "a lighthouse at night" in encoder._query_cache


def test_weights_are_downloaded_verified_and_cached(checkpoints: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from clipseek.clip import weights
    from tests.httpserver import Files, serve

    payload = checkpoints["torchscript"].read_bytes()
    files = Files({"/clip/ViT-B-32.pt": payload}, breaks_left=1)  # the connection breaks once
    with serve(files) as base:
        monkeypatch.setitem(weights.OPENAI_CHECKPOINTS, "ViT-B-32", weights.Checkpoint(
            f"{base}/clip/ViT-B-32.pt", hashlib.sha256(payload).hexdigest(), "ViT-B-32.pt", 300))
        enc = ClipEncoder("ViT-B-32/openai", cache_dir=tmp_path, allow_download=True, precision="fp32")
        assert enc.encode_texts(["a boat"]).shape == (1, 512)
    assert (tmp_path / "ViT-B-32.pt").read_bytes() == payload
    assert len(files.requests) == 2  # one broken response, one resumed range request


def test_bf16_keeps_layernorm_in_fp32_and_returns_float32() -> None:
    # The conversion itself, which runs on any CPU (PyTorch emulates bf16 where the CPU has
    # no bf16 instructions); the encoder refuses bf16 on such a CPU (tests/test_precision.py).
    model, tokenizer = build_network(LoadPolicy(arch="ViT-B-32", random=True), "cpu")
    model = convert(model, "bf16")
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.weight.dtype == torch.float32 for m in norms)
    assert any(p.dtype == torch.bfloat16 for p in model.parameters())
    assert embed_tokens(model, tokenizer(["a cat"])).dtype == np.float32
    if "bf16" in runnable_precisions("cpu"):
        enc = ClipEncoder("ViT-B-32/random", allow_download=False, precision="bf16")
        assert enc.encode_texts(["a cat"]).dtype == np.float32
        assert enc.precision == "bf16" and enc.precision_choice is None


@pytest.fixture(scope="module")
def resnet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OpenAI's RN50 layout (a 1,024-d ResNet CLIP), random fp16 weights."""
    import open_clip

    torch.manual_seed(3)
    model = open_clip.create_model("RN50-quickgelu", pretrained=None)
    path = tmp_path_factory.mktemp("rn50") / "RN50.pt"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    return path


def test_a_resnet_checkpoint_loads_with_its_own_dimension(resnet_checkpoint: Path, tmp_path: Path) -> None:
    enc = ClipEncoder("RN50/openai", weights=resnet_checkpoint, weights_sha256=_sha(resnet_checkpoint),
                      cache_dir=tmp_path, allow_download=False, precision="fp32")
    images = enc.encode_images([Image.fromarray(photo_array(2))])
    texts = enc.encode_texts(["a dog"])
    assert images.shape == (1, 1024) and texts.shape == (1, 1024) and enc.dim == 1024


@pytest.mark.parametrize(("model_id", "which"), [("ViT-B-32/openai", "resnet"), ("RN50/openai", "vit"),
                                                 ("ViT-B-16/openai", "vit")])
def test_weights_of_another_architecture_are_refused_in_one_sentence(
        model_id: str, which: str, resnet_checkpoint: Path, checkpoints: dict[str, Path],
        tmp_path: Path) -> None:
    path = resnet_checkpoint if which == "resnet" else checkpoints["plain"]
    enc = ClipEncoder(model_id, weights=path, weights_sha256=_sha(path), cache_dir=tmp_path,
                      allow_download=False, precision="fp32")
    with pytest.raises(WeightsError, match="holds the weights of another CLIP architecture") as caught:
        enc.load()
    assert "\n" not in str(caught.value) and model_id.partition("/")[0] in str(caught.value)
