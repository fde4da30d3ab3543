"""Search under load while an import runs: `clipseek up` as a user runs it, many clients, zero errors.

Starts the whole product (`clipseek up`: embedded PostgreSQL and Redis, a worker, the web
app) in a scratch home with the random-weight model, indexes a first set of photos, then
for a fixed time runs N clients on loopback that search (a rotating set of queries, so the
text encoder and the query cache both get work), page, open thumbnails and poll the status
API, while `clipseek ingest` queues a second set that the worker indexes meanwhile. Every
response must be a 200; the run fails (exit 1) on any other answer or a timeout.

Writes bench/results/load.{json,md}: requests, throughput, p50/p95/p99 per kind, errors,
and how many images the concurrent import indexed.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

from bench.common import (
    markdown_table,
    measured_precision,
    percentiles,
    scratch_home,
    shared_model_cache,
    write_results,
)
from bench.make_images import make_photos
from clipseek.settings import Settings

QUERIES = ["a dog running on the beach", "a red motorcycle", "a rocket", "an astronaut",
           "a cat", "coffee", "a bowl of fruit", "a city at night", "a horse", "people walking",
           "a coin", "a camera", "a chess board", "a clock", "a flower", "a brick wall"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, timeout: float) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return 0  # no answer at all


def _cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "clipseek", *args], env=env, capture_output=True,
                            text=True, timeout=1800, check=False)
    if result.returncode != 0:
        raise SystemExit(f"clipseek {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def _wait_until_up(base: str, log: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300
    while _get(f"{base}/api/status", 5) != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"clipseek up did not answer:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def _searchable(base: str) -> int:
    import json

    with urllib.request.urlopen(f"{base}/api/status", timeout=30) as response:
        return int(json.loads(response.read())["searchable"])


def run_clients(base: str, clients: int, seconds: float, timeout_s: float,
                searchable: int) -> tuple[dict[str, list[float]], Counter[str], int]:
    """Run the clients for `seconds`; return latencies per kind, errors by kind and code, requests."""
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(n: int) -> None:
        rng = random.Random(n)
        while time.monotonic() < stop_at:
            roll = rng.random()
            if roll < 0.6:
                kind = "search page"
                url = f"{base}/?" + urllib.parse.urlencode(
                    {"q": rng.choice(QUERIES), "page": rng.randint(1, 3)})
            elif roll < 0.8:
                kind = "search API"
                url = f"{base}/api/search?" + urllib.parse.urlencode({"q": rng.choice(QUERIES)})
            elif roll < 0.95:
                kind = "thumbnail"
                url = f"{base}/thumb/{rng.randint(1, max(1, searchable))}.jpg"
            else:
                kind = "status API"
                url = f"{base}/api/status"
            started = time.perf_counter()
            code = _get(url, timeout_s)
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies[kind].append(elapsed)
                if code != 200:
                    errors[f"{kind}: {code or 'no answer'}"] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, sum(len(v) for v in latencies.values())


def main() -> None:
    """Run the load drill and write its results."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--indexed", type=int, default=512, help="photos indexed before the load")
    parser.add_argument("--importing", type=int, default=512,
                        help="photos imported (queued, indexed by the worker) during the load")
    parser.add_argument("--timeout", type=float, default=30, help="per-request timeout, seconds")
    parser.add_argument("--tiny", action="store_true", help="a quick run that checks the script works")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    args = parser.parse_args()
    if args.tiny:
        args.clients, args.seconds, args.indexed, args.importing = 4, 5, 24, 48

    with scratch_home() as home:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CLIPSEEK_", "DATABASE_URL", "REDIS_URL"))}
        port = _free_port()
        env.update({"CLIPSEEK_HOME": str(home), "CLIPSEEK_MODEL": "ViT-B-32/random",
                    "CLIPSEEK_OFFLINE": "1", "CLIPSEEK_PORT": str(port), **shared_model_cache()})
        if args.tiny:  # it checks that the script runs and times nothing: no minute of measuring
            env["CLIPSEEK_PRECISION"] = "fp32"
        else:
            # Measured before any process starts, so none serves in fp32 for now and switches mid-run.
            measured_precision(Settings.from_env(env))
        first = home / "first"
        second = home / "second"
        make_photos(first, args.indexed, seed=1)
        make_photos(second, args.importing, seed=2)
        _cli(env, "ingest", str(first), "--inline", "--no-progress")
        log = home / "up.log"
        with open(log, "w") as out:
            up = subprocess.Popen([sys.executable, "-m", "clipseek", "up", "--no-samples"], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(base, log, up)
            for query in QUERIES:  # warm the model, as a running installation is
                _get(f"{base}/api/search?" + urllib.parse.urlencode({"q": query}), 120)
            before = _searchable(base)
            importer = subprocess.Popen([sys.executable, "-m", "clipseek", "ingest", str(second),
                                         "--no-progress"], env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
            started = time.monotonic()
            latencies, errors, requests = run_clients(base, args.clients, args.seconds, args.timeout,
                                                      before)
            elapsed = time.monotonic() - started
            after = _searchable(base)
            importer.wait(timeout=600)
        finally:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=120)
            except subprocess.TimeoutExpired:
                up.kill()
            _cli(env, "stop")

    rows = [[kind, len(values), *percentiles(values).values()] for kind, values in sorted(latencies.items())]
    every = [v for values in latencies.values() for v in values]
    rows.append(["all", len(every), *percentiles(every).values()])
    data = {"clients": args.clients, "seconds": round(elapsed, 1), "requests": requests,
            "throughput_rps": round(requests / elapsed, 1), "errors": dict(errors),
            "latency_ms": {kind: percentiles(v) for kind, v in latencies.items()},
            "all_ms": percentiles(every), "indexed_before": before,
            "indexed_during": after - before, "imported": args.importing}
    markdown = (f"{args.clients} clients for {elapsed:.0f} s on loopback against `clipseek up` "
                f"(random-weight model), while a concurrent import indexed {after - before} of "
                f"{args.importing} photos ({before} indexed before): {requests} requests, "
                f"{requests / elapsed:.1f} requests/s, {sum(errors.values())} errors.\n\n"
                + markdown_table(["request", "count", "p50 ms", "p95 ms", "p99 ms"], rows))
    path = write_results("load", data, markdown, args.out)
    print(markdown)
    print(f"\nWritten to {path}")
    if errors:
        raise SystemExit(f"{sum(errors.values())} request(s) failed: {dict(errors)}")


if __name__ == "__main__":
    main()
