"""Indexing throughput, end to end, against the model-alone ceiling and the original design.

    python -m bench.indexing --images 512            # CPU, the configured precision
    python -m bench.indexing --device cuda --precision fp16
    python -m bench.indexing --tiny                  # a few images: checks the script runs

All four approaches run in one process on the same generated photos, so their ratios are
comparable even on a noisy machine. The model has random weights (speed does not depend
on weight values).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

from bench.common import markdown_table, scratch_home, write_results
from bench.make_images import make_photos
from clipseek.catalog import Candidate
from clipseek.context import Context
from clipseek.encoder import ClipEncoder
from clipseek.ingest import ingest_inline, ingest_queued
from clipseek.queueing import wait_until_indexed
from clipseek.settings import RANDOM_MODEL, Settings


def model_ceiling(encoder: ClipEncoder, batch_size: int, batches: int) -> float:
    """Images/s of the model alone on already-preprocessed batches."""
    pixels = np.random.default_rng(0).standard_normal((batch_size, 3, 224, 224)).astype(np.float32)
    encoder.encode_pixels(pixels)  # warm-up: first calls allocate and pick kernels
    started = time.perf_counter()
    for _ in range(batches):
        encoder.encode_pixels(pixels)
    return batch_size * batches / (time.perf_counter() - started)


def original_design(paths: list[Path], device: str) -> float:
    """Images/s of the original script: one image at a time through fp32 CLIP from a thread pool."""
    import open_clip
    import torch
    from PIL import Image

    reference = ClipEncoder(RANDOM_MODEL, device=device, precision="fp32", allow_download=False)
    reference.load()
    model = reference._model
    preprocess = open_clip.image_transform(224, is_train=False)

    def embed(path: Path) -> np.ndarray:
        with Image.open(path) as img:
            batch = preprocess(img.convert("RGB")).unsqueeze(0).to(device)
        with torch.no_grad():
            features = model.encode_image(batch)
        features = features / features.norm(dim=-1, keepdim=True)
        return np.asarray(features.cpu().numpy())

    embed(paths[0])
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        embeddings = np.vstack(list(pool.map(embed, paths)))
    elapsed = time.perf_counter() - started
    assert embeddings.shape == (len(paths), 512)
    return len(paths) / elapsed


def _reset(ctx: Context) -> None:
    with ctx.db.engine.begin() as conn:
        conn.execute(text("TRUNCATE images RESTART IDENTITY CASCADE"))


def inline_path(ctx: Context, candidates: list[Candidate]) -> float:
    """Images/s of `clipseek ingest --inline`: register (hash, probe, insert) + decode + encode + write."""
    _reset(ctx)
    ctx.encoder.load()
    started = time.perf_counter()
    summary = ingest_inline(ctx.db, ctx.encoder, candidates, settings=ctx.settings)
    elapsed = time.perf_counter() - started
    assert len(summary.indexed.indexed) == len(candidates), summary.lines()
    return len(candidates) / elapsed


def worker_path(ctx: Context, candidates: list[Candidate], warmup: Candidate, env: dict[str, str]) -> float:
    """Images/s through the queue and one warm `clipseek worker` process, registration included."""
    _reset(ctx)
    worker = subprocess.Popen([sys.executable, "-m", "clipseek", "worker", "--no-beat",
                               "--loglevel", "WARNING"], env=env)
    try:
        # Warm the worker (model load) on one image that is not part of the measurement.
        first = ingest_queued(ctx.db, [warmup], settings=ctx.settings, enqueue=ctx.enqueue)
        assert wait_until_indexed(ctx.db, first.registered.new_ids, model=ctx.settings.model,
                                  timeout_s=600, poll_s=0.05) == 0
        started = time.perf_counter()
        summary = ingest_queued(ctx.db, candidates, settings=ctx.settings, enqueue=ctx.enqueue)
        left = wait_until_indexed(ctx.db, summary.registered.new_ids, model=ctx.settings.model,
                                  timeout_s=3600, poll_s=0.05)
        elapsed = time.perf_counter() - started
        assert left == 0
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    return len(candidates) / elapsed


def main() -> None:
    """Run the four measurements and write bench/results/indexing.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--baseline-images", type=int, default=128,
                        help="images for the (slow) original-design baseline")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tiny", action="store_true", help="a quick run that checks the script works")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    args = parser.parse_args()
    if args.tiny:
        args.images, args.baseline_images, args.batch_size = 12, 4, 4

    with scratch_home() as home:
        env = {**os.environ, "CLIPSEEK_HOME": str(home), "CLIPSEEK_MODEL": RANDOM_MODEL,
               "CLIPSEEK_BATCH_SIZE": str(args.batch_size), "CLIPSEEK_PRECISION": args.precision,
               "CLIPSEEK_DEVICE": args.device, "CLIPSEEK_OFFLINE": "1"}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        settings = Settings.from_env(env)
        paths = make_photos(home / "photos", args.images + 1)
        candidates = [Candidate(path=p, source="folder") for p in paths[1:]]
        ctx = Context(settings)
        try:
            ctx.encoder.load()
            results: dict[str, Any] = {
                "config": {"images": args.images, "batch_size": args.batch_size,
                           "device": ctx.encoder.device, "precision": ctx.encoder.precision,
                           "baseline_images": args.baseline_images},
            }
            print("model alone, by batch size…", flush=True)
            sweep = [1, 4] if args.tiny else [1, 8, 16, 32, 64]
            by_batch = {bs: model_ceiling(ctx.encoder, bs, max(2, 128 // bs)) for bs in sweep}
            results["model_alone_by_batch_size"] = {bs: round(r, 2) for bs, r in by_batch.items()}
            ceiling = model_ceiling(ctx.encoder, args.batch_size, max(2, args.images // args.batch_size // 2))
            print("original design…", flush=True)
            baseline = original_design(paths[1:args.baseline_images + 1], ctx.encoder.device)
            print("in-process path…", flush=True)
            inline = inline_path(ctx, candidates)
            print("worker path…", flush=True)
            worker = worker_path(ctx, candidates, Candidate(path=paths[0], source="folder"), env)
        finally:
            ctx.close()
            from clipseek.embedded_db import EmbeddedPostgres
            from clipseek.embedded_redis import EmbeddedRedis

            EmbeddedRedis(settings.redis_folder).stop()
            EmbeddedPostgres(settings.pgdata).stop()

    rates = {"model alone (ceiling)": ceiling, "original design (1 image/call, fp32, threads)": baseline,
             "ClipSeek in-process (--inline)": inline, "ClipSeek worker": worker}
    results["images_per_second"] = {k: round(v, 2) for k, v in rates.items()}
    rows = [[name, f"{rate:.1f}", f"{rate / baseline:.2f}x", f"{100 * rate / ceiling:.0f}%"]
            for name, rate in rates.items()]
    table = markdown_table(["approach", "images/s", "vs original", "of ceiling"], rows)
    config = results["config"]
    batches = markdown_table(["batch size", *results["model_alone_by_batch_size"]],
                             [["model alone, images/s", *results["model_alone_by_batch_size"].values()]])
    md = (f"Indexing throughput, {config['images']} COCO-like JPEGs, batch {config['batch_size']}, "
          f"{config['device']} {config['precision']}:\n\n{table}\n\nThe model alone by batch size:\n\n"
          f"{batches}")
    write_results("indexing-tiny" if args.tiny else f"indexing-{config['device']}", results, md, args.out)
    print(md)


if __name__ == "__main__":
    main()
