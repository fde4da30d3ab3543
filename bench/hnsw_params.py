"""HNSW build parameters: recall@10 and latency across ef_search, for several (m, ef_construction).

    python -m bench.hnsw_params                          # 300,000 embeddings, three graphs
    python -m bench.hnsw_params --size 1000000 --graphs 16:64,32:128
    python -m bench.hnsw_params --tiny                   # checks the script runs

The same clustered embeddings and text-like queries as bench.search, in ClipSeek's own
tables; recall is measured against PostgreSQL's exact scan. A bigger graph (m) and a wider
build search (ef_construction) cost build time and index size and buy recall at a given
ef_search: this shows how much, at a size where the default graph starts to lose recall.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.common import markdown_table, percentiles, scratch_home, write_results
from bench.search import EF_VALUES, build_index, clustered, load, recall, sql_top10
from clipseek.context import Context
from clipseek.embedded_db import EmbeddedPostgres
from clipseek.settings import RANDOM_MODEL, Settings


def measure(ctx: Context, size: int, queries: int, graphs: list[tuple[int, int]]) -> dict[str, Any]:
    """Load `size` embeddings once, then build and sweep each graph in turn."""
    engine, model = ctx.db.engine, ctx.settings.model
    clusters = max(10, min(4000, size // 50))
    data = clustered(size, clusters=clusters, seed=1, spread=0.9)
    probes = clustered(queries, clusters=clusters, seed=1, spread=2.4)
    print(f"[{size}] loading…", flush=True)
    load(engine, data, model)
    truth = [sql_top10(engine, q, table="embeddings", model=model, exact=True) for q in probes]
    out: dict[str, Any] = {"size": size, "queries": queries, "graphs": []}
    for m, efc in graphs:
        print(f"[{size}] m={m}, ef_construction={efc}: building…", flush=True)
        build_s = build_index(engine, m=m, ef_construction=efc)
        with engine.connect() as conn:
            index_mb = conn.scalar(text("SELECT pg_relation_size('embeddings_hnsw_cosine_idx')")) / 2**20
        sweep = {}
        for ef in EF_VALUES:
            found, ms = [], []
            for q in probes:
                started = time.perf_counter()
                found.append(sql_top10(engine, q, table="embeddings", model=model, exact=False, ef=ef))
                ms.append((time.perf_counter() - started) * 1000)
            sweep[ef] = {"recall_at_10": round(recall(found, truth), 4), **percentiles(ms)}
        out["graphs"].append({"m": m, "ef_construction": efc, "build_s": round(build_s, 1),
                              "index_mb": round(index_mb, 1), "sweep": sweep})
    return out


def report(result: dict[str, Any]) -> str:
    """Markdown: one row per graph, recall@10 (p50 ms) per ef_search."""
    rows = [[f"m={g['m']}, ef_construction={g['ef_construction']}", g["build_s"], g["index_mb"],
             *(f"{s['recall_at_10']} ({s['p50']} ms)" for s in g["sweep"].values())]
            for g in result["graphs"]]
    headers = ["graph", "build s", "index MB", *(f"ef_search={ef}" for ef in EF_VALUES)]
    return (f"HNSW graphs at {result['size']:,} embeddings, {result['queries']} text-like queries: "
            f"recall@10 against the exact scan (p50 latency of the query):\n\n"
            f"{markdown_table(headers, rows)}")


def main() -> None:
    """Measure each graph and write bench/results/hnsw-params.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=300_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--graphs", default="16:64,24:128,32:200", help="m:ef_construction,...")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.tiny:
        args.size, args.queries, args.graphs = 300, 5, "16:64,24:96"
    graphs = [(int(m), int(e)) for m, e in (g.split(":") for g in args.graphs.split(","))]
    with scratch_home() as home:
        settings = Settings.from_env({"CLIPSEEK_HOME": str(home), "CLIPSEEK_MODEL": RANDOM_MODEL,
                                      "CLIPSEEK_OFFLINE": "1"})
        ctx = Context(settings)
        try:
            result = measure(ctx, args.size, args.queries, graphs)
        finally:
            ctx.close()
            EmbeddedPostgres(settings.pgdata).stop()
    md = report(result)
    write_results("hnsw-params-tiny" if args.tiny else "hnsw-params", result, md, args.out)
    print(md)


if __name__ == "__main__":
    main()
