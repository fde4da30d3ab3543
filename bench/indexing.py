"""Indexing throughput per precision, end to end, against the model-alone ceiling and the original design.

    python -m bench.indexing --images 512                 # CPU: fp32, bf16, int8, onnx-int8 where runnable
    python -m bench.indexing --precisions fp32,int8       # some of them
    python -m bench.indexing --device cuda --precisions fp32,fp16
    python -m bench.indexing --tiny                       # a few images: checks the script runs

Every precision, the original design and the worker (with what `auto` chose) run in one
process on the same generated photos, so their ratios are comparable even on a noisy
machine. The model has random weights (speed does not depend on weight values).
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

from bench.common import markdown_table, measured_precision, scratch_home, write_results
from bench.make_images import make_photos
from clipseek.clip.encoder import ClipEncoder
from clipseek.clip.network import pick_device, runnable_precisions
from clipseek.clip.precision import accurate_enough, read_cpu
from clipseek.context import Context
from clipseek.indexing.queueing import wait_until_indexed
from clipseek.library.ingest import ingest_inline, ingest_queued
from clipseek.library.register import Candidate
from clipseek.settings import RANDOM_MODEL, Settings

# Distinct queries (the encoder remembers ones it has seen), of a user's length.
QUERIES = [f"a photo of {n} {thing} on a {place}" for n, (thing, place) in enumerate(
    [("dogs", "beach"), ("red cars", "street"), ("cups", "table"), ("birds", "wire"),
     ("bicycles", "bridge"), ("boats", "lake"), ("horses", "field"), ("trains", "platform")] * 3)]


def model_alone(encoders: dict[str, ClipEncoder], batch_size: int,
                rounds: int) -> dict[str, dict[str, float]]:
    """Images/s of each precision's model alone on preprocessed batches, taking turns batch by batch.

    Taking turns exposes every precision to the same background load on a shared machine.
    Each one's fastest batch and its median batch are kept: on a shared machine the fastest
    batch is what the model can do, the median what it does while others run, as the
    end-to-end rates beside it do (on an AMX Xeon bf16's median batch was half its fastest).
    """
    pixels = np.random.default_rng(0).standard_normal((batch_size, 3, 224, 224)).astype(np.float32)
    for encoder in encoders.values():
        encoder.encode_pixels(pixels)  # warm-up: first calls allocate and pick kernels
    seconds: dict[str, list[float]] = {precision: [] for precision in encoders}
    for _ in range(rounds):
        for precision, encoder in encoders.items():
            started = time.perf_counter()
            encoder.encode_pixels(pixels)
            seconds[precision].append(time.perf_counter() - started)
    return {precision: {"fastest": batch_size / min(times), "median": batch_size / float(np.median(times))}
            for precision, times in seconds.items()}


def query_ms(encoders: dict[str, ClipEncoder]) -> dict[str, float]:
    """Median milliseconds to encode one new text query (what a fresh search pays), taking turns."""
    times: dict[str, list[float]] = {precision: [] for precision in encoders}
    for encoder in encoders.values():
        encoder.encode_texts(["warm-up query"])
    for query in QUERIES:
        for precision, encoder in encoders.items():
            started = time.perf_counter()
            encoder.encode_texts([query])
            times[precision].append(1000 * (time.perf_counter() - started))
    return {precision: float(np.median(values)) for precision, values in times.items()}


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


def inline_rates(settings: Settings, precisions: list[str], candidates: list[Candidate],
                 rounds: int = 4) -> dict[str, float]:
    """Images/s of the `ingest --inline` path in each precision, taking turns a slice at a time.

    Each round indexes a slice of the photos in every precision in turn (from an empty table),
    so a burst of background load on a shared machine falls on all precisions alike.
    """
    contexts = {p: Context(settings.with_changes(precision=p)) for p in precisions}
    seconds = dict.fromkeys(precisions, 0.0)
    size = -(-len(candidates) // rounds)
    try:
        for start in range(0, len(candidates), size):
            chunk = candidates[start:start + size]
            for precision, ctx in contexts.items():
                seconds[precision] += len(chunk) / inline_path(ctx, chunk)
    finally:
        for ctx in contexts.values():
            ctx.close()
    return {precision: len(candidates) / total for precision, total in seconds.items()}


def _markdown(results: dict[str, Any]) -> str:
    config, rows, auto = results["config"], results["precisions"], results["auto"]
    baseline = results["original_design"]
    accurate = [r for p, r in rows.items() if p in auto["accurate"]]
    fastest = max(r["model_alone"] for r in accurate)
    # Results from before the median was kept have the fastest batch only.
    median = max(r.get("model_alone_median", r["model_alone"]) for r in accurate)

    def share(rate: float) -> str:
        return f"{100 * rate / fastest:.0f}% / {100 * rate / median:.0f}%"

    table = markdown_table(
        ["precision", "model alone, images/s (fastest / median batch)", "in-process (--inline), images/s",
         "vs original", "of fastest accurate model alone (fastest / median batch)", "new text query, ms",
         "agreement with fp32 (mean / min)"],
        [[p, f"{r['model_alone']:.1f} / {r.get('model_alone_median', r['model_alone']):.1f}",
          f"{r['inline']:.1f}", f"{r['inline'] / baseline:.2f}x", share(r["inline"]), f"{r['query_ms']:.1f}",
          auto["agreement"].get(p, "-")]
         for p, r in rows.items()]
        + [["original design (1 image/call, fp32, threads)", "-", f"{baseline:.1f}", "1.00x", "-", "-", "-"],
           [f"ClipSeek worker (auto: {auto['precision']})", "-", f"{results['worker']:.1f}",
            f"{results['worker'] / baseline:.2f}x", share(results["worker"]), "-", "-"]])
    return (f"Indexing throughput, {config['images']} COCO-like JPEGs, batch {config['batch_size']}, "
            f"{config['device']}, CPU flags {' '.join(results['cpu_flags']) or 'none'}:\n\n{table}\n\n"
            f"`auto` chose {auto['precision']}: {auto['reason']}")


def main() -> None:
    """Run the measurements and write bench/results/indexing-<device>.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--baseline-images", type=int, default=128,
                        help="images for the (slow) original-design baseline")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precisions", default="",
                        help="comma-separated; default every precision this machine can run")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tiny", action="store_true", help="a quick run that checks the script works")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    args = parser.parse_args()
    if args.tiny:
        args.images, args.baseline_images, args.batch_size = 12, 4, 4
    device = pick_device(args.device)
    runnable = runnable_precisions(device)
    precisions = [p for p in args.precisions.split(",") if p] or list(runnable)

    with scratch_home() as home:
        env = {**os.environ, "CLIPSEEK_HOME": str(home), "CLIPSEEK_MODEL": RANDOM_MODEL,
               "CLIPSEEK_BATCH_SIZE": str(args.batch_size), "CLIPSEEK_PRECISION": "auto",
               "CLIPSEEK_DEVICE": device, "CLIPSEEK_OFFLINE": "1"}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        settings = Settings.from_env(env)
        paths = make_photos(home / "photos", args.images + 1)
        candidates = [Candidate(path=p, source="folder") for p in paths[1:]]
        ctx = Context(settings)
        try:
            # `auto` first, in a fresh home: it measures and remembers, and the worker reuses it.
            measured_precision(settings)
            choice = ctx.encoder.precision_choice
            assert choice is not None
            auto = {"precision": ctx.encoder.precision, "reason": choice.reason,
                    "measurements": [vars(m) for m in choice.measurements],
                    "accurate": [m.precision for m in choice.measurements
                                 if m.precision == "fp32" or accurate_enough(m)],
                    "agreement": {m.precision: f"{m.mean_cosine:.5f} / {m.min_cosine:.5f}"
                                  for m in choice.measurements}}
            results: dict[str, Any] = {
                "config": {"images": args.images, "batch_size": args.batch_size, "device": device,
                           "baseline_images": args.baseline_images},
                "cpu_flags": list(read_cpu().flags), "auto": auto,
            }
            print("model alone and text queries, the precisions taking turns…", flush=True)
            encoders = {p: Context(settings.with_changes(precision=p)).encoder for p in precisions}
            alone = model_alone(encoders, args.batch_size, max(2, args.images // args.batch_size))
            queries = query_ms(encoders)
            inline = inline_rates(settings, precisions, candidates)
            results["precisions"] = {p: {"model_alone": round(alone[p]["fastest"], 2),
                                         "model_alone_median": round(alone[p]["median"], 2),
                                         "query_ms": round(queries[p], 2), "inline": round(inline[p], 2)}
                                     for p in precisions}
            print("original design…", flush=True)
            results["original_design"] = round(
                original_design(paths[1:args.baseline_images + 1], device), 2)
            print("worker path…", flush=True)
            results["worker"] = round(
                worker_path(ctx, candidates, Candidate(path=paths[0], source="folder"), env), 2)
        finally:
            ctx.close()
            from clipseek.indexing.embedded_redis import EmbeddedRedis
            from clipseek.store.embedded_db import EmbeddedPostgres

            EmbeddedRedis(settings.redis_folder).stop()
            EmbeddedPostgres(settings.pgdata).stop()

    md = _markdown(results)
    write_results("indexing-tiny" if args.tiny else f"indexing-{device}", results, md, args.out)
    print(md)


if __name__ == "__main__":
    main()
