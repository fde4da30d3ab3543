"""Filtered vector search at COCO's size: latency and recall@10 for filters of every selectivity.

    python -m bench.filtered                # 118,000 embeddings
    python -m bench.filtered --tiny         # a few thousand: checks the script runs

The collection is bench/search.py's synthetic CLIP-like vectors, loaded the same way; each
image is put in one of 1,000 collections, and the filters keep 50%, 10%, 1% and 0.1% of the
images (500, 100, 10 and 1 collections). For each filter it measures the whole ranking call
(clipseek.search.run_search, semantic mode, 10 results, the candidate count included):
- the path ClipSeek chooses (HNSW walk with iterative scans, or an exact scan of the kept
  rows when they are fewer than clipseek.search.run.EXACT_BELOW or at most EXACT_SHARE of
  the images);
- both paths forced, so the choice can be checked;
and recall@10 of each against an exact scan of the filtered rows, and each p50 against the
numpy floor (np.dot over every embedding, as bench/search.py's), timed in turn with the
searches so that a neighbour's load weighs on both alike.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select, text

from bench.common import markdown_table, measured_precision, percentiles, scratch_home, write_results
from bench.search import build_index, clustered, load, recall
from clipseek.context import Context
from clipseek.search import run as search
from clipseek.search import sql as search_sql
from clipseek.search.query import Filters, Mode, SearchRequest
from clipseek.settings import RANDOM_MODEL, Settings

SELECTIVITIES = (0.5, 0.1, 0.01, 0.001)
BUCKETS = 1000


def exact_truth(ctx: Context, filters: Filters, probes: np.ndarray) -> list[list[int]]:
    """The ten nearest kept images for each probe, by an exact scan of the kept rows."""
    out = []
    with ctx.db.session() as s:
        for q in probes:
            ranking = search_sql.semantic_ranking(q, filters, model=ctx.settings.model, depth=10,
                                                  exact=True)
            out.append(list(s.scalars(select(ranking.c.image_id).order_by(ranking.c.position))))
    return out


def measure(ctx: Context, filters: Filters, probes: np.ndarray, *, forced: str | None,
            floor: Callable[[np.ndarray], object]) -> tuple[dict[str, Any], list[list[int]]]:
    """Latency percentiles, the path taken and the found ids of run_search for each probe,
    with the numpy floor's percentiles timed in turn (`forced`: "hnsw", "exact" or None)."""
    saved = search.EXACT_BELOW, search.EXACT_SHARE
    if forced == "hnsw":
        search.EXACT_BELOW, search.EXACT_SHARE = 0, 0.0
    elif forced == "exact":
        search.EXACT_BELOW = 10**12
    request = SearchRequest(query="bench", filters=filters, mode=Mode.SEMANTIC, show_all=True,
                            per_page=10)
    times, floors, found, scans = [], [], [], set()
    try:
        for q in probes:
            with ctx.db.session() as s:
                started = time.perf_counter()
                page = search.run_search(s, ctx.encoder, request, vector=q,
                                         ef_search=ctx.settings.ef_search)
                times.append((time.perf_counter() - started) * 1000)
            found.append([h.image_id for h in page.hits])
            scans.add(page.scan)
            started = time.perf_counter()
            floor(q)
            floors.append((time.perf_counter() - started) * 1000)
    finally:
        search.EXACT_BELOW, search.EXACT_SHARE = saved
    ms, floor_ms = percentiles(times), percentiles(floors)
    return {**ms, "floor_p50": floor_ms["p50"], "to_floor": round(ms["p50"] / floor_ms["p50"], 2),
            "path": "/".join(sorted(str(scan) for scan in scans))}, found


def run(ctx: Context, n: int, queries: int) -> dict[str, Any]:
    """Load, index, and measure every selectivity at one size."""
    clusters = max(10, min(4000, n // 50))
    data = clustered(n, clusters=clusters, seed=1, spread=0.9)
    probes = clustered(queries, clusters=clusters, seed=1, spread=2.4)
    result: dict[str, Any] = {"size": n, "exact_below": search.EXACT_BELOW,
                              "exact_share": search.EXACT_SHARE, "ef_search": ctx.settings.ef_search,
                              "selectivity": {}}
    print(f"[{n}] loading…", flush=True)
    result.update(load(ctx.db.engine, data, ctx.settings.model))
    with ctx.db.engine.begin() as conn:
        # A pseudo-random bucket per image, independent of its cluster.
        conn.execute(text(f"UPDATE images SET collection = 'c' || ((id * 7919) % {BUCKETS})"))
    with ctx.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE images"))
    print(f"[{n}] building HNSW…", flush=True)
    result["hnsw_build_s"] = round(build_index(ctx.db.engine, ctx.model), 1)
    for share in SELECTIVITIES:
        filters = Filters(collections=tuple(f"c{i}" for i in range(max(1, int(BUCKETS * share)))))
        print(f"[{n}] {share:.1%}…", flush=True)
        truth = exact_truth(ctx, filters, probes)
        row: dict[str, Any] = {}
        for name, forced in (("chosen", None), ("hnsw", "hnsw"), ("exact", "exact")):
            ms, found = measure(ctx, filters, probes, forced=forced,
                                floor=lambda q: np.argpartition(-(data @ q), 10)[:10])
            row[name] = {"recall_at_10": round(recall(found, truth), 4), **ms}
        with ctx.db.session() as s:
            kept = s.scalar(text("SELECT count(*) FROM images WHERE collection = ANY(:c)"),
                            {"c": list(filters.collections)})
        row["kept"] = kept
        row["chosen_path"] = row["chosen"]["path"].replace("index", "hnsw")
        result["selectivity"][f"{share:.1%}"] = row
    return result


def report(result: dict[str, Any]) -> str:
    """The Markdown table of one run."""
    rows = []
    for share, row in result["selectivity"].items():
        for name in ("chosen", "hnsw", "exact"):
            m = row[name]
            label = f"chosen ({row['chosen_path']})" if name == "chosen" else f"forced {name}"
            rows.append([share, f"{row['kept']:,}", label, m["recall_at_10"], m["p50"], m["p99"],
                         m["floor_p50"], f"{m['to_floor']}x"])
    table = markdown_table(["filter keeps", "images kept", "path", "recall@10", "p50 ms", "p99 ms",
                            "numpy floor p50, in turn", "p50 to the floor"], rows)
    return (f"{result['size']:,} images, semantic search, 10 results, ef_search {result['ef_search']}, "
            f"exact scan below {result['exact_below']:,} kept images or "
            f"{result['exact_share']:.0%} of them:\n\n{table}")


def main() -> None:
    """Run and write bench/results/…/filtered.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=118_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.tiny:
        args.size, args.queries = 5000, 10
    with scratch_home() as home:
        env = {"CLIPSEEK_HOME": str(home), "CLIPSEEK_MODEL": RANDOM_MODEL, "CLIPSEEK_OFFLINE": "1",
               "REDIS_URL": "redis+socket:///nonexistent"}
        # An existing model cache spares the ONNX exports (minutes on a busy machine).
        for name in ("DATABASE_URL", "CLIPSEEK_MODEL_CACHE"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        settings = Settings.from_env(env)
        # What users get, not fp32 for now (a tiny run times nothing: it keeps fp32).
        print(f"precision: {measured_precision(settings, measure=not args.tiny)}", flush=True)
        ctx = Context(settings)
        try:
            result = run(ctx, args.size, args.queries)
        finally:
            ctx.close()
            if not settings.database_url:
                from clipseek.store.embedded_db import EmbeddedPostgres

                EmbeddedPostgres(settings.pgdata).stop()
    md = report(result)
    write_results("filtered-tiny" if args.tiny else "filtered", result, md, args.out)
    print(md)


if __name__ == "__main__":
    main()
