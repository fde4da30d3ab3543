"""Does `auto`'s probe pick the same precision when other programs load the cores?

    python -m bench.probe                # 5 probes per clock, calm and with 4 busy processes
    python -m bench.probe --tiny         # checks the script runs

`CLIPSEEK_PRECISION=auto` times each precision this machine can run on batches of 32 (8 real
photos, 4 times over) and keeps the fastest accurate one. This runs that probe repeatedly,
timed two ways: by the wall clock with PyTorch's usual threads (how `auto` timed before),
and by `auto`'s clock now (one thread, CPU time). It does so on a calm machine and again
while busy processes that this script starts hold the cores, as a neighbour's test suite
would, and counts how often each clock names the precision the calm machine's probes
named. Random ViT-B/32 weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import atexit
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import markdown_table, write_results


def _spin() -> None:
    while True:
        pass


@contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """`count` processes that spin on the CPU until the block ends (ended by their own handles)."""
    workers = [multiprocessing.get_context("spawn").Process(target=_spin, daemon=True) for _ in range(count)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)  # let the scheduler spread them over the cores
        yield
    finally:
        for worker in workers:
            worker.terminate()
            worker.join()


def probe_once(passes: dict[str, Callable[[], object]], clock_name: str, photos: int,
               budget_s: float) -> dict[str, float]:
    """Images/s per precision from one probe timed by `clock_name` ('wall' or 'cpu')."""
    from clipseek.clip.probe import probe_clock, time_round_robin

    if clock_name == "wall":
        seconds = time_round_robin(passes, time.perf_counter, budget_s)
    else:
        with probe_clock("cpu") as clock:
            seconds = time_round_robin(passes, clock, budget_s)
    return {p: round(photos / s, 2) for p, s in seconds.items()}


def main() -> None:
    """Probe calm and loaded with both clocks; write probe.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="probes per clock and condition")
    parser.add_argument("--busy", type=int, default=2 * (os.cpu_count() or 1),
                        help="busy processes in the loaded condition (default: twice the cores)")
    parser.add_argument("--tiny", action="store_true", help="a quick run that checks the script works")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    args = parser.parse_args()

    from clipseek.clip.checkpoint import LoadPolicy
    from clipseek.clip.network import build_network, embed_pixels, runnable_precisions
    from clipseek.clip.probe import PROBE_BATCH, PROBE_BUDGET_S, precision_copies, probe_batch, probe_pixels

    photos, budget_s = (2, 0.0) if args.tiny else (PROBE_BATCH, PROBE_BUDGET_S)
    repeats = 1 if args.tiny else args.repeats
    precisions = runnable_precisions("cpu")
    if args.tiny:  # the tiny form checks the script; its export (15-40 s) is checked by bench.indexing's
        precisions = tuple(p for p in precisions if p != "onnx-int8")
    model, _ = build_network(LoadPolicy(arch="ViT-B-32", random=True), "cpu")
    pixels = probe_batch(probe_pixels())[:photos]  # as `auto` times
    # onnx-int8 (where installed) is exported into a folder of this run's, kept while it runs.
    onnx_folder = Path(tempfile.mkdtemp(prefix="clipseek-probe-", dir="/tmp"))
    atexit.register(shutil.rmtree, onnx_folder, ignore_errors=True)
    candidates = precision_copies(model, precisions, onnx_folder=onnx_folder)
    passes: dict[str, Callable[[], object]] = {p: partial(embed_pixels, c, pixels, "cpu")
                                               for p, c in candidates.items()}
    for run in passes.values():  # first calls allocate and pick kernels
        run()

    runs: dict[str, list[dict[str, float]]] = {}
    for condition, busy in (("calm", 0), (f"{args.busy} busy processes", args.busy)):
        with busy_processes(busy):
            for _ in range(repeats):
                for clock_name in ("wall", "cpu"):  # taking turns, so both see the same load
                    runs.setdefault(f"{condition}|{clock_name}", []).append(
                        probe_once(passes, clock_name, photos, budget_s))
            print(f"{condition}: load average {os.getloadavg()[0]:.1f} at the end", flush=True)

    def winner(rates: dict[str, float]) -> str:
        return max(rates, key=lambda p: rates[p])

    reference = Counter(winner(r) for key, rs in runs.items() if key.startswith("calm|") for r in rs)
    expected = reference.most_common(1)[0][0]
    rows: list[list[Any]] = []
    summary: dict[str, Any] = {}
    for key, rs in runs.items():
        condition, clock_name = key.split("|")
        picks = Counter(winner(r) for r in rs)
        medians = {p: round(statistics.median(r[p] for r in rs), 1) for p in precisions}
        summary[key] = {"runs": rs, "picks": dict(picks), "median_images_per_s": medians}
        rows.append([condition, "wall clock, all threads" if clock_name == "wall" else
                     "CPU time, one thread (auto now)"]
                    + [f"{medians[p]} ({min(r[p] for r in rs)}-{max(r[p] for r in rs)})" for p in precisions]
                    + [", ".join(f"{p} {n}" for p, n in picks.most_common()),
                       f"{picks[expected]}/{len(rs)}"])
    table = markdown_table(["condition", "clock"] + [f"{p} images/s, median (range)" for p in precisions]
                           + ["picked", f"picked {expected} (the calm choice)"], rows)
    md = (f"`auto`'s probe (batches of {photos} real photos, ViT-B/32 random weights, budget {budget_s} s), "
          f"{repeats} probes per clock and condition, the two clocks taking turns; rates by the "
          f"CPU-time clock are per core:\n\n{table}")
    write_results("probe-tiny" if args.tiny else "probe",
                  {"photos": photos, "budget_s": budget_s, "repeats": repeats, "busy": args.busy,
                   "calm_choice": expected, "results": summary}, md, args.out)
    print(md)


if __name__ == "__main__":
    main()
