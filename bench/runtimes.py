"""The image tower through PyTorch (fp32, bf16, int8) and ONNX Runtime (fp32, int8), side by side.

    python -m bench.runtimes                 # batch 32, every runtime this machine has
    python -m bench.runtimes --tiny          # a small batch: checks the script runs

ONNX Runtime comes with ClipSeek's requirements (its `onnx-int8` precision is the
"onnxruntime int8" rows here: plain, or with 7-bit weights on a CPU without VNNI). The
ViT-B/32 image tower (random weights) is exported
to ONNX once per run and quantised dynamically (int8 weights, activations quantised per
batch, as PyTorch's int8 path does). Every runtime encodes the same preprocessed batch,
taking turns batch by batch so a neighbour's load on a shared machine falls on all alike;
the fastest batch of each counts, and the median is reported beside it. Agreement is the
cosine with PyTorch fp32 per row, on the batch and on eight real photos.
"""

from __future__ import annotations

import argparse
import importlib
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from bench.common import markdown_table, write_results
from bench.make_images import make_photos
from clipseek.clip.checkpoint import LoadPolicy
from clipseek.clip.network import build_network, embed_pixels, runnable_precisions
from clipseek.clip.onnx_int8 import export_fp32
from clipseek.clip.probe import precision_copies, probe_pixels
from clipseek.photo.imaging import clip_pixels

INSTALL_HINT = ("ONNX Runtime is not installed: run `make install`, which installs it with "
                "ClipSeek's requirements.")

Encode = Callable[[np.ndarray], np.ndarray]


def import_onnxruntime() -> tuple[ModuleType, ModuleType]:
    """onnxruntime and its quantisation module, or exit with one sentence on how to install them."""
    try:
        return (importlib.import_module("onnxruntime"),
                importlib.import_module("onnxruntime.quantization"))
    except ImportError:
        sys.exit(INSTALL_HINT)


def torch_encoder(model: Any) -> Encode:
    """A function that runs a PyTorch network on a batch and returns L2-normalised rows."""
    return lambda pixels: embed_pixels(model, pixels, "cpu")


def ort_encoder(ort: ModuleType, path: Path, threads: int) -> Encode:
    """A function that runs an ONNX model on a batch and returns L2-normalised rows."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(pixels: np.ndarray) -> np.ndarray:
        features = np.asarray(session.run(["features"], {"pixels": pixels})[0], dtype=np.float32)
        normalised: np.ndarray = features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)
        return normalised

    return encode


def take_turns(encoders: dict[str, Encode], pixels: np.ndarray, rounds: int) -> dict[str, list[float]]:
    """Seconds per batch for each encoder, the encoders taking turns batch by batch."""
    for encode in encoders.values():
        encode(pixels)  # warm-up: first calls allocate and pick kernels
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(rounds):
        for name, encode in encoders.items():
            started = time.perf_counter()
            encode(pixels)
            seconds[name].append(time.perf_counter() - started)
    return seconds


def agreement(vectors: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Mean and minimum cosine between matching rows."""
    cosines = (vectors * reference).sum(axis=1)
    return {"mean": round(float(cosines.mean()), 6), "min": round(float(cosines.min()), 6)}


def photo_batch(batch_size: int) -> np.ndarray:
    """`batch_size` generated COCO-like photos, preprocessed as ClipSeek does."""
    with tempfile.TemporaryDirectory(prefix="clipseek-runtimes-", dir="/tmp") as folder:
        paths = make_photos(Path(folder), batch_size)
        pixels = []
        for path in paths:
            with Image.open(path) as img:
                pixels.append(clip_pixels(img.convert("RGB")))
    return np.stack(pixels)


def _markdown(results: dict[str, Any]) -> str:
    rows = results["runtimes"]
    fastest_torch = max(r["images_per_s"] for name, r in rows.items() if name.startswith("torch"))
    table = markdown_table(
        ["runtime", "images/s (fastest batch)", "images/s (median batch)", "vs fastest PyTorch",
         "agreement with torch fp32, batch (mean / min)", "real photos (mean / min)"],
        [[name, f"{r['images_per_s']:.1f}", f"{r['median_images_per_s']:.1f}",
          f"{r['images_per_s'] / fastest_torch:.2f}x",
          f"{r['agreement_batch']['mean']:.5f} / {r['agreement_batch']['min']:.5f}",
          f"{r['agreement_photos']['mean']:.5f} / {r['agreement_photos']['min']:.5f}"]
         for name, r in rows.items()])
    config = results["config"]
    return (f"Image tower of ViT-B/32 (random weights), batch {config['batch_size']} of generated "
            f"photos, {config['rounds']} rounds taking turns, {config['threads']} threads; "
            f"onnxruntime {config['onnxruntime']}:\n\n{table}\n\n"
            f"ONNX export {config['export_s']:.1f} s, dynamic int8 quantisation "
            f"{config['quantise_s']:.1f} s.")


def main() -> None:
    """Export, quantise, time every runtime, and write runtimes.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--tiny", action="store_true", help="a quick run that checks the script works")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    args = parser.parse_args()
    if args.tiny:
        args.batch_size, args.rounds = 4, 2
    ort, quantization = import_onnxruntime()
    import torch

    threads = torch.get_num_threads()
    model, _ = build_network(LoadPolicy(arch="ViT-B-32", random=True), "cpu")
    # ClipSeek's onnx-int8 is the "onnxruntime int8" rows below (plain, or reduce_range without VNNI).
    torch_precisions = [p for p in runnable_precisions("cpu") if p != "onnx-int8"]
    torch_models = {f"torch {p}": m for p, m in precision_copies(model, torch_precisions).items()}
    with tempfile.TemporaryDirectory(prefix="clipseek-onnx-", dir="/tmp") as folder:
        fp32_path, int8_path = Path(folder) / "image-fp32.onnx", Path(folder) / "image-int8.onnx"
        started = time.perf_counter()
        export_fp32(model, fp32_path)  # ClipSeek's own export, before its quantisation
        export_s = time.perf_counter() - started
        started = time.perf_counter()
        # MatMuls with a constant weight only (the attention's activation products stay fp32),
        # as PyTorch's dynamic quantisation of the Linear layers does.
        quantization.quantize_dynamic(str(fp32_path), str(int8_path),
                                      weight_type=quantization.QuantType.QInt8)
        quantise_s = time.perf_counter() - started
        # Without VNNI (AVX2, AVX-512 without VNNI) the u8 x s8 products are summed in pairs
        # into 16 bits, which saturates; 7-bit weights (reduce_range) leave room for the sum,
        # at some cost in rounding, and one scale per output channel wins some of that back.
        variants = {"int8, reduce_range": {"reduce_range": True},
                    "int8, reduce_range, per channel": {"reduce_range": True, "per_channel": True}}
        variant_paths = {name: Path(folder) / f"image-{n}.onnx" for n, name in enumerate(variants)}
        for name, options in variants.items():
            quantization.quantize_dynamic(str(fp32_path), str(variant_paths[name]),
                                          weight_type=quantization.QuantType.QInt8, **options)
        encoders: dict[str, Encode] = {name: torch_encoder(m) for name, m in torch_models.items()}
        encoders["onnxruntime fp32"] = ort_encoder(ort, fp32_path, threads)
        encoders["onnxruntime int8"] = ort_encoder(ort, int8_path, threads)
        for name, path in variant_paths.items():
            encoders[f"onnxruntime {name}"] = ort_encoder(ort, path, threads)

        pixels, photos = photo_batch(args.batch_size), probe_pixels()
        reference_batch = encoders["torch fp32"](pixels)
        reference_photos = encoders["torch fp32"](photos)
        seconds = take_turns(encoders, pixels, args.rounds)
        runtimes = {name: {"images_per_s": round(args.batch_size / min(times), 2),
                           "median_images_per_s": round(args.batch_size / statistics.median(times), 2),
                           "seconds_per_batch": [round(t, 4) for t in times],
                           "agreement_batch": agreement(encoders[name](pixels), reference_batch),
                           "agreement_photos": agreement(encoders[name](photos), reference_photos)}
                    for name, times in seconds.items() if not math.isnan(min(times))}
    results = {"config": {"batch_size": args.batch_size, "rounds": args.rounds, "threads": threads,
                          "onnxruntime": ort.__version__, "export_s": round(export_s, 1),
                          "quantise_s": round(quantise_s, 1)},
               "runtimes": runtimes}
    md = _markdown(results)
    write_results("runtimes-tiny" if args.tiny else "runtimes", results, md, args.out)
    print(md)


if __name__ == "__main__":
    main()
