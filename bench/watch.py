"""Landing to searchable: how long a photo put into a watched folder takes to be found by search.

    python -m bench.watch --out bench/results/epyc-avx512-bf16   # 20 slow, 200 steady, a burst of 50
    python -m bench.watch --tiny                                 # a few of each: checks the script runs

Runs ClipSeek as a user does, in a scratch home with the random-weight model: `clipseek
worker` and `clipseek watch FOLDER` as separate processes, on the embedded PostgreSQL and
Redis. Photos (640x480-ish crops of the sample photos, bench.make_images) are written next
to the folder and renamed into it, in three phases: a trickle slower than the watcher's
quiet time, a steady stream faster than it, and a burst all at once. Each photo is timed
from its rename to the moment its row is indexed with an embedding of the model, so that
search returns it (polled every 20 ms); each phase ends when all of its photos are.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import exists, select

from bench.common import markdown_table, measured_precision, scratch_home, shared_model_cache, write_results
from bench.make_images import make_photos
from clipseek.context import open_database
from clipseek.library.watch import MAX_WAIT_S, QUIET_S
from clipseek.search.run import count_searchable
from clipseek.settings import RANDOM_MODEL, Settings
from clipseek.store.db import Database
from clipseek.store.tables import Embedding, Image, ImageStatus

POLL_S = 0.02
PHASE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Phase:
    """Photos landing `every_s` seconds apart (0: all at once)."""

    name: str
    count: int
    every_s: float


FULL = (Phase("trickle", 20, 3.0), Phase("steady", 200, 0.5), Phase("burst", 50, 0.0))
TINY = (Phase("trickle", 2, 3.0), Phase("steady", 4, 0.5), Phase("burst", 3, 0.0))


def _cli(env: dict[str, str], *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "clipseek", *args], env=env, capture_output=True,
                            text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise SystemExit(f"clipseek {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


def _searchable(db: Database, model: str, paths: list[str]) -> set[str]:
    """Which of `paths` are indexed with an embedding of `model`, so that search returns them."""
    with db.session() as session:
        return set(session.scalars(select(Image.path).where(
            Image.path.in_(paths), Image.status == ImageStatus.INDEXED,
            exists().where(Embedding.image_id == Image.id, Embedding.model == model))))


def _land(source: Path, folder: Path) -> tuple[str, float]:
    """Rename a finished photo into the watched folder; the moment it lands."""
    target = folder / source.name
    source.rename(target)
    return str(target), time.monotonic()


def run_phase(db: Database, model: str, phase: Phase, photos: list[Path], folder: Path) -> list[float]:
    """Land the phase's photos at its pace; return each one's seconds from landing to searchable."""
    landed: dict[str, float] = {}
    found: dict[str, float] = {}
    started = time.monotonic()
    for n, photo in enumerate(photos):
        due = started + n * phase.every_s
        while time.monotonic() < due:  # poll while waiting, so early arrivals are timed well
            now = time.monotonic()
            found.update(dict.fromkeys(_searchable(db, model, [p for p in landed if p not in found]), now))
            time.sleep(min(POLL_S, max(0.0, due - time.monotonic())))
        path, at = _land(photo, folder)
        landed[path] = at
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    while len(found) < len(landed):
        if time.monotonic() > deadline:
            raise SystemExit(f"{phase.name}: {len(landed) - len(found)} photo(s) never became searchable")
        now = time.monotonic()
        found.update(dict.fromkeys(_searchable(db, model, [p for p in landed if p not in found]), now))
        time.sleep(POLL_S)
    return [found[path] - landed[path] for path in landed]


def summary(phase: Phase, seconds: list[float]) -> dict[str, Any]:
    """p50, p90 and max of one phase's latencies, with its pace."""
    ordered = sorted(seconds)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    rate = round(1 / phase.every_s, 2) if phase.every_s else None
    return {"phase": phase.name, "photos": phase.count, "every_s": phase.every_s, "per_s": rate,
            "p50_s": round(statistics.median(ordered), 2), "p90_s": round(p90, 2),
            "max_s": round(ordered[-1], 2), "min_s": round(ordered[0], 2)}


def main() -> None:
    """Run the phases against a worker and a watcher, and write watch.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a few photos per phase (under a minute)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    args = parser.parse_args()
    phases = TINY if args.tiny else FULL
    began = time.monotonic()
    with scratch_home() as home:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CLIPSEEK_", "DATABASE_URL", "REDIS_URL"))}
        env.update({"CLIPSEEK_HOME": str(home), "CLIPSEEK_MODEL": RANDOM_MODEL, "CLIPSEEK_OFFLINE": "1",
                    **shared_model_cache()})
        if args.tiny:  # it checks that the script runs and times nothing: no minute of measuring
            env["CLIPSEEK_PRECISION"] = "fp32"
        settings = Settings.from_env(env)
        if not args.tiny:
            # Measured before the worker starts, so it does not index in fp32 for now and switch mid-run.
            measured_precision(settings)
        staging, folder = home / "staging", home / "watched"
        photos = make_photos(staging, 1 + sum(p.count for p in phases), seed=3)
        folder.mkdir()
        photos[0].rename(folder / photos[0].name)  # the warm-up: the worker has loaded the model
        _cli(env, "status")  # starts the embedded PostgreSQL and Redis once, before two processes race
        print(f"photos written, services up: {time.monotonic() - began:.1f} s", flush=True)
        logs = {name: open(home / f"{name}.log", "w") for name in ("worker", "watch")}  # noqa: SIM115
        processes = {
            "worker": subprocess.Popen([sys.executable, "-m", "clipseek", "worker", "--no-beat"], env=env,
                                       stdout=logs["worker"], stderr=subprocess.STDOUT),
            "watch": subprocess.Popen([sys.executable, "-m", "clipseek", "watch", str(folder)], env=env,
                                      stdout=logs["watch"], stderr=subprocess.STDOUT),
        }
        db = open_database(settings)
        results = []
        try:
            warm = str(folder / photos[0].name)
            deadline = time.monotonic() + PHASE_TIMEOUT_S
            while not _searchable(db, settings.model, [warm]):
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes.values()):
                    raise SystemExit("the first photo was never indexed:\n"
                                     + "".join((home / f"{n}.log").read_text()[-2000:] for n in logs))
                time.sleep(0.2)
            print(f"worker and watcher ready: {time.monotonic() - began:.1f} s", flush=True)
            rest = photos[1:]
            for phase in phases:
                batch, rest = rest[:phase.count], rest[phase.count:]
                result = summary(phase, run_phase(db, settings.model, phase, batch, folder))
                print(result, flush=True)
                results.append(result)
            with db.session() as session:
                searchable = count_searchable(session, settings.model)
        finally:
            db.close()
            processes["watch"].send_signal(signal.SIGINT)
            processes["worker"].send_signal(signal.SIGTERM)
            for process in processes.values():
                try:
                    process.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    process.kill()
            for log in logs.values():
                log.close()
            _cli(env, "stop")
    print(f"stopped: {time.monotonic() - began:.1f} s", flush=True)
    if searchable != len(photos):
        raise SystemExit(f"search finds {searchable} of the {len(photos)} photos")
    rows = [[r["phase"], r["photos"], f"every {r['every_s']} s ({r['per_s']}/s)" if r["every_s"]
             else "all at once", r["p50_s"], r["p90_s"], r["max_s"]] for r in results]
    markdown = (f"From a photo renamed into a folder that `clipseek watch` keeps in sync to it being "
                f"indexed, with a `clipseek worker` running (random-weight ViT-B/32; the watcher "
                f"syncs after {QUIET_S:g} s of quiet, or {MAX_WAIT_S:g} s after the first unsynced "
                f"change; {searchable} photos searchable at the end), seconds:\n\n"
                + markdown_table(["phase", "photos", "pace", "p50 s", "p90 s", "max s"], rows))
    data = {"quiet_s": QUIET_S, "max_wait_s": MAX_WAIT_S, "phases": results}
    path = write_results("watch-tiny" if args.tiny else "watch", data, markdown, args.out)
    print(markdown)
    print(f"\nWritten to {path}")


if __name__ == "__main__":
    main()
