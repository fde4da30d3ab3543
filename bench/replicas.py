"""A primary and a streaming replica on loopback: replication lag during a bulk import, and
search latency on the replica against the primary under the same load.

    python -m bench.replicas           # 5,000 pictures indexed, then 10,000 imported
    python -m bench.replicas --tiny    # 1,000 then 500: checks the script runs

Both servers are the embedded PostgreSQL (the replica made with pg_basebackup -R, as the
tests make it). The rows are synthetic (pictures with unit-vector embeddings of the test
model, in the product's own tables and HNSW index), written in batches of 100 per
transaction, as workers commit their batches. Meanwhile one thread watches the replica's
replay position every 5 ms, so each batch's lag is the time from its commit on the primary
to its replay on the replica (no clocks compared), and another runs the product's search
SQL (`rank_by_vector`) against the primary and the replica in turn.

What it can show: how far behind a replica on the same machine falls while indexing
writes, and whether a search costs more on a replica than on the primary. What it cannot:
two cores are shared by the writer, both servers and the searches, so neither side gets
more throughput from a replica here; on separate machines a replica adds the other
machine's CPUs (and a network round trip to each lag figure).

Writes bench/results/replicas.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, text
from sqlalchemy.orm import Session, sessionmaker

from bench.common import markdown_table, percentiles, scratch_home, write_results
from clipseek.context import open_database
from clipseek.search.run import rank_by_vector
from clipseek.settings import RANDOM_MODEL, Settings
from clipseek.store.db import make_engine
from clipseek.store.embedded_db import EmbeddedPostgres
from clipseek.store.replicas import parse_lsn
from clipseek.store.tables import Embedding, Image, ImageStatus

BATCH = 100


def unit_vectors(count: int, seed: int) -> np.ndarray:
    """Random unit vectors of the test model's 512 dimensions."""
    vectors = np.random.default_rng(seed).normal(size=(count, 512)).astype(np.float32)
    unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


def add_batch(session: Session, first: int, vectors: np.ndarray) -> None:
    """Pictures `first`.. with their embeddings, as an indexing batch leaves them (one transaction)."""
    ids = session.scalars(insert(Image).returning(Image.id), [
        {"sha256": f"{first + n:064x}", "path": f"/bench/{first + n}.jpg",
         "original_name": f"{first + n}.jpg", "source": "bench", "file_size": 1, "width": 640,
         "height": 480, "format": "JPEG", "status": ImageStatus.INDEXED}
        for n in range(len(vectors))]).all()
    session.execute(insert(Embedding), [{"image_id": i, "model": RANDOM_MODEL, "embedding": v}
                                        for i, v in zip(ids, vectors, strict=True)])
    session.commit()


def lsn_of(session: Session, query: str) -> int:
    """A WAL position the server reports."""
    return parse_lsn(str(session.execute(text(query)).scalar_one()))


class LagWatch(threading.Thread):
    """Polls the replica's replay position; tells when each awaited position was replayed."""

    def __init__(self, replica: sessionmaker[Session]) -> None:
        super().__init__(daemon=True)
        self.replica = replica
        self.waiting: list[tuple[int, float]] = []  # (commit position, commit time)
        self.lags_ms: list[float] = []
        # The most WAL the replica was behind the newest commit, at any poll.
        self.max_bytes = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        with self.replica() as session:
            while not self.stop.is_set() or self.waiting:
                replayed = lsn_of(session, "SELECT pg_last_wal_replay_lsn()::text")
                session.rollback()
                now = time.perf_counter()
                with self.lock:
                    if self.waiting:
                        self.max_bytes = max(self.max_bytes, self.waiting[-1][0] - replayed)
                    done = [w for w in self.waiting if w[0] <= replayed]
                    self.waiting = [w for w in self.waiting if w[0] > replayed]
                self.lags_ms += [(now - at) * 1000 for _, at in done]
                time.sleep(0.005)


def search_ms(sessions: sessionmaker[Session], vector: np.ndarray) -> float:
    """One search (the product's ranking SQL, a page of 10) in milliseconds."""
    started = time.perf_counter()
    with sessions() as session:
        rank_by_vector(session, vector, model=RANDOM_MODEL, per_page=10)
    return (time.perf_counter() - started) * 1000


def latencies(targets: dict[str, sessionmaker[Session]], queries: np.ndarray,
              until: threading.Event | None = None) -> dict[str, list[float]]:
    """Search each target in turn with each query (again and again while `until` is unset)."""
    found: dict[str, list[float]] = {name: [] for name in targets}
    while True:
        for vector in queries:
            for name, sessions in targets.items():
                found[name].append(search_ms(sessions, vector))
            if until is not None and until.is_set():
                return found
        if until is None:
            return found


def run(base: int, imported: int, folder: Path) -> dict[str, Any]:
    """Measure one configuration; return its figures."""
    primary_server = EmbeddedPostgres(folder / "primary")
    replica_server = EmbeddedPostgres(folder / "replica")
    primary_server.ensure_running()
    try:
        settings = Settings.from_env({"CLIPSEEK_HOME": str(folder / "home"),
                                      "DATABASE_URL": primary_server.url(),
                                      "CLIPSEEK_MODEL": RANDOM_MODEL, "CLIPSEEK_OFFLINE": "1"})
        db = open_database(settings)
        vectors = unit_vectors(base + imported, seed=1)
        with db.session() as session:
            for first in range(0, base, 1000):
                add_batch(session, first, vectors[first:first + 1000])
            session.execute(text("ANALYZE images"))
            session.execute(text("ANALYZE embeddings"))
            session.commit()
        replica_server.ensure_replica_of(primary_server)
        replica_engine = make_engine(replica_server.url())
        targets = {"primary": db.sessions, "replica": sessionmaker(replica_engine)}
        with db.session() as session:
            target = lsn_of(session, "SELECT pg_current_wal_lsn()::text")
        with targets["replica"]() as session:
            while lsn_of(session, "SELECT pg_last_wal_replay_lsn()::text") < target:
                session.rollback()
                time.sleep(0.05)
        queries = unit_vectors(50, seed=2)
        latencies(targets, queries[:5])  # warm both servers' caches
        idle = latencies(targets, queries)
        watch = LagWatch(targets["replica"])
        watch.start()
        importing = threading.Event()
        loaded: dict[str, list[float]] = {}
        searcher = threading.Thread(target=lambda: loaded.update(latencies(targets, queries, importing)))
        started = time.perf_counter()
        searcher.start()
        with db.session() as session:
            for first in range(base, base + imported, BATCH):
                add_batch(session, first, vectors[first:first + BATCH])
                position = lsn_of(session, "SELECT pg_current_wal_lsn()::text")
                session.rollback()
                with watch.lock:
                    watch.waiting.append((position, time.perf_counter()))
        import_s = time.perf_counter() - started
        importing.set()
        searcher.join()
        watch.stop.set()
        watch.join(timeout=120)
        replica_engine.dispose()
        db.close()
    finally:
        replica_server.stop(mode="immediate")
        primary_server.stop()
    return {
        "base_pictures": base, "imported": imported, "batch": BATCH,
        "import_s": round(import_s, 2), "import_rows_per_s": round(imported / import_s, 1),
        "lag_ms": percentiles(watch.lags_ms) | {"max": round(max(watch.lags_ms), 1),
                                                 "mean": round(statistics.fmean(watch.lags_ms), 1)},
        "lag_bytes_max": watch.max_bytes,
        # Other work on the machine during the run (1, 5 and 15 minutes), which the figures include.
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "search_ms_idle": {name: percentiles(samples) for name, samples in idle.items()},
        "search_ms_during_import": {name: percentiles(samples) for name, samples in loaded.items()},
        "searches_during_import": {name: len(samples) for name, samples in loaded.items()},
    }


def report(result: dict[str, Any]) -> str:
    """The results as Markdown."""
    lag = result["lag_ms"]
    rows = [[name, result["search_ms_idle"][name]["p50"], result["search_ms_idle"][name]["p95"],
             result["search_ms_during_import"][name]["p50"],
             result["search_ms_during_import"][name]["p95"], result["searches_during_import"][name]]
            for name in ("primary", "replica")]
    return (
        f"Primary and streaming replica on loopback (embedded PostgreSQL 18); {result['base_pictures']:,} "
        f"pictures indexed, then {result['imported']:,} imported in batches of {result['batch']} "
        f"({result['import_s']} s, {result['import_rows_per_s']} pictures/s).\n\n"
        f"Replication lag per batch, commit on the primary to replay on the replica: p50 "
        f"{lag['p50']} ms, p95 {lag['p95']} ms, max {lag['max']} ms; at most "
        f"{result['lag_bytes_max']:,} bytes of WAL behind the newest commit. Load average at the "
        f"end: {' / '.join(map(str, result['load_average']))}.\n\n"
        + markdown_table(["searched on", "idle p50 ms", "idle p95 ms", "during import p50 ms",
                          "during import p95 ms", "searches during import"], rows)
        + "\n\nTwo cores run the writer, both servers and the searches: this shows the lag and "
          "what a search costs on a replica, not the throughput a replica on its own machine adds."
    )


def main() -> None:
    """Run the benchmark and write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="1,000 then 500 pictures: checks the script runs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    base, imported = (1_000, 500) if args.tiny else (5_000, 10_000)
    with scratch_home() as folder:
        result = run(base, imported, folder)
    path = write_results("replicas", result, report(result), args.out)
    print(report(result))
    print(f"\nWritten to {path}")


if __name__ == "__main__":
    main()
