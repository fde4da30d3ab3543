"""onnx-int8: both towers exported to ONNX Runtime's int8, agreeing with fp32, cached and checked."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clipseek.clip import onnx_int8
from clipseek.clip.encoder import ClipEncoder
from clipseek.clip.network import convert, embed_pixels, embed_tokens, text_tower_module
from clipseek.clip.precision import (
    INT8_MIN_COSINE,
    INT8_MIN_MEAN_COSINE,
    Measurement,
    choose_fastest_accurate,
    read_cpu,
)
from clipseek.clip.probe import precision_copies, probe_pixels
from clipseek.errors import ConfigError
from clipseek.library.register import Candidate
from clipseek.photo.imaging import load_rgb
from clipseek.settings import RANDOM_MODEL
from clipseek.util.hashing import sha256_of

pytestmark = pytest.mark.skipif(not onnx_int8.available(), reason="onnxruntime, onnx or onnxscript missing")


def _tiny_clip(seed: int) -> Any:
    """A CLIP of the real design, small enough to export in a few seconds (random weights)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(seed)
    return CLIP(embed_dim=32, vision_cfg=CLIPVisionCfg(layers=1, width=64, head_width=32, patch_size=32,
                                                       image_size=64),
                text_cfg=CLIPTextCfg(layers=1, width=64, heads=2, context_length=77, vocab_size=49408)).eval()


@pytest.fixture(scope="module")
def encoders(onnx_cache: Path) -> tuple[ClipEncoder, ClipEncoder]:
    """ViT-B/32 with the random weights in fp32 and in onnx-int8 (exported once per run)."""
    fp32 = ClipEncoder(RANDOM_MODEL, allow_download=False, precision="fp32")
    onnx = ClipEncoder(RANDOM_MODEL, allow_download=False, precision="onnx-int8", cache_dir=onnx_cache)
    onnx.load()
    return fp32, onnx


def test_onnx_int8_agrees_with_fp32_on_real_photos_and_queries(
        encoders: tuple[ClipEncoder, ClipEncoder], sample_photos: list[Candidate]) -> None:
    fp32, onnx = encoders
    assert isinstance(onnx._model, onnx_int8.OnnxClip) and onnx.precision == "onnx-int8"
    images = [load_rgb(c.path, max_pixels=100_000_000) for c in sample_photos]
    queries = ["an astronaut", "a cup of coffee on a saucer", "a red motorcycle parked in a room"]
    image_agreement = (fp32.encode_images(images) * onnx.encode_images(images)).sum(axis=1)
    text_agreement = (fp32.encode_texts(queries) * onnx.encode_texts(queries)).sum(axis=1)
    for agreement in (image_agreement, text_agreement):
        assert agreement.mean() >= INT8_MIN_MEAN_COSINE and agreement.min() >= INT8_MIN_COSINE, agreement
    # Not fp32 under another name: int8 rounding moves every embedding a little.
    assert image_agreement.max() < 0.99999


def test_queries_run_in_onnx_runtime_and_agree_with_fp32_at_every_length(
        encoders: tuple[ClipEncoder, ClipEncoder]) -> None:
    fp32, onnx = encoders
    assert isinstance(onnx._model, onnx_int8.OnnxClip) and onnx._model.text_path is not None
    assert "-text-" in onnx._model.text_path.name
    # One word to a full context, alone and in a batch of mixed lengths (cut at the longest).
    queries = ["moon", "a dog running on the beach at sunset with a red ball in its mouth " * 4,
               "a cup of coffee"]
    together = onnx.encode_texts(queries)
    alone = np.vstack([onnx.encode_texts([q]) for q in queries])
    reference = fp32.encode_texts(queries)
    # Activations are quantised per batch, so a query's embedding moves a little with its
    # batch mates: alone or together, each stays within int8's bar of fp32.
    for vectors in (together, alone):
        agreement = (reference * vectors).sum(axis=1)
        assert agreement.min() >= INT8_MIN_COSINE, agreement


def test_the_text_export_is_cached_per_text_weights_and_checked(tmp_path: Path) -> None:
    model = _tiny_clip(1)
    first = onnx_int8.exported(model, tmp_path, "tiny/one", reduce_range=False, tower=onnx_int8.TEXT,
                               text_tower=text_tower_module(model))
    record = json.loads(first.with_name(first.name + ".json").read_text())
    assert record["weights_sha256"] == onnx_int8.weights_checksum(model, onnx_int8.TEXT)
    assert record["weights_sha256"] != onnx_int8.weights_checksum(model)  # not the image tower's
    stamp = first.stat().st_mtime_ns
    again = onnx_int8.exported(model, tmp_path, "tiny/one", reduce_range=False, tower=onnx_int8.TEXT,
                               text_tower=text_tower_module(model))
    assert again == first and again.stat().st_mtime_ns == stamp
    first.write_bytes(first.read_bytes()[:-7] + b"damaged")
    redone = onnx_int8.exported(model, tmp_path, "tiny/one", reduce_range=False, tower=onnx_int8.TEXT,
                                text_tower=text_tower_module(model))
    rewritten = json.loads(redone.with_name(redone.name + ".json").read_text())
    assert redone == first and not redone.read_bytes().endswith(b"damaged")
    assert sha256_of(redone) == rewritten["sha256"]


def test_one_thread_and_all_threads_give_the_same_embeddings(
        encoders: tuple[ClipEncoder, ClipEncoder]) -> None:
    # `auto` probes on one thread, the worker runs on all: each thread count has its own session.
    _, onnx = encoders
    pixels = probe_pixels()
    everything = embed_pixels(onnx._model, pixels, "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = embed_pixels(onnx._model, pixels, "cpu")
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(alone, everything, atol=1e-4)


def test_the_export_is_cached_per_weights_and_reused(tmp_path: Path) -> None:
    model = _tiny_clip(1)
    first = onnx_int8.exported(model, tmp_path, "tiny/one", reduce_range=False)
    record = json.loads(first.with_name(first.name + ".json").read_text())
    assert record["weights_sha256"] == onnx_int8.weights_checksum(model)
    stamp = first.stat().st_mtime_ns
    again = onnx_int8.exported(copy.deepcopy(model), tmp_path, "tiny/one", reduce_range=False)
    assert again == first and again.stat().st_mtime_ns == stamp  # read, not exported again
    other = onnx_int8.exported(_tiny_clip(2), tmp_path, "tiny/one", reduce_range=False)
    assert other != first and other.exists() and first.exists()  # other weights: another file
    seven_bit = onnx_int8.exported(model, tmp_path, "tiny/one", reduce_range=True)
    assert seven_bit != first and "int8-r7" in seven_bit.name


def test_a_cached_file_that_fails_its_checksum_is_exported_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = _tiny_clip(1)
    path = onnx_int8.exported(model, tmp_path, "tiny/one", reduce_range=False)
    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    killed = tmp_path / ".export-killed"  # what an export killed half way leaves
    killed.mkdir()
    (killed / "image-fp32.onnx").write_bytes(b"partial")
    with caplog.at_level(logging.WARNING, logger="clipseek.clip.onnx_int8"):
        again = onnx_int8.exported(model, tmp_path, "tiny/one", reduce_range=False)
    assert again == path and path.read_bytes() != bytes(damaged)
    assert "does not match its recorded checksum" in caplog.text
    assert not killed.exists()
    pixels = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    cosines = (embed_pixels(onnx_int8.OnnxClip(model, path), pixels, "cpu")
               * embed_pixels(model, pixels, "cpu")).sum(axis=1)
    assert cosines.min() > 0.99, cosines  # the file runs, and is the export of these weights


def test_the_export_writes_nothing_to_the_output(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                caplog: pytest.LogCaptureFixture) -> None:
    # `clipseek search --json` prints its results on stdout; the exporter's progress must not
    # mix in, nor the quantiser's advice reach the product's log.
    with caplog.at_level(logging.INFO):
        onnx_int8.exported(_tiny_clip(3), tmp_path, "tiny/three", reduce_range=False)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert [r.name for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("Exporting the image tower" in r.getMessage() for r in caplog.records)  # its own line stays


def test_the_text_tower_runs_in_pytorch_int8(encoders: tuple[ClipEncoder, ClipEncoder]) -> None:
    _, onnx = encoders
    clip = onnx._model
    assert isinstance(clip, onnx_int8.OnnxClip)
    assert isinstance(clip.text_model.visual, torch.nn.Identity)  # the file runs the image tower
    layers = clip.text_model.transformer.modules()
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in layers)
    tokens = onnx._tokenizer(["a dog running on the beach"])
    assert embed_tokens(clip, tokens).shape == (1, onnx.dim)


def test_auto_takes_onnx_int8_where_it_is_fastest_and_accurate() -> None:
    def m(precision: str, rate: float, mean: float = 1.0, worst: float = 1.0) -> Measurement:
        return Measurement(precision, rate, 20.0, mean, worst)

    # The rates of a real AVX2-only EPYC (BENCHMARKS.md): 7-bit weights ran 1.3x PyTorch's int8.
    avx2 = [m("fp32", 13.5), m("int8", 17.0, 0.9998, 0.9997), m("onnx-int8", 22.4, 0.9996, 0.9995)]
    assert choose_fastest_accurate(avx2)[0] == "onnx-int8"
    # Plain int8 weights on that CPU saturated: faster still, but not accurate enough.
    saturated = [*avx2[:2], m("onnx-int8", 28.7, 0.990, 0.984)]
    precision, reason = choose_fastest_accurate(saturated)
    assert precision == "int8" and "onnx-int8 ran 28.7 images/s" in reason


def test_seven_bit_weights_only_where_the_cpu_has_no_vnni() -> None:
    assert onnx_int8.reduce_range_for(("avx2",))
    assert not onnx_int8.reduce_range_for(("avx2", "avx512_vnni"))
    assert not onnx_int8.reduce_range_for(("avx2", "avx_vnni"))
    assert not onnx_int8.reduce_range_for(("amx_int8",))


def test_a_folder_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(ConfigError, match=r"could not write its export .* set CLIPSEEK_MODEL_CACHE"):
        onnx_int8.exported(_tiny_clip(1), blocker / "onnx", "tiny/one", reduce_range=False)


def test_the_process_logs_as_before_after_an_export(tmp_path: Path) -> None:
    # The CLI configures no logging: the quantiser's warning would have given the root logger
    # a handler writing to the swallowed stderr of the export, and every later warning was lost.
    script = f"""
import logging, sys, torch
from pathlib import Path
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from clipseek.clip import onnx_int8
torch.manual_seed(4)
model = CLIP(embed_dim=32, vision_cfg=CLIPVisionCfg(layers=1, width=64, head_width=32, patch_size=32,
             image_size=64), text_cfg=CLIPTextCfg(layers=1, width=64, heads=2, context_length=77,
             vocab_size=49408)).eval()
onnx_int8.exported(model, Path({str(tmp_path)!r}), "tiny/four", reduce_range=False)
logging.getLogger("clipseek").warning("a warning after the export")
print("done")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                          cwd=Path(__file__).parents[1], timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"  # nothing of the exporter's
    assert done.stderr.strip().splitlines()[-1] == "a warning after the export", done.stderr


def test_a_file_onnx_runtime_cannot_run_leaves_onnx_int8_out_of_autos_choice(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = _tiny_clip(5)
    # A file that passes the checksum check but is no model: what a broken export would be,
    # named with the quantisation this CPU gets (7-bit weights where it has no VNNI).
    path = tmp_path / onnx_int8.cache_name("tiny/five", onnx_int8.weights_checksum(model),
                                           reduce_range=onnx_int8.reduce_range_for(read_cpu().flags))
    path.write_bytes(b"not an ONNX model")
    path.with_name(path.name + ".json").write_text(json.dumps(
        {"sha256": sha256_of(path), "weights_sha256": onnx_int8.weights_checksum(model)}))
    with pytest.raises(ConfigError, match="ONNX Runtime could not run the exported image tower"):
        convert(copy.deepcopy(model), "onnx-int8", onnx_folder=tmp_path, model_id="tiny/five")
    refused: dict[str, str] = {}
    with caplog.at_level(logging.WARNING):
        copies = precision_copies(model, ["fp32", "int8", "onnx-int8"], onnx_folder=tmp_path,
                                  model_id="tiny/five", refused=refused)
    assert list(copies) == ["fp32", "int8"]
    assert "onnx-int8 is left out" in caplog.text
    # The model's doing (remembered, not retried at every start), unlike a folder it cannot write.
    assert "ONNX Runtime could not run" in refused["onnx-int8"]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable: dict[str, str] = {}
    assert list(precision_copies(model, ["fp32", "onnx-int8"], onnx_folder=blocker / "onnx",
                                 model_id="tiny/five", refused=unwritable)) == ["fp32"]
    assert unwritable == {}
