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
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, text

from bench.common import markdown_table, peak_memory, postmaster_pid, scratch_home, write_results
from bench.search import EF_VALUES, build_index, clustered, ef_sweep, load, sql_top10, vector_literal
from clipseek.context import Context
from clipseek.settings import RANDOM_MODEL, Settings
from clipseek.store.embedded_db import EmbeddedPostgres
from clipseek.store.vector_indexes import index_name


def insert_ms_per_row(engine: Engine, vectors: np.ndarray, model: str, first_id: int) -> float:
    """Milliseconds per row to insert `vectors` into the indexed table, 32 rows per statement
    as the indexing path writes them; the rows are removed again afterwards."""
    ids = list(range(first_id, first_id + len(vectors)))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO images (id, sha256, path, original_name, source, file_size, status) "
                          "SELECT i, lpad(to_hex(i), 64, '0'), '/bench/' || i, i || '.jpg', 'bench', 0, "
                          "'indexed' FROM unnest(CAST(:ids AS bigint[])) AS i"), {"ids": ids})
    started = time.perf_counter()
    for start in range(0, len(ids), 32):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO embeddings (image_id, model, embedding) "
                              "VALUES (:id, :model, CAST(:v AS halfvec(512)))"),
                         [{"id": i, "model": model, "v": vector_literal(v)}
                          for i, v in zip(ids[start:start + 32], vectors[start:start + 32], strict=True)])
    elapsed = time.perf_counter() - started
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM images WHERE id >= :first"), {"first": first_id})
    # No VACUUM here: vacuuming an HNSW index repairs the graph around every deleted row
    # (minutes with the bigger graphs), and the next graph is built from scratch anyway.
    return 1000 * elapsed / len(ids)


def measure(ctx: Context, size: int, queries: int, graphs: list[tuple[int, int]],
            inserts: int) -> dict[str, Any]:
    """Load `size` embeddings once, then build, sweep and insert into each graph in turn."""
    engine, model = ctx.db.engine, ctx.settings.model
    clusters = max(10, min(4000, size // 50))
    everything = clustered(size + inserts, clusters=clusters, seed=1, spread=0.9)
    data, extra = everything[:size], everything[size:]
    probes = clustered(queries, clusters=clusters, seed=1, spread=2.4)
    print(f"[{size}] loading…", flush=True)
    load(engine, data, model)
    truth = [sql_top10(engine, q, table="embeddings", model=model, exact=True) for q in probes]
    out: dict[str, Any] = {"size": size, "queries": queries, "graphs": [],
                           "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    with engine.connect() as conn:
        out["server"] = {name: conn.scalar(text(f"SHOW {name}")) for name in (
            "shared_buffers", "max_parallel_maintenance_workers", "server_version")}
        out["server"]["pgvector"] = conn.scalar(text("SELECT extversion FROM pg_extension "
                                                     "WHERE extname = 'vector'"))
        out["table_mb"] = round(conn.scalar(text("SELECT pg_total_relation_size('embeddings')")) / 2**20, 1)
    server = postmaster_pid(ctx.settings.pgdata) if not ctx.settings.database_url else None
    for m, efc in graphs:
        print(f"[{size}] m={m}, ef_construction={efc}: building…", flush=True)
        # The server's memory while it builds (postmaster, backend and parallel workers, shared
        # memory counted once): what a machine needs beyond its other work to build the graph.
        with peak_memory(server) as memory:
            build_s = build_index(engine, model, m=m, ef_construction=efc)
        with engine.connect() as conn:
            index_mb = conn.scalar(text("SELECT pg_relation_size(CAST(:name AS regclass))"),
                                   {"name": index_name(model)}) / 2**20
        sweep = ef_sweep(engine, probes, truth, model)
        insert_ms = insert_ms_per_row(engine, extra, model, first_id=size + 1)
        out["graphs"].append({"m": m, "ef_construction": efc, "build_s": round(build_s, 1),
                              "index_mb": round(index_mb, 1), "insert_ms": round(insert_ms, 2),
                              "build_memory_mib": memory, "sweep": sweep})
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def report(result: dict[str, Any]) -> str:
    """Markdown: one row per graph, recall@10 (p50 ms) per ef_search."""
    rows = [[f"m={g['m']}, ef_construction={g['ef_construction']}", g["build_s"], g["index_mb"],
             g.get("build_memory_mib", {}).get("peak_mib", "-"), g["insert_ms"],
             *(f"{s['recall_at_10']} ({s['p50']} / {s['p99']} ms)" for s in g["sweep"].values())]
            for g in result["graphs"]]
    headers = ["graph", "build s", "index MB", "server memory while building, peak MiB",
               "insert ms/row", *(f"ef_search={ef}" for ef in EF_VALUES)]
    server = result.get("server", {})
    setup = (f"PostgreSQL {server.get('server_version', '?')}, pgvector {server.get('pgvector', '?')}, "
             f"shared_buffers {server.get('shared_buffers', '?')}, maintenance_work_mem 2GB, "
             f"{server.get('max_parallel_maintenance_workers', '?')} parallel maintenance workers; "
             f"embeddings table {result.get('table_mb', '?')} MB; load average "
             f"{result.get('load_average_before')} before, {result.get('load_average_after')} after "
             f"(a shared machine).")
    return (f"HNSW graphs at {result['size']:,} embeddings, {result['queries']} text-like queries: "
            f"recall@10 against the exact scan (p50 / p99 latency of the query).\n{setup}\n\n"
            f"{markdown_table(headers, rows)}")


def main() -> None:
    """Measure each graph and write bench/results/hnsw-params.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=300_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--graphs", default="16:64,24:128,32:200", help="m:ef_construction,...")
    parser.add_argument("--inserts", type=int, default=2048,
                        help="rows inserted into each built graph, timed, then removed")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.tiny:
        args.size, args.queries, args.graphs, args.inserts = 300, 5, "16:64,24:96", 64
    graphs = [(int(m), int(e)) for m, e in (g.split(":") for g in args.graphs.split(","))]
    with scratch_home() as home:
        settings = Settings.from_env({"CLIPSEEK_HOME": str(home), "CLIPSEEK_MODEL": RANDOM_MODEL,
                                      "CLIPSEEK_OFFLINE": "1"})
        ctx = Context(settings)
        try:
            result = measure(ctx, args.size, args.queries, graphs, args.inserts)
        finally:
            ctx.close()
            EmbeddedPostgres(settings.pgdata).stop()
    md = report(result)
    write_results("hnsw-params-tiny" if args.tiny else "hnsw-params", result, md, args.out)
    print(md)


if __name__ == "__main__":
    main()
