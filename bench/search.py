"""Search latency and recall at collection sizes up to COCO's and beyond.

    python -m bench.search                         # 10,000 and 118,000 embeddings
    python -m bench.search --sizes 1000000         # one million (takes long to load and index)
    python -m bench.search --tiny                  # a few hundred: checks the script runs

Embeddings are synthetic but shaped like CLIP's: clustered on the unit sphere (uniform
noise would defeat every index), with text-like queries that sit farther from the
clusters than images do. For each size it measures, in one run:
- the whole search request through the web app, the JSON API (/api/search) and the page (/),
  split into text encoding, the database query and the rest (JSON or HTML, the request
  itself); the model is ViT-B/32 with random weights, in the precision `auto` measures;
- exact scan vs the HNSW index (recall@10 against exact search, across ef_search);
- halfvec vs vector storage for an exact scan;
- numpy brute force (the original design's np.dot) and FAISS (flat and HNSW);
- the requests' ratio to the numpy floor, the floor timed in turn with the requests, for
  new queries and for a query repeated (the same page again).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, text

from bench.common import markdown_table, measured_precision, percentiles, scratch_home, write_results
from clipseek.context import Context
from clipseek.settings import RANDOM_MODEL, Settings
from clipseek.store.vector_indexes import HNSW_EF_CONSTRUCTION, HNSW_M, index_name, index_sql, quoted

DIM = 512
EF_VALUES = (40, 80, 120, 200, 250, 300, 400)


def clustered(n: int, *, clusters: int, seed: int, spread: float) -> np.ndarray:
    """`n` unit vectors around `clusters` random centres; cosine to the centre ~ 1/sqrt(1+spread^2)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # Zipf-like cluster sizes: real collections have a few big themes and many small ones.
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.7
    assign = rng.choice(clusters, size=n, p=weights / weights.sum())
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        part = assign[start:start + 100_000]
        noise = rng.standard_normal((len(part), DIM)).astype(np.float32) * (spread / np.sqrt(DIM))
        block = centres[part] + noise
        out[start:start + len(part)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], list[Any]]:
    """Run `fn` `repeat` times; return the milliseconds of each call and the results."""
    times, results = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        results.append(fn())
        times.append((time.perf_counter() - started) * 1000)
    return times, results


def vector_literal(v: np.ndarray) -> str:
    """A vector as pgvector's text literal."""
    return "[" + ",".join(f"{x:.6f}" for x in v) + "]"


def load(engine: Engine, vectors: np.ndarray, model: str) -> dict[str, float]:
    """Replace the collection with `vectors` (COPY, binary), in the product's own tables."""
    from pgvector import HalfVector, Vector
    from pgvector.psycopg import register_vector

    timings: dict[str, float] = {}
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE images RESTART IDENTITY CASCADE"))
        conn.execute(text(f"DROP INDEX IF EXISTS {index_name(model)}"))
        conn.execute(text("DROP TABLE IF EXISTS bench_vector"))
        conn.execute(text("CREATE TABLE bench_vector (id bigint PRIMARY KEY, embedding vector(512))"))
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        assert dbapi is not None
        register_vector(dbapi)
        started = time.perf_counter()
        with dbapi.cursor() as cur:
            with cur.copy("COPY images (id, sha256, path, original_name, source, file_size, status, "
                          "width, height, format) FROM STDIN") as copy:
                for i in range(len(vectors)):
                    copy.write_row((i + 1, f"{i:064x}", f"/bench/{i}.jpg", f"{i}.jpg", "bench", 0,
                                    "indexed", 640, 480, "JPEG"))
            with cur.copy("COPY embeddings (image_id, model, embedding) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "varchar", "halfvec"])
                for i, v in enumerate(vectors):
                    copy.write_row((i + 1, model, HalfVector(v)))
            with cur.copy("COPY bench_vector (id, embedding) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "vector"])
                for i, v in enumerate(vectors):
                    copy.write_row((i + 1, Vector(v)))
        dbapi.commit()
        timings["load_s"] = time.perf_counter() - started
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE images"))
        conn.execute(text("VACUUM ANALYZE embeddings"))
        conn.execute(text("VACUUM ANALYZE bench_vector"))
    return timings


def build_index(engine: Engine, model: str, *, m: int = HNSW_M,
                ef_construction: int = HNSW_EF_CONSTRUCTION) -> float:
    """Create `model`'s HNSW index (by default as ClipSeek builds it); return seconds."""
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP INDEX IF EXISTS {index_name(model)}"))
        conn.execute(text("SET maintenance_work_mem = '2GB'"))
        conn.execute(text(index_sql(model, DIM, concurrently=False, m=m, ef_construction=ef_construction)))
        conn.execute(text("ANALYZE embeddings"))
    return time.perf_counter() - started


def sql_top10(engine: Engine, query: np.ndarray, *, table: str, model: str | None, exact: bool,
              ef: int = 40) -> list[int]:
    """The ten nearest ids by cosine distance, by exact scan or through the HNSW index."""
    kind = "halfvec(512)" if table == "embeddings" else "vector(512)"
    id_col = "image_id" if table == "embeddings" else "id"
    # As ClipSeek's searches write it: the model inline (its index is a partial one) and the
    # column cast to the model's dimension (the index's expression).
    where = f"WHERE model = {quoted(model)}" if model else ""
    column = f"embedding::{kind}" if table == "embeddings" else "embedding"
    with engine.begin() as conn:
        if exact:
            conn.execute(text("SET LOCAL enable_indexscan = off"))
        else:
            conn.execute(text(f"SET LOCAL hnsw.ef_search = {ef}"))
            conn.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
        rows = conn.execute(text(f"SELECT {id_col} FROM {table} {where} "
                                 f"ORDER BY {column} <=> CAST(:q AS {kind}) LIMIT 10"),
                            {"q": vector_literal(query)})
        return [r[0] for r in rows]


def ef_sweep(engine: Engine, probes: np.ndarray, truth: list[list[int]],
             model: str) -> dict[int, dict[str, float]]:
    """Recall@10 against `truth` and latency percentiles through the index, per ef_search."""
    sweep = {}
    for ef in EF_VALUES:
        found, ms = [], []
        for q in probes:
            started = time.perf_counter()
            found.append(sql_top10(engine, q, table="embeddings", model=model, exact=False, ef=ef))
            ms.append((time.perf_counter() - started) * 1000)
        sweep[ef] = {"recall_at_10": round(recall(found, truth), 4), **percentiles(ms)}
    return sweep


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    """Mean recall@10 of `found` against `truth`."""
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def page_requests(settings: Settings, count: int, tag: str, floor: Callable[[], object], *,
                  path: str = "/api/search") -> dict[str, dict[str, float]]:
    """Whole search requests through the Flask app (`path`: the JSON API or the page), split
    by the Server-Timing header.

    `floor` (numpy's scan of the same embeddings) runs after each request, taking turns with
    it, so that a neighbour's load on a shared machine weighs on both alike: the ratios to
    the floor are computed from these turns.
    """
    from webapp import create_app

    app = create_app({"TESTING": True}, settings=settings)
    client = app.test_client()
    client.get(f"{path}?q=warm+up")  # load the model, fill the connection pool
    parts: dict[str, list[float]] = {"total": [], "encode": [], "query": [], "render": [], "floor": []}
    try:
        for n in range(count):
            # Distinct queries: the query cache would otherwise skip the text encoder.
            started = time.perf_counter()
            response = client.get(f"{path}?q=a+photo+of+scene+{n}+of+{tag}&per_page=24")
            total = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, response.status_code
            timing = dict(item.split(";dur=") for item in response.headers["Server-Timing"].split(", "))
            encode, query = float(timing["encode"]), float(timing["query"])
            for name, value in (("total", total), ("encode", encode), ("query", query),
                                ("render", total - encode - query)):
                parts[name].append(value)
            parts["floor"].append(timed(floor, 1)[0][0])
        cached_ms: list[float] = []
        for _ in range(max(20, count // 2)):
            # A query asked again (a reload, a shared link): the same page of the first one.
            cached_ms += timed(lambda: client.get(f"{path}?q=a+photo+of+scene+0+of+{tag}&per_page=24"),
                               1)[0]
            parts["floor"].append(timed(floor, 1)[0][0])
    finally:
        app.extensions["clipseek"].close()
    out = {name: percentiles(values) for name, values in parts.items()}
    out["total_cached_query"] = percentiles(cached_ms)
    return out


def run_size(ctx: Context, n: int, *, queries: int, requests: int) -> dict[str, Any]:
    """Every measurement at one collection size."""
    model = ctx.settings.model
    clusters = max(10, min(4000, n // 50))
    data = clustered(n, clusters=clusters, seed=1, spread=0.9)
    probes = clustered(queries, clusters=clusters, seed=1, spread=2.4)  # same centres, text-like
    result: dict[str, Any] = {"size": n, "clusters": clusters, "ef_search": ctx.settings.ef_search}
    print(f"[{n}] loading…", flush=True)
    result.update(load(ctx.db.engine, data, model))
    engine = ctx.db.engine
    with engine.connect() as conn:
        result["table_mb"] = {
            name: round(conn.scalar(text(f"SELECT pg_total_relation_size('{name}')")) / 2**20, 1)
            for name in ("embeddings", "bench_vector")}
        result["toast_mb"] = {
            name: round(conn.scalar(text(
                f"SELECT coalesce(pg_total_relation_size(reltoastrelid), 0) FROM pg_class "
                f"WHERE relname = '{name}'")) / 2**20, 1) for name in ("embeddings", "bench_vector")}

    print(f"[{n}] exact scans…", flush=True)
    exact_ms, truth = [], []
    for q in probes:
        started = time.perf_counter()
        truth.append(sql_top10(engine, q, table="embeddings", model=model, exact=True))
        exact_ms.append((time.perf_counter() - started) * 1000)
    vector_ms = timed_each(lambda q: sql_top10(engine, q, table="bench_vector", model=None, exact=True),
                           probes[: max(5, queries // 2)])
    result["exact_halfvec_ms"] = percentiles(exact_ms)
    result["exact_vector_ms"] = percentiles(vector_ms)

    print(f"[{n}] building HNSW…", flush=True)
    result["hnsw_build_s"] = round(build_index(engine, model), 1)
    result["hnsw"] = ef_sweep(engine, probes, truth, model)

    print(f"[{n}] numpy and FAISS…", flush=True)
    result["numpy_ms"] = percentiles(timed_each(lambda q: np.argpartition(-(data @ q), 10)[:10], probes))
    numpy_truth = [list(np.argsort(-(data @ q))[:10] + 1) for q in probes]
    result["numpy_vs_sql_exact_recall"] = round(recall(numpy_truth, truth), 4)
    import faiss

    flat = faiss.IndexFlatIP(DIM)
    flat.add(data)
    result["faiss_flat_ms"] = percentiles(timed_each(lambda q: flat.search(q[None, :], 10), probes))
    hnsw = faiss.IndexHNSWFlat(DIM, 16, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 64
    started = time.perf_counter()
    hnsw.add(data)
    result["faiss_hnsw_build_s"] = round(time.perf_counter() - started, 1)
    hnsw.hnsw.efSearch = 40
    found = [list(hnsw.search(q[None, :], 10)[1][0] + 1) for q in probes]
    result["faiss_hnsw_ef40"] = {"recall_at_10": round(recall(found, truth), 4),
                                 **percentiles(timed_each(lambda q: hnsw.search(q[None, :], 10), probes))}

    print(f"[{n}] whole requests…", flush=True)
    probe = probes[0]
    for key, path in (("request_ms", "/api/search"), ("page_request_ms", "/")):
        result[key] = requests_ms = page_requests(
            ctx.settings, requests, tag=f"{n}{path}", path=path,
            floor=lambda: np.argpartition(-(data @ probe), 10)[:10])
        floor = requests_ms["floor"]["p50"]
        result[key.replace("request_ms", "to_floor")] = {
            "new_query": round(requests_ms["total"]["p50"] / floor, 2),
            "repeated_query": round(requests_ms["total_cached_query"]["p50"] / floor, 2)}
    return result


def timed_each(fn: Callable[[np.ndarray], Any], items: np.ndarray) -> list[float]:
    """Milliseconds of `fn` on each item."""
    out = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - started) * 1000)
    return out


def report(results: list[dict[str, Any]]) -> str:
    """The Markdown tables of a run."""
    rows = []
    for r in results:
        for key, label in (("request_ms", "`/api/search` (JSON)"), ("page_request_ms", "`/` (page)")):
            if key not in r:  # results written before the page had its own row
                continue
            req, ratio = r[key], r[key.replace("request_ms", "to_floor")]
            rows.append([f"{r['size']:,}", label, req["total"]["p50"], req["total"]["p95"],
                         req["total"]["p99"], req["encode"]["p50"], req["query"]["p50"],
                         req["query"]["p99"], req["render"]["p50"], req["total_cached_query"]["p50"],
                         req["floor"]["p50"], f"{ratio['new_query']}x / {ratio['repeated_query']}x"])
    whole = markdown_table(["images", "request", "p50", "p95", "p99", "encode p50", "query p50",
                            "query p99", "rest p50", "p50, repeated query", "numpy floor p50, in turn",
                            "new / repeated query to the floor"], rows)
    rows = []
    for r in results:
        size = f"{r['size']:,}"
        for ef, sw in r["hnsw"].items():
            rows.append([size, f"HNSW ef_search={ef}", sw["recall_at_10"], sw["p50"], sw["p95"], sw["p99"]])
        rows.append([size, "exact scan, halfvec", 1.0, *r["exact_halfvec_ms"].values()])
        rows.append([size, "exact scan, vector", "-", *r["exact_vector_ms"].values()])
        rows.append([size, "numpy brute force (np.dot)", r["numpy_vs_sql_exact_recall"],
                     *r["numpy_ms"].values()])
        rows.append([size, "FAISS flat (inner product)", "-", *r["faiss_flat_ms"].values()])
        fh = r["faiss_hnsw_ef40"]
        rows.append([size, "FAISS HNSW, efSearch=40", fh["recall_at_10"], fh["p50"], fh["p95"], fh["p99"]])
    methods = markdown_table(["images", "method", "recall@10", "p50 ms", "p95 ms", "p99 ms"], rows)
    rows = [[f"{r['size']:,}", round(r["load_s"], 1), r["hnsw_build_s"], r["faiss_hnsw_build_s"],
             r["table_mb"]["embeddings"], r["toast_mb"]["embeddings"], r["table_mb"]["bench_vector"],
             r["toast_mb"]["bench_vector"]] for r in results]
    storage = markdown_table(["images", "COPY s", "HNSW build s", "FAISS HNSW build s", "halfvec table MB",
                              "of which TOAST", "vector table MB", "of which TOAST"], rows)
    return (f"Whole search request through the web app (ms; 24 results per page; ef_search "
            f"{results[0].get('ef_search', '?')}):\n\n{whole}\n\n"
            f"Top-10 query methods (ms; recall against PostgreSQL's exact scan):\n\n{methods}\n\n"
            f"Loading and storage:\n\n{storage}")


def main() -> None:
    """Run every size and write bench/results/search.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,118000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.tiny:
        args.sizes, args.queries, args.requests = "300", 10, 5
    sizes = [int(s) for s in args.sizes.split(",")]
    with scratch_home() as home:
        env = {"CLIPSEEK_HOME": str(home), "CLIPSEEK_MODEL": RANDOM_MODEL, "CLIPSEEK_OFFLINE": "1",
               "REDIS_URL": "redis+socket:///nonexistent"}  # the search pages never touch the queue
        # An existing model cache spares the ONNX exports (minutes on a busy machine).
        for name in ("DATABASE_URL", "CLIPSEEK_MODEL_CACHE"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        settings = Settings.from_env(env)
        ctx = Context(settings)
        try:
            print(f"precision: {measured_precision(settings, measure=not args.tiny)}", flush=True)
            results = [run_size(ctx, n, queries=args.queries, requests=args.requests) for n in sizes]
        finally:
            ctx.close()
            if not settings.database_url:
                from clipseek.store.embedded_db import EmbeddedPostgres

                EmbeddedPostgres(settings.pgdata).stop()
    md = report(results)
    write_results("search-tiny" if args.tiny else "search", {"results": results}, md, args.out)
    print(md)


if __name__ == "__main__":
    main()
