"""open_clip's own checkpoints (the hub's layout): loading, checksums, refusals and preprocessing."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sqlalchemy import func, select

from clipseek.clip.catalog import MODELS
from clipseek.clip.encoder import ClipEncoder
from clipseek.clip.network import missing_for, runnable_precisions, text_features
from clipseek.errors import ConfigError, WeightsError
from clipseek.indexing.encoding import decode_for_clip
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate
from clipseek.photo.imaging import OPENAI_PREPROCESS, Preprocess, clip_pixels, load_rgb
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.tables import Embedding
from tests.cli import run_in_process

LAION = "ViT-B-32/laion2b_s34b_b79k"
MOBILE = "MobileCLIP-B/datacompdr"
MOBILE_PREPROCESS = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="bilinear")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hub_checkpoint(arch: str, path: Path, seed: int) -> Path:
    """A random-weight checkpoint of `arch` as open_clip saves it on the hub (safetensors)."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def laion_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _hub_checkpoint("ViT-B-32", tmp_path_factory.mktemp("hub") / "open_clip_model.safetensors", 11)


@pytest.fixture(scope="module")
def mobile_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _hub_checkpoint("MobileCLIP-B", tmp_path_factory.mktemp("hub") / "mobile.safetensors", 12)


def _encoder(model_id: str, path: Path | None, sha: str | None, cache: Path) -> ClipEncoder:
    return ClipEncoder(model_id, weights=path, weights_sha256=sha, cache_dir=cache,
                       allow_download=False, precision="fp32")


def _photos(sample_photos: list[Candidate], count: int) -> list[Image.Image]:
    return [load_rgb(c.path, max_pixels=100_000_000) for c in sample_photos[:count]]


def test_a_hub_checkpoint_loads_with_its_checksum_and_encodes_photos_and_texts(
        laion_file: Path, sample_photos: list[Candidate], tmp_path: Path) -> None:
    enc = _encoder(LAION, laion_file, _sha(laion_file), tmp_path)
    images = enc.encode_images(_photos(sample_photos, 4))
    texts = enc.encode_texts(["a dog on the beach", "a cup of coffee"])
    assert images.shape == (4, 512) and texts.shape == (2, 512) and enc.dim == 512
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, rtol=1e-5)
    assert not enc.is_random
    # The file's own weights, not the seeded random ones: the same photos embed differently.
    random = ClipEncoder("ViT-B-32/random", allow_download=False, precision="fp32")
    assert not np.allclose(images, random.encode_images(_photos(sample_photos, 4)), atol=1e-3)


def test_a_torch_state_dict_of_the_same_weights_gives_the_same_embeddings(
        laion_file: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    pt = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(load_file(str(laion_file)), pt)
    vectors = [_encoder(LAION, path, _sha(path), tmp_path / path.suffix).encode_texts(["a red bicycle"])
               for path in (laion_file, pt)]
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)


def test_a_cached_checkpoint_verified_once_is_trusted_without_its_checksum(
        laion_file: Path, tmp_path: Path) -> None:
    cached = tmp_path / MODELS[LAION].weights_file
    cached.write_bytes(laion_file.read_bytes())
    with pytest.raises(WeightsError, match=r"pins no checksum .* CLIPSEEK_WEIGHTS_SHA256") as caught:
        _encoder(LAION, None, None, tmp_path).load()
    assert "\n" not in str(caught.value)
    _encoder(LAION, None, _sha(cached), tmp_path).load()
    # A worker names only the model: the verification recorded next to the file vouches for it.
    assert _encoder(LAION, None, None, tmp_path).encode_texts(["a cat"]).shape == (1, 512)
    # Changed since: the record no longer applies.
    cached.write_bytes(cached.read_bytes()[:-1] + b"\0")
    with pytest.raises(WeightsError, match="pins no checksum"):
        _encoder(LAION, None, None, tmp_path).load()


def test_a_wrong_checksum_is_refused_in_one_sentence(laion_file: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="is not the expected ViT-B-32/laion2b_s34b_b79k") as caught:
        _encoder(LAION, laion_file, "0" * 64, tmp_path).load()
    assert "\n" not in str(caught.value) and "CLIPSEEK_WEIGHTS_SHA256" in str(caught.value)


def test_weights_of_another_architecture_are_refused_in_one_sentence(
        mobile_file: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="holds the weights of another network, not "
                                           "ViT-B-32/laion2b_s34b_b79k") as caught:
        _encoder(LAION, mobile_file, _sha(mobile_file), tmp_path).load()
    assert "\n" not in str(caught.value)


def test_a_file_that_is_no_checkpoint_is_refused_in_one_sentence(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="neither a safetensors file nor a state dict") as caught:
        _encoder(LAION, junk, _sha(junk), tmp_path).load()
    assert "\n" not in str(caught.value)


def test_absent_weights_name_the_file_and_where_it_goes(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as caught:
        _encoder(LAION, None, None, tmp_path).load()
    message = str(caught.value)
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in message and "open_clip_model.safetensors" in message
    assert str(tmp_path / "ViT-B-32_laion2b_s34b_b79k.safetensors") in message and "\n" not in message
    with pytest.raises(WeightsError, match=r"CLIPSEEK_WEIGHTS points to .*nowhere.safetensors"):
        _encoder(LAION, tmp_path / "nowhere.safetensors", "0" * 64, tmp_path).load()


def test_laion_vit_b_32_preprocesses_exactly_as_openai(laion_file: Path, sample_photos: list[Candidate],
                                                        tmp_path: Path) -> None:
    enc = _encoder(LAION, laion_file, _sha(laion_file), tmp_path)
    assert enc.preprocess == OPENAI_PREPROCESS
    photo = _photos(sample_photos, 1)[0]
    assert np.array_equal(clip_pixels(photo, enc.preprocess), clip_pixels(photo))


def test_mobileclip_loads_with_its_own_preprocessing(mobile_file: Path, sample_photos: list[Candidate],
                                                     tmp_path: Path) -> None:
    enc = _encoder(MOBILE, mobile_file, _sha(mobile_file), tmp_path)
    assert enc.preprocess == MOBILE_PREPROCESS
    photo = _photos(sample_photos, 1)[0]
    mine, openai = clip_pixels(photo, enc.preprocess), clip_pixels(photo)
    # Mean 0, std 1: the pixels stay in [0, 1], where OpenAI's normalisation spreads them wider.
    assert mine.shape == openai.shape and mine.min() >= 0.0 and mine.max() <= 1.0
    assert openai.min() < -1.0
    # The decode threads of indexing prepare each image the model's way.
    _, decoded, error, _ = decode_for_clip(1, str(sample_photos[0].path), 100_000_000, enc.preprocess)
    assert error is None and decoded is not None and np.array_equal(decoded, mine)
    images, texts = enc.encode_images([photo]), enc.encode_texts(["a lighthouse at dusk"])
    assert images.shape == (1, 512) and texts.shape == (1, 512) and enc.dim == 512


def test_random_weights_build_each_buildable_catalogue_architecture() -> None:
    mobile = ClipEncoder("MobileCLIP-B/random", allow_download=False, precision="fp32")
    assert mobile.preprocess == MOBILE_PREPROCESS
    assert mobile.encode_texts(["a boat"]).shape == (1, 512)
    assert type(mobile._model).__name__ == "CustomTextCLIP"
    # OpenAI's architectures keep the QuickGELU they were trained with.
    vit = ClipEncoder("ViT-B-32/random", allow_download=False, precision="fp32")
    vit.load()
    assert type(vit._model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


@pytest.mark.skipif(missing_for("ViT-B-16-SigLIP2") is None, reason="transformers is installed here")
def test_an_architecture_this_machine_cannot_build_is_a_one_sentence_config_error() -> None:
    enc = ClipEncoder("ViT-B-16-SigLIP2/random", allow_download=False, precision="fp32")
    with pytest.raises(ConfigError, match="cannot build ViT-B-16-SigLIP2 on this machine: it needs "
                                          "the `transformers` package") as caught:
        enc.load()
    assert "\n" not in str(caught.value)


class _Recording(ClipEncoder):
    """A real encoder that keeps every batch of pixels it is given."""

    batches: list[np.ndarray]

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        self.batches.append(pixels.copy())
        return super().encode_pixels(pixels)


def test_indexing_prepares_each_image_the_way_its_model_wants(
        mobile_file: Path, db: Database, settings: Settings, sample_photos: list[Candidate],
        tmp_path: Path) -> None:
    enc = _Recording(MOBILE, weights=mobile_file, weights_sha256=_sha(mobile_file), cache_dir=tmp_path,
                     allow_download=False, precision="fp32")
    enc.batches = []
    ingest_inline(db, enc, sample_photos[:2], settings=settings)
    with db.session() as session:
        stored = session.scalar(select(func.count()).select_from(Embedding).where(Embedding.model == MOBILE))
    assert stored == 2
    expected = [clip_pixels(load_rgb(c.path, max_pixels=settings.max_image_pixels), MOBILE_PREPROCESS)
                for c in sample_photos[:2]]
    assert np.array_equal(np.concatenate(enc.batches), np.stack(expected))


# A whole `clipseek model use` through the command (20 s): CI runs it; `make test` keeps
# the loading tests above.
@pytest.mark.slow
def test_model_use_takes_a_hub_model_once_its_checksum_is_given(
        laion_file: Path, db: Database, encoder: ClipEncoder, settings: Settings,
        sample_photos: list[Candidate], cli_env: dict[str, str]) -> None:
    ingest_inline(db, encoder, sample_photos[:2], settings=settings)
    settings.model_cache.mkdir(parents=True, exist_ok=True)
    (settings.model_cache / MODELS[LAION].weights_file).write_bytes(laion_file.read_bytes())

    for extra, expected in (((), "pins no checksum"), (("--sha256", "0" * 64), "is not the expected")):
        refused = run_in_process(cli_env, "model", "use", LAION, *extra)
        assert refused.returncode == 1 and expected in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    malformed = run_in_process(cli_env, "model", "use", LAION, "--sha256", "abc")
    assert malformed.returncode == 2 and "64 hexadecimal digits" in malformed.stderr
    # The switch itself in a process of its own, as a user runs it.
    started = subprocess.run(["clipseek", "model", "use", LAION, "--sha256", _sha(laion_file).upper()],
                             env=cli_env, capture_output=True, text=True, timeout=600, check=False)
    assert started.returncode == 0, started.stderr
    assert f"Embedding 2 image(s) with {LAION} (512-d)" in started.stdout


@pytest.mark.skipif("int8" not in runnable_precisions("cpu"), reason="no int8 engine on this CPU")
def test_mobileclip_text_tower_is_trimmed_exactly_and_runs_in_int8() -> None:
    fp32 = ClipEncoder("MobileCLIP-B/random", allow_download=False, precision="fp32")
    fp32.load()
    tokens = fp32._tokenizer(["a dog", "a cat asleep on a red mat in the afternoon sun"])
    with torch.inference_mode():
        full = fp32._model.encode_text(tokens)
        trimmed = text_features(fp32._model, tokens)
    assert trimmed.shape == full.shape and torch.allclose(trimmed, full, atol=1e-5)
    # Its quantised text tower is run by ClipSeek's own pass (open_clip's reads a Linear's weight).
    int8 = ClipEncoder("MobileCLIP-B/random", allow_download=False, precision="int8")
    assert int8.encode_texts(["a boat on a lake"]).shape == (1, 512)
