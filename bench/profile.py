"""Where the time goes in the two hot paths, measured with cProfile (not guessed).

    python -m bench.profile            # 128 images indexed in process, 50 text queries
    python -m bench.profile --tiny

Writes bench/results/profile.md: for each path, the share of wall time spent in the
functions that matter (the model's forward pass, decoding, database writes, ...).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import markdown_table, measured_precision, scratch_home, shared_model_cache, write_results
from bench.make_images import make_photos
from clipseek.clip.encoder import ClipEncoder
from clipseek.context import Context
from clipseek.indexing.encoding import decode_for_clip
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate, inspect_file
from clipseek.settings import RANDOM_MODEL, Settings

# (label, substring of "file:function" as pstats names it)
INDEXING_PARTS = [
    ("image encoder forward pass", "model.py:encode_image"),
    # Decoding, writing and registration run in threads of their own, which cProfile does
    # not see: what costs the main thread is the time it waits for them.
    ("waiting for decoded batches and writes", "_base.py:result"),
    ("waiting for registered chunks", "queue.py:get"),
]
QUERY_PARTS = [
    ("text encoder forward pass", "clip/network.py:embed_tokens"),
    ("tokenizer", "tokenizer.py:__call__"),
]


def _shares(stats: pstats.Stats, parts: list[tuple[str, str]], wall: float) -> list[list[str]]:
    rows = []
    table = stats.stats  # type: ignore[attr-defined]
    for label, needle in parts:
        cumulative = max((v[3] for k, v in table.items() if needle in f"{k[0]}:{k[2]}"), default=0.0)
        rows.append([label, f"{cumulative:.2f}", f"{100 * cumulative / wall:.0f}%"])
    return rows


def cpu_per_image(encoder: ClipEncoder, candidates: list[Candidate], max_pixels: int,
                  batch_size: int) -> dict[str, Any]:
    """CPU milliseconds per image of each stage, run alone, and what they allow on this many cores.

    Registration (hash, stat, probe) and decoding run in one thread, as each does per image
    in ClipSeek; the model runs a whole batch with all its threads, and its CPU time counts
    every thread (spinning ones included, since they take the core from the decoders too).
    PostgreSQL's own CPU for the writes is not in these numbers.
    """
    def thread_ms(fn: Any, items: list[Any]) -> float:
        started = time.thread_time()
        for item in items:
            fn(item)
        return 1000 * (time.thread_time() - started) / len(items)

    register_ms = thread_ms(lambda c: inspect_file(c, max_pixels), candidates)
    decoded = [decode_for_clip(0, str(c.path), max_pixels)[1] for c in candidates[:batch_size]]
    decode_ms = thread_ms(lambda c: decode_for_clip(0, str(c.path), max_pixels), candidates)
    pixels = np.stack([d for d in decoded if d is not None])
    encoder.encode_pixels(pixels)  # warm-up
    cpu, wall = time.process_time(), time.perf_counter()
    rounds = 3
    for _ in range(rounds):
        encoder.encode_pixels(pixels)
    model_ms = 1000 * (time.process_time() - cpu) / (rounds * len(pixels))
    model_wall_ms = 1000 * (time.perf_counter() - wall) / (rounds * len(pixels))
    cores = os.cpu_count() or 1
    total = register_ms + decode_ms + model_ms
    return {"register_cpu_ms": round(register_ms, 2), "decode_cpu_ms": round(decode_ms, 2),
            "model_cpu_ms": round(model_ms, 2), "model_wall_ms": round(model_wall_ms, 2),
            "cores": cores, "batch": len(pixels), "model_alone_images_per_s": round(1000 / model_wall_ms, 1),
            "ceiling_images_per_s": round(1000 * cores / total, 1),
            "ceiling_of_model_alone": round(model_wall_ms * cores / total, 3)}


def main() -> None:
    """Profile indexing and text-query encoding; write bench/results/profile.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.tiny:
        args.images, args.queries = 8, 3
    with scratch_home() as home:
        settings = Settings.from_env({"CLIPSEEK_HOME": str(home), "CLIPSEEK_MODEL": RANDOM_MODEL,
                                      "CLIPSEEK_OFFLINE": "1", **shared_model_cache()})
        candidates = [Candidate(path=p, source="folder") for p in make_photos(home / "photos", args.images)]
        measured_precision(settings, measure=not args.tiny)  # what users get, not fp32 for now
        ctx = Context(settings)
        try:
            ctx.encoder.load()
            ctx.db.ping()
            profiler = cProfile.Profile()
            started = time.perf_counter()
            summary = profiler.runcall(ingest_inline, ctx.db, ctx.encoder, candidates,
                                       settings=settings)
            index_wall = time.perf_counter() - started
            index_rows = _shares(pstats.Stats(profiler), INDEXING_PARTS, index_wall)

            profiler = cProfile.Profile()
            started = time.perf_counter()
            for n in range(args.queries):
                profiler.runcall(ctx.encoder.encode_texts, [f"a photo of a dog number {n} on a beach"])
            query_wall = time.perf_counter() - started
            query_rows = _shares(pstats.Stats(profiler), QUERY_PARTS, query_wall)
            costs = cpu_per_image(ctx.encoder, candidates, settings.max_image_pixels, settings.batch_size)
            precision = ctx.encoder.precision
        finally:
            ctx.close()
            from clipseek.store.embedded_db import EmbeddedPostgres

            EmbeddedPostgres(settings.pgdata).stop()
    headers = ["part", "seconds (cumulative)", "share of wall time"]
    md = (f"Indexing {args.images} photos in process ({index_wall:.1f} s wall; registration ran "
          f"beside the model in its own thread for {summary.seconds_registering:.1f} s):\n\n"
          f"{markdown_table(headers, index_rows)}\n\n"
          f"Encoding {args.queries} distinct text queries ({1000 * query_wall / args.queries:.1f} ms "
          f"each):\n\n{markdown_table(headers, query_rows)}\n\n"
          f"CPU per image of each stage run alone ({precision}), and the most that "
          f"{costs['cores']} cores allow if every stage overlapped perfectly (PostgreSQL's CPU "
          f"not counted):\n\n"
          + markdown_table(["stage", "CPU ms per image"],
                           [["registration (hash, stat, probe; one thread)", costs["register_cpu_ms"]],
                            ["decoding and preprocessing (one thread)", costs["decode_cpu_ms"]],
                            [f"model, batch {costs['batch']}, all threads "
                             f"({costs['model_wall_ms']} ms wall per image)", costs["model_cpu_ms"]]])
          + f"\n\nCeiling: {costs['ceiling_images_per_s']} images/s, "
            f"{100 * costs['ceiling_of_model_alone']:.0f}% of the model alone "
            f"({costs['model_alone_images_per_s']} images/s here); measured in process: "
            f"{args.images / index_wall:.1f} images/s.")
    write_results("profile-tiny" if args.tiny else "profile",
                  {"indexing": index_rows, "queries": query_rows, "index_wall_s": index_wall,
                   "query_wall_s": query_wall, "cpu_per_image": costs,
                   "precision": precision,
                   "registering_s": summary.seconds_registering}, md, args.out)
    print(md)


if __name__ == "__main__":
    main()
