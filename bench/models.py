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
from clipseek.clip.catalog import MODELS
from clipseek.clip.network import embed_pixels, embed_tokens

QUERIES = [f"a photo of {n} dogs running on a beach at sunset" for n in range(64)]


def build(arch: str) -> tuple[Any, Any, np.ndarray]:
    """The fp32 network of `arch` with random weights, its tokenizer, and a batch of its input size."""
    import open_clip
    import torch

    logging.disable(logging.WARNING)  # open_clip warns that no weights were loaded: the point here
    torch.manual_seed(0)
    model = open_clip.create_model(arch, pretrained=None).eval()
    tokenizer = open_clip.get_tokenizer(arch)
    size = model.visual.image_size
    side = size[0] if isinstance(size, tuple | list) else int(size)
    return model, tokenizer, np.random.default_rng(0).standard_normal((1, 3, side, side)).astype(np.float32)


def measure(networks: dict[str, tuple[Any, Any, np.ndarray]], *, batch: int, rounds: int,
            queries: int) -> dict[str, dict[str, Any]]:
    """Images/s (fastest batch) and median ms per single query, the architectures taking turns.

    Taking turns exposes every architecture to the same background load on a shared machine.
    """
    pixels = {name: np.repeat(one, batch, axis=0) for name, (_, _, one) in networks.items()}
    for name, (model, tokenizer, _) in networks.items():
        embed_pixels(model, pixels[name], "cpu")  # warm-up: first calls allocate and pick kernels
        embed_tokens(model, tokenizer([QUERIES[0]]))
    best = dict.fromkeys(networks, float("inf"))
    times: dict[str, list[float]] = {name: [] for name in networks}
    for turn in range(max(rounds, queries)):
        for name, (model, tokenizer, _) in networks.items():
            if turn < rounds:
                started = time.perf_counter()
                embed_pixels(model, pixels[name], "cpu")
                best[name] = min(best[name], time.perf_counter() - started)
            if turn < queries:
                started = time.perf_counter()
                embed_tokens(model, tokenizer([QUERIES[turn]]))
                times[name].append(1000 * (time.perf_counter() - started))
    return {name: {"images_per_s": round(batch / best[name], 2),
                   "query_ms_p50": round(statistics.median(times[name]), 2),
                   "image_size": networks[name][2].shape[-1],
                   "parameters_m": round(sum(p.numel() for p in networks[name][0].parameters()) / 1e6, 1)}
            for name in networks}


def main() -> None:
    """Measure every catalogued architecture and write bench/results/<cpu>/models.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="Few passes: check the script runs.")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="image batches per architecture")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    args = parser.parse_args()
    rounds, queries = (1, 3) if args.tiny else (args.rounds, 20)
    rows: list[list[object]] = []
    results: dict[str, dict[str, Any]] = {}
    networks, skipped = {}, {}
    for entry in MODELS.values():
        try:
            networks[entry.name] = build(entry.arch)
        except (RuntimeError, ImportError) as exc:
            skipped[entry.name] = str(exc)
    found = measure(networks, batch=args.batch, rounds=rounds, queries=queries)
    for entry in MODELS.values():
        r1 = "-" if entry.coco_t2i_r1 is None else entry.coco_t2i_r1
        if entry.name in skipped:
            results[entry.name] = {"skipped": skipped[entry.name]}
            rows.append([entry.name, entry.dim, r1, "-", "-", f"not built here: {skipped[entry.name]}"])
            continue
        row = found[entry.name]
        results[entry.name] = {**row, "dim": entry.dim, "coco_t2i_r1": entry.coco_t2i_r1}
        rows.append([entry.name, entry.dim, r1, row["images_per_s"], row["query_ms_p50"],
                     f"{row['parameters_m']} M parameters, {row['image_size']} px"])
    table = markdown_table(["model", "dim", "COCO-5k t→i R@1 (published)", "images/s (network, fp32)",
                            "query ms (p50)", "notes"], rows)
    write_results("models-tiny" if args.tiny else "models",
                  {"batch": args.batch, "rounds": rounds, "queries": queries, "results": results}, table,
                  out=args.out)
    print(table)


if __name__ == "__main__":
    main()
