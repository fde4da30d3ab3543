"""Speed per catalogued architecture: image embedding rate and one query's encode time, random weights.

    python -m bench.models --out bench/results/epyc-avx512-bf16   # every architecture buildable here
    python -m bench.models --tiny           # a few passes: checks the script runs

Speed does not depend on weight values, so each network is built with random weights
(fp32, on the CPU) next to the published COCO-5k Recall@1 of its trained weights. The
image rate is the network alone on a preprocessed batch; decoding and preprocessing a
photo add the same cost for every architecture of the same input size.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import markdown_table, write_results
from clipseek.model_catalog import MODELS
from clipseek.model_loading import embed_pixels, embed_tokens

QUERIES = [f"a photo of {n} dogs running on a beach at sunset" for n in range(64)]


def measure(arch: str, *, batch: int, rounds: int, queries: int) -> dict[str, Any]:
    """Images/s (fastest of `rounds` batches) and median ms per single query of one architecture."""
    import open_clip
    import torch

    logging.disable(logging.WARNING)  # open_clip warns that no weights were loaded: the point here
    torch.manual_seed(0)
    model = open_clip.create_model(arch, pretrained=None).eval()
    tokenizer = open_clip.get_tokenizer(arch)
    size = model.visual.image_size
    side = size[0] if isinstance(size, tuple | list) else int(size)
    pixels = np.random.default_rng(0).standard_normal((batch, 3, side, side)).astype(np.float32)
    embed_pixels(model, pixels, "cpu")  # warm-up: first calls allocate and pick kernels
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        embed_pixels(model, pixels, "cpu")
        best = min(best, time.perf_counter() - started)
    embed_tokens(model, tokenizer([QUERIES[0]]))
    times = []
    for query in QUERIES[:queries]:
        started = time.perf_counter()
        embed_tokens(model, tokenizer([query]))
        times.append(1000 * (time.perf_counter() - started))
    return {"images_per_s": round(batch / best, 2), "query_ms_p50": round(statistics.median(times), 2),
            "image_size": side, "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1)}


def main() -> None:
    """Measure every catalogued architecture and write bench/results/<cpu>/models.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="Few passes: check the script runs.")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    args = parser.parse_args()
    rounds, queries = (1, 3) if args.tiny else (3, 20)
    rows: list[list[object]] = []
    results: dict[str, dict[str, Any]] = {}
    for entry in MODELS.values():
        r1 = "-" if entry.coco_t2i_r1 is None else entry.coco_t2i_r1
        try:
            found = measure(entry.arch, batch=args.batch, rounds=rounds, queries=queries)
        except (RuntimeError, ImportError) as exc:
            results[entry.name] = {"skipped": str(exc)}
            rows.append([entry.name, entry.dim, r1, "-", "-", f"not built here: {exc}"])
            continue
        results[entry.name] = {**found, "dim": entry.dim, "coco_t2i_r1": entry.coco_t2i_r1}
        rows.append([entry.name, entry.dim, r1, found["images_per_s"], found["query_ms_p50"],
                     f"{found['parameters_m']} M parameters, {found['image_size']} px"])
    table = markdown_table(["model", "dim", "COCO-5k t→i R@1 (published)", "images/s (network, fp32)",
                            "query ms (p50)", "notes"], rows)
    write_results("models-tiny" if args.tiny else "models",
                  {"batch": args.batch, "rounds": rounds, "queries": queries, "results": results}, table,
                  out=args.out)
    print(table)


if __name__ == "__main__":
    main()
