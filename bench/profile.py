"""Where the time goes in the two hot paths, measured with cProfile (not guessed).

    python -m bench.profile            # 128 images indexed in process, 50 text queries
    python -m bench.profile --tiny

Writes bench/results/profile.md: for each path, the share of wall time spent in the
functions that matter (the model's forward pass, decoding, database writes, ...).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path

from bench.common import markdown_table, scratch_home, write_results
from bench.make_images import make_photos
from clipseek.catalog import Candidate
from clipseek.context import Context
from clipseek.ingest import ingest_inline
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
    ("text encoder forward pass", "encoder.py:_encode_tokens"),
    ("tokenizer", "tokenizer.py:__call__"),
]


def _shares(stats: pstats.Stats, parts: list[tuple[str, str]], wall: float) -> list[list[str]]:
    rows = []
    table = stats.stats  # type: ignore[attr-defined]
    for label, needle in parts:
        cumulative = max((v[3] for k, v in table.items() if needle in f"{k[0]}:{k[2]}"), default=0.0)
        rows.append([label, f"{cumulative:.2f}", f"{100 * cumulative / wall:.0f}%"])
    return rows


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
                                      "CLIPSEEK_OFFLINE": "1"})
        candidates = [Candidate(path=p, source="folder") for p in make_photos(home / "photos", args.images)]
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
        finally:
            ctx.close()
            from clipseek.embedded_db import EmbeddedPostgres

            EmbeddedPostgres(settings.pgdata).stop()
    headers = ["part", "seconds (cumulative)", "share of wall time"]
    md = (f"Indexing {args.images} photos in process ({index_wall:.1f} s wall; registration ran "
          f"beside the model in its own thread for {summary.seconds_registering:.1f} s):\n\n"
          f"{markdown_table(headers, index_rows)}\n\n"
          f"Encoding {args.queries} distinct text queries ({1000 * query_wall / args.queries:.1f} ms "
          f"each):\n\n{markdown_table(headers, query_rows)}")
    write_results("profile-tiny" if args.tiny else "profile",
                  {"indexing": index_rows, "queries": query_rows, "index_wall_s": index_wall,
                   "query_wall_s": query_wall,
                   "registering_s": summary.seconds_registering}, md, args.out)
    print(md)


if __name__ == "__main__":
    main()
