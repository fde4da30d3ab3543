"""Words in pictures: what the reader finds, what it invents, what it costs, and what it costs indexing.

    python -m bench.ocr                  # every measurement (about 10 minutes on 2 cores)
    python -m bench.ocr --tiny           # a few pictures: checks the script runs

The pictures are made from the real photos the packages ship (scikit-image's, matplotlib's
grace_hopper.jpg, and scikit-learn's china.jpg and flower.jpg, from bench/requirements.txt):

- signs: words printed on the photos in several fonts, sizes, colours and angles, on a
  board or straight on the photo; some set tight (the gap between words narrower than a
  letter, as signs often are: what makes the recognizer run words together);
- screenshots: lines of interface text on a flat background at screen sizes;
- photos without text: the photos themselves and crops of them.

Word recall is the share of the printed words found among the stored words (lower case,
letters and digits), precision the share of stored words that were printed, both with and
without the split of run-together words (clipseek.photo.word_splitting). The cost is the
wall time of one reading on one thread; the indexing part times a real worker indexing new
pictures while a backlog of reading waits beside it, against the same worker with reading off.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

from bench.common import markdown_table, scratch_home, write_results
from bench.ocr_pictures import (
    Sign,
    large_signs,
    plain_pictures,
    screenshots,
    sign_pictures,
    source_photos,
)
from clipseek.indexing.text_reader import MAX_SIDE, TextReader
from clipseek.library.register import Candidate

RESULTS = Path(__file__).resolve().parent / "results" / "xeon-amx"
_WORD = re.compile(r"[a-z0-9]+")


def _median_ms(seconds: list[float]) -> float | None:
    return round(statistics.median(seconds) * 1000, 1) if seconds else None


def words_of(text: str) -> list[str]:
    """Lower-case words of letters and digits, as a search compares them."""
    return _WORD.findall(text.lower())


def read_timed(reader: TextReader, picture: Image.Image) -> tuple[list[str], list[str], float, float]:
    """Stored words with and without the split, and the CPU and wall seconds one reading took.

    The reader runs on one thread, so its CPU time is its cost on one core whatever else
    the machine runs; the wall time says what it took here, beside the others' work.
    """
    scale = 1.0
    if max(picture.size) > reader.max_side:
        shrunk = picture.copy()
        shrunk.thumbnail((reader.max_side, reader.max_side))
        scale, picture = max(picture.size) / max(shrunk.size), shrunk
    cpu, wall = time.process_time(), time.perf_counter()
    found = reader.read(picture, scale=scale)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return (words_of(" ".join(line.text for line in found.lines)),
            words_of(" ".join(line.raw for line in found.lines)), cpu, wall)


def score(truths: list[str], stored: list[list[str]]) -> dict[str, float]:
    """Word recall and precision over pictures (each word counted once per picture)."""
    hit = wanted = kept = right = 0
    for truth, words in zip(truths, stored, strict=True):
        expected, got = set(words_of(truth)), set(words)
        hit, wanted = hit + len(expected & got), wanted + len(expected)
        right, kept = right + len(got & expected), kept + len(got)
    return {"recall": round(hit / max(1, wanted), 3), "precision": round(right / max(1, kept), 3)}


def quality(reader: TextReader, signs: list[Sign], screens: list[tuple[Image.Image, str]],
            plain: list[Image.Image]) -> dict[str, Any]:
    """Recall, precision, invented text and cost, per kind of picture."""
    out: dict[str, Any] = {}
    kinds = {"signs": [(p, t) for p, t, _ in signs],
             "signs set tight": [(p, t) for p, t, f in signs if f["tight"]],
             "signs upside down": [(p, t) for p, t, f in signs if f["angle"] == 180],
             "screenshots": screens}
    for name, items in kinds.items():
        readings = [read_timed(reader, picture) for picture, _ in items]
        truths = [truth for _, truth in items]
        out[name] = {"pictures": len(items), "split": score(truths, [r[0] for r in readings]),
                     "as_recognized": score(truths, [r[1] for r in readings]),
                     "cpu_ms_median": _median_ms([r[2] for r in readings]),
                     "wall_ms_median": _median_ms([r[3] for r in readings])}
    plain_readings = [read_timed(reader, picture) for picture in plain]
    out["without text"] = {"pictures": len(plain),
                           "invented_share": round(sum(1 for r in plain_readings if r[0])
                                                   / max(1, len(plain)), 3),
                           "invented_words": sorted({w for r in plain_readings for w in r[0]})[:20],
                           "cpu_ms_median": _median_ms([r[2] for r in plain_readings]),
                           "wall_ms_median": _median_ms([r[3] for r in plain_readings])}
    return out


def variants(signs: list[Sign], large: list[Sign]) -> dict[str, Any]:
    """The direction classifier on and off, and the size pictures are shrunk to before reading."""
    out: dict[str, Any] = {}
    for use_cls in (True, False):
        reader = TextReader(use_cls=use_cls)
        reader.load()
        readings = [read_timed(reader, picture) for picture, _, _ in signs]
        upside = [(r, t) for r, (_, t, f) in zip(readings, signs, strict=True) if f["angle"] == 180]
        out[f"cls={'on' if use_cls else 'off'}"] = {
            "recall": score([t for _, t, _ in signs], [r[0] for r in readings])["recall"],
            "recall_upside_down": score([t for _, t in upside], [r[0] for r, _ in upside])["recall"],
            "cpu_ms_median": _median_ms([r[2] for r in readings]),
                     "wall_ms_median": _median_ms([r[3] for r in readings])}
    for side in (960, 1280, 1600, 2000):
        reader = TextReader(max_side=side)
        reader.load()
        readings = [read_timed(reader, picture) for picture, _, _ in large]
        out[f"12 MP shrunk to {side}"] = {
            "recall": score([t for _, t, _ in large], [r[0] for r in readings])["recall"],
            "cpu_ms_median": _median_ms([r[2] for r in readings]),
                     "wall_ms_median": _median_ms([r[3] for r in readings])}
    return out


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "clipseek", "worker", "--no-beat",
                             "--loglevel", "WARNING"], env=env)


def indexing_beside_reading(home: Path, env: dict[str, str], *, new: int, backlog: int,
                            rounds: int, read_window_s: float = 30.0) -> dict[str, Any]:
    """Images/s a warm worker indexes new pictures at: reading off, against reading on with a
    backlog of pictures waiting to be read when they arrive; the rounds alternate."""
    from sqlalchemy import text

    from bench.make_images import make_photos
    from clipseek.context import Context
    from clipseek.indexing.queueing import Enqueue, wait_until_indexed
    from clipseek.indexing.reading import reading_counts, unread, wait_until_read
    from clipseek.library.ingest import ingest_inline, ingest_queued
    from clipseek.settings import Settings
    from clipseek.upkeep.reindexing import reread_words

    paths = make_photos(home / "photos", 1 + backlog + new)
    warm, old, fresh = paths[0], paths[1:1 + backlog], paths[1 + backlog:]
    rates: dict[str, list[float]] = {"reading off": [], "reading on, backlog waiting": []}
    firsts: dict[str, list[float]] = {mode: [] for mode in rates}
    # From the first index task's sending to its first picture indexed: what a reading in
    # progress makes indexing wait, without the registration before it.
    handovers: dict[str, list[float]] = {mode: [] for mode in rates}
    read_rates: list[float] = []
    for round_ in range(rounds):
        # Each mode goes first in every other round: a load that rises or falls during the
        # run, or a database warmed by the round before, favours neither.
        for mode in list(rates) if round_ % 2 == 0 else list(rates)[::-1]:
            on = mode != "reading off"
            settings = Settings.from_env({**env, "CLIPSEEK_OCR": "1" if on else "0"})
            ctx = Context(settings)
            with ctx.db.engine.begin() as conn:
                conn.execute(text("TRUNCATE images RESTART IDENTITY CASCADE"))
            worker = _worker({**env, "CLIPSEEK_OCR": "1" if on else "0"})
            try:
                first = ingest_queued(ctx.db, [Candidate(path=warm, source="folder")], settings=settings,
                                      enqueue=ctx.enqueue)
                assert wait_until_indexed(ctx.db, first.registered.new_ids, model=settings.model,
                                          timeout_s=600, poll_s=0.05) == 0
                if on:  # the models load on the first reading, before the measurement
                    assert wait_until_read(ctx.db, first.registered.new_ids, timeout_s=600, poll_s=0.05) == 0
                    ingest_inline(ctx.db, ctx.encoder, [Candidate(path=p, source="folder") for p in old],
                                  settings=settings)
                    with ctx.db.session() as session:
                        waiting = reread_words(session, enqueue=ctx.enqueue_reading)
                    while True:  # the worker is reading when the new pictures arrive
                        with ctx.db.session() as session:
                            if reading_counts(session).read > 1:
                                break
                        time.sleep(0.05)
                sent_at: list[float] = []

                def enqueue(ids: list[int], model: str, sent: list[float] = sent_at,
                            send: Enqueue = ctx.enqueue) -> None:
                    sent.append(time.perf_counter())
                    send(ids, model)

                started = time.perf_counter()
                summary = ingest_queued(ctx.db, [Candidate(path=p, source="folder") for p in fresh],
                                        settings=settings, enqueue=enqueue)
                first_at: list[float] = []

                def progress(done: int, seen: list[float] = first_at) -> None:
                    if done and not seen:
                        seen.append(time.perf_counter())

                assert wait_until_indexed(ctx.db, summary.registered.new_ids, model=settings.model,
                                          timeout_s=3600, poll_s=0.05, on_progress=progress) == 0
                rates[mode].append(len(fresh) / (time.perf_counter() - started))
                firsts[mode].append(first_at[0] - started)
                handovers[mode].append(first_at[0] - sent_at[0])
                if on:  # reading goes on after indexing: its rate over a while
                    to_read = waiting + summary.registered.new_ids
                    with ctx.db.session() as session:
                        before = unread(session, to_read)
                    started = time.perf_counter()
                    left = wait_until_read(ctx.db, to_read, timeout_s=read_window_s, poll_s=0.1)
                    read_rates.append((before - left) / (time.perf_counter() - started))
            finally:
                worker.terminate()
                worker.wait(timeout=60)
                ctx.close()
        print(f"round {round_ + 1}: " + ", ".join(f"{m} {r[-1]:.2f}/s" for m, r in rates.items()), flush=True)
    medians = {mode: round(statistics.median(r), 2) for mode, r in rates.items()}
    return {"new_pictures": len(fresh), "backlog": len(old), "rounds": rounds,
            "images_per_s": medians, "all_rounds": {m: [round(x, 2) for x in r] for m, r in rates.items()},
            "slowdown": round(1 - medians["reading on, backlog waiting"] / medians["reading off"], 3),
            "first_indexed_s": {m: round(statistics.median(f), 2) for m, f in firsts.items()},
            "first_indexed_after_sent_s": {m: round(statistics.median(f), 2) for m, f in handovers.items()},
            "reading_after_indexing_per_s": round(statistics.median(read_rates), 2)}


def _markdown(results: dict[str, Any]) -> str:
    if "quality" not in results:
        return _indexing_markdown(results["indexing"])
    q = results["quality"]
    rows = [[name, r["pictures"], r["split"]["recall"], r["as_recognized"]["recall"], r["split"]["precision"],
             r["as_recognized"]["precision"], r["cpu_ms_median"], r["wall_ms_median"]]
            for name, r in q.items() if name != "without text"]
    plain = q["without text"]
    md = ("Stored words against printed words (one thread; medians of CPU and wall time per picture; "
          "recall and precision with the split of "
          "run-together words, and as the recognizer returned them):\n\n" + markdown_table(
              ["pictures", "count", "recall (split)", "recall (as recognized)", "precision (split)",
               "precision (as recognized)", "CPU ms per picture", "wall ms"], rows)
          + f"\n\nPhotos without text: {plain['pictures']}, text invented on {plain['invented_share']:.1%} "
          f"(words: {', '.join(plain['invented_words']) or 'none'}); {plain['cpu_ms_median']} CPU ms per "
          f"picture, {plain['wall_ms_median']} ms wall (medians).\n\n" + markdown_table(
              ["variant", "recall", "recall upside down", "CPU ms per picture", "wall ms"],
              [[name, v["recall"], v.get("recall_upside_down", "-"), v["cpu_ms_median"], v["wall_ms_median"]]
               for name, v in results["variants"].items()]))
    if "indexing" in results:
        md += "\n\n" + _indexing_markdown(results["indexing"])
    return md


def _indexing_markdown(ix: dict[str, Any]) -> str:
    return (f"Indexing beside reading, one warm worker, median of {ix['rounds']} alternating "
            f"rounds of {ix['new_pictures']} new pictures (backlog: {ix['backlog']} pictures waiting "
            "to be read when they arrive):\n\n" + markdown_table(
                ["worker", "images indexed per s", "every round"],
                [[m, r, ", ".join(map(str, ix["all_rounds"][m]))] for m, r in ix["images_per_s"].items()])
            + f"\n\nSlowdown of indexing: {ix['slowdown']:.1%}. First new picture indexed after "
            + ", ".join(f"{s} s ({m})" for m, s in ix["first_indexed_s"].items())
            + " (medians); after its index task was sent: "
            + ", ".join(f"{s} s ({m})" for m, s in ix["first_indexed_after_sent_s"].items())
            + f". Reading afterwards: {ix['reading_after_indexing_per_s']} pictures/s.")


def main() -> None:
    """Measure and write bench/results/xeon-amx/ocr.{json,md} (or into --out)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signs", type=int, default=80)
    parser.add_argument("--screens", type=int, default=12)
    parser.add_argument("--plain", type=int, default=60)
    parser.add_argument("--large", type=int, default=16)
    parser.add_argument("--new", type=int, default=256, help="pictures indexed per round beside reading")
    parser.add_argument("--backlog", type=int, default=32, help="pictures waiting to be read meanwhile")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-indexing", action="store_true", help="leave out the worker measurement")
    parser.add_argument("--only-indexing", action="store_true", help="only the worker measurement")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.tiny:
        args.signs, args.screens, args.plain, args.large = 8, 2, 4, 2
        args.new, args.backlog, args.rounds = 4, 4, 1
    rng = random.Random(7)
    results: dict[str, Any] = {"config": {k: v for k, v in vars(args).items() if k != "out"},
                               "reader": {"max_side": MAX_SIDE, "threads": 1}}
    with scratch_home() as home:
        photos = source_photos(home / "samples")
        results["source_photos"] = len(photos)
        if not args.only_indexing:
            signs = sign_pictures(photos, args.signs, rng)
            reader = TextReader()
            reader.load()
            print("reading signs, screenshots and photos without text…", flush=True)
            results["quality"] = quality(reader, signs, screenshots(args.screens, rng),
                                         plain_pictures(photos, args.plain, rng))
            print("the direction classifier and the size pictures are read at…", flush=True)
            results["variants"] = variants(signs, large_signs(photos, args.large, rng))
        if not args.no_indexing:
            from clipseek.settings import RANDOM_MODEL

            env = {**os.environ, "CLIPSEEK_HOME": str(home), "CLIPSEEK_MODEL": RANDOM_MODEL,
                   "CLIPSEEK_OFFLINE": "1", "CLIPSEEK_BATCH_SIZE": "4" if args.tiny else "32"}
            env.pop("DATABASE_URL", None)
            env.pop("REDIS_URL", None)
            try:
                print("indexing beside reading…", flush=True)
                results["indexing"] = indexing_beside_reading(
                    home, env, new=args.new, backlog=args.backlog, rounds=args.rounds,
                    read_window_s=5 if args.tiny else 30)
            finally:
                from clipseek.indexing.embedded_redis import EmbeddedRedis
                from clipseek.store.embedded_db import EmbeddedPostgres

                EmbeddedRedis(home / "redis").stop()
                EmbeddedPostgres(home / "pgdata").stop()
    md = _markdown(results)
    name = "ocr-tiny" if args.tiny else "ocr-indexing" if args.only_indexing else "ocr"
    write_results(name, results, md, args.out or RESULTS)
    print(md)


if __name__ == "__main__":
    main()
