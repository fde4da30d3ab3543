"""People: faces found, how purely they group, what finding them costs, and what it costs indexing.

    python -m bench.people               # every measurement (about 15 minutes on 2 cores)
    python -m bench.people --tiny        # a few pictures: checks the script runs (minutes: it
                                         # starts the database and two workers, so not in bench-tiny)

The only real face photos the packages ship are two portraits: Grace Hopper (matplotlib)
and the astronaut Eileen Collins (scikit-image). Each comes back many times, as a library
holds the same person: mirrored or not, cropped, scaled from half to two and a half times,
tilted up to 10 degrees and re-encoded at JPEG quality 30 to 95. Pictures without faces are
the other sample photos (bar the cameraman, whose face is a real one), cropped at random.

- Detection rate: the share of face pictures in which the face is found (and how many
  faces appear in pictures that hold none).
- Grouping purity: the pictures' faces go through the real grouping (PostgreSQL, the
  HNSW index, clipseek.indexing.face_grouping) one by one in a random order, at several
  distances; purity is the share of grouped faces that belong to their person's majority,
  completeness the share of a real person's pictures in the largest group of their faces.
- Cost: CPU and wall time of one picture with a face and without, on one thread, at the
  pictures' own size (~500 px) and as 12-megapixel JPEGs.
- Indexing: images/s a warm worker indexes new pictures at with people off, against people
  on with a backlog of face pictures waiting when they arrive; the rounds alternate.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from bench.common import markdown_table, scratch_home, write_results
from clipseek.indexing.face_finder import MAX_SIDE, MIN_SCORE, FaceFinder
from clipseek.library.register import Candidate
from tests.faces import face_sources

RESULTS = Path(__file__).resolve().parent / "results" / "xeon-amx"
DISTANCES = (0.4, 0.45, 0.5, 0.55, 0.6)
# Sample photos with no face in them (the cameraman has one).
NO_FACE_LEFT_OUT = ("grace_hopper", "astronaut", "camera")


def varied(picture: Image.Image, rng: random.Random) -> Image.Image:
    """The picture as a library might hold it again: mirrored, cropped, scaled, tilted, re-encoded."""
    if rng.random() < 0.5:
        picture = ImageOps.mirror(picture)
    w, h = picture.size
    picture = picture.crop((int(w * rng.uniform(0, 0.15)), int(h * rng.uniform(0, 0.12)),
                            int(w * (1 - rng.uniform(0, 0.15))), int(h * (1 - rng.uniform(0, 0.05)))))
    scale = rng.uniform(0.5, 2.5)
    picture = picture.resize((round(picture.width * scale), round(picture.height * scale)))
    picture = picture.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=rng.randint(30, 95))
    buffer.seek(0)
    with Image.open(buffer) as img:
        return img.convert("RGB")


Pictures = list[tuple[Path, str | None]]


def write_pictures(folder: Path, per_person: int, without: int, rng: random.Random) -> Pictures:
    """Face pictures of both people and pictures without a face, as (file, person or None)."""
    from clipseek.library.samples import write_sample_photos

    folder.mkdir(parents=True, exist_ok=True)
    out: list[tuple[Path, str | None]] = []
    for person, picture in face_sources().items():
        for n in range(per_person):
            path = folder / f"{person}-{n:03d}.jpg"
            varied(picture, rng).save(path, "JPEG", quality=92)
            out.append((path, person))
    plain = [c.path for c in write_sample_photos(folder / ".samples")
             if not c.path.stem.startswith(NO_FACE_LEFT_OUT)]
    for n in range(without):
        with Image.open(plain[n % len(plain)]) as img:
            picture = img.convert("RGB")
        w, h = picture.size
        cw, ch = int(w * rng.uniform(0.5, 1)), int(h * rng.uniform(0.5, 1))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        path = folder / f"plain-{n:03d}.jpg"
        picture.crop((x, y, x + cw, y + ch)).save(path, "JPEG", quality=90)
        out.append((path, None))
    return out


def _timed(finder: FaceFinder, path: Path) -> tuple[Any, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    found = finder.find_in_file(path, max_pixels=10**9)
    return found, time.process_time() - cpu, time.perf_counter() - wall


def _ms(seconds: list[float]) -> float | None:
    return round(statistics.median(seconds) * 1000, 1) if seconds else None


def detection(finder: FaceFinder, pictures: Pictures) -> tuple[dict[str, Any], list[Any]]:
    """Faces found per picture, and the cost per picture with a face and without one."""
    found_all: list[Any] = []
    costs: dict[str, tuple[list[float], list[float]]] = {"with a face": ([], []), "without": ([], [])}
    for path, person in pictures:
        found, cpu, wall = _timed(finder, path)
        found_all.append(found)
        cpu_list, wall_list = costs["with a face" if person else "without"]
        cpu_list.append(cpu)
        wall_list.append(wall)
    with_face = [f for f, (_, p) in zip(found_all, pictures, strict=True) if p]
    without = [f for f, (_, p) in zip(found_all, pictures, strict=True) if not p]
    return {
        "face_pictures": len(with_face), "found_in": sum(1 for f in with_face if f),
        "detection_rate": round(sum(1 for f in with_face if f) / max(1, len(with_face)), 3),
        "extra_faces_in_face_pictures": sum(max(0, len(f) - 1) for f in with_face),
        "pictures_without_faces": len(without), "faces_invented": sum(len(f) for f in without),
        "ms_per_picture": {k: {"cpu": _ms(c), "wall": _ms(w)} for k, (c, w) in costs.items()},
    }, found_all


def twelve_megapixel_cost(finder: FaceFinder, folder: Path, pictures: Pictures,
                          count: int) -> dict[str, Any]:
    """CPU and wall ms per 12-megapixel JPEG (4,000 x 3,000), with a face and without."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    for kind, chosen in (("with a face", [p for p, who in pictures if who]),
                         ("without", [p for p, who in pictures if not who])):
        cpu, wall = [], []
        for n, path in enumerate(chosen[:count]):
            with Image.open(path) as img:
                big = ImageOps.pad(img.convert("RGB"), (4000, 3000), color=(90, 110, 130))
            target = folder / f"big-{kind[:4]}-{n}.jpg"
            big.save(target, "JPEG", quality=90)
            _, c, w = _timed(finder, target)
            cpu.append(c)
            wall.append(w)
        out[kind] = {"cpu": _ms(cpu), "wall": _ms(wall)}
    return out


def grouping(env: dict[str, str], pictures: Pictures, found: list[Any],
             rng: random.Random) -> dict[str, Any]:
    """Purity, people made and faces left ungrouped at each distance, faces fed in a random order."""
    from sqlalchemy import delete, select, text

    from clipseek.context import Context
    from clipseek.indexing.face_finding import record_faces
    from clipseek.library.ingest import decode_pool, register_candidates
    from clipseek.settings import Settings
    from clipseek.store.tables import Face, Person
    from clipseek.store.tables import Image as ImageRow

    settings = Settings.from_env(env)
    ctx = Context(settings)
    try:
        with ctx.db.engine.begin() as conn:
            conn.execute(text("TRUNCATE images RESTART IDENTITY CASCADE"))
        with decode_pool(settings) as pool:
            register_candidates(ctx.db, [Candidate(path=p, source="folder") for p, _ in pictures],
                                settings=settings, pool=pool)
        with ctx.db.session() as session:
            stored = session.execute(select(ImageRow.id, ImageRow.path))
            ids = {Path(path).name: image_id for image_id, path in stored}
        who = {ids[p.name]: person for p, person in pictures}
        order = list(range(len(pictures)))
        rng.shuffle(order)
        results: dict[str, Any] = {}
        for distance in DISTANCES:
            with ctx.db.session() as session:
                session.execute(delete(Face))
                session.execute(delete(Person))
                session.execute(text("UPDATE images SET faces_state = NULL"))
                session.commit()
                started = time.perf_counter()
                for n in order:
                    record_faces(session, ids[pictures[n][0].name], found[n], distance=distance)
                    session.commit()
                per_face_ms = (time.perf_counter() - started) * 1000 / max(1, sum(len(f) for f in found))
                rows = session.execute(select(Face.person_id, Face.image_id)).all()
            people: dict[int, list[str | None]] = {}
            for person_id, image_id in rows:
                if person_id is not None:
                    people.setdefault(person_id, []).append(who[image_id])
            grouped = sum(len(v) for v in people.values())
            majority = sum(max(v.count(p) for p in set(v)) for v in people.values())
            results[str(distance)] = {
                "people": len(people), "faces": len(rows), "ungrouped": len(rows) - grouped,
                "purity": round(majority / grouped, 3) if grouped else None,
                # Faces of the biggest person of each real person, over that person's faces.
                "completeness": {name: round(max((v.count(name) for v in people.values()), default=0)
                                             / max(1, sum(1 for i in who.values() if i == name)), 3)
                                 for name in sorted({p for p in who.values() if p})},
                "grouping_ms_per_face": round(per_face_ms, 2)}
        return results
    finally:
        ctx.close()


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "clipseek", "worker", "--no-beat",
                             "--loglevel", "WARNING"], env=env)


def indexing_beside_faces(home: Path, env: dict[str, str], backlog: list[Path], *, new: int,
                          rounds: int) -> dict[str, Any]:
    """Images/s a warm worker indexes new pictures at: people off, against people on with a
    backlog of face pictures waiting for their faces when the new pictures arrive."""
    from sqlalchemy import func, select, text

    from bench.make_images import make_photos
    from clipseek.context import Context
    from clipseek.indexing.face_finding import queue_for_faces
    from clipseek.indexing.queueing import wait_until_indexed
    from clipseek.library.ingest import ingest_inline, ingest_queued
    from clipseek.settings import Settings
    from clipseek.store.tables import Image as ImageRow

    paths = make_photos(home / "photos", 1 + new)
    warm, fresh = paths[0], paths[1:]
    rates: dict[str, list[float]] = {"people off": [], "people on, faces waiting": []}
    for round_ in range(rounds):
        for mode in list(rates) if round_ % 2 == 0 else list(rates)[::-1]:
            on = mode != "people off"
            mode_env = {**env, "CLIPSEEK_PEOPLE": "1" if on else "0"}
            settings = Settings.from_env(mode_env)
            ctx = Context(settings)
            with ctx.db.engine.begin() as conn:
                conn.execute(text("TRUNCATE images, people RESTART IDENTITY CASCADE"))
            worker = _worker(mode_env)
            try:
                first = ingest_queued(ctx.db, [Candidate(path=warm, source="folder")], settings=settings,
                                      enqueue=ctx.enqueue)
                assert wait_until_indexed(ctx.db, first.registered.new_ids, model=settings.model,
                                          timeout_s=1800, poll_s=0.05) == 0
                if on:
                    ingest_inline(ctx.db, ctx.encoder, [Candidate(path=p, source="folder") for p in backlog],
                                  settings=settings)
                    with ctx.db.session() as session:
                        waiting = list(session.scalars(select(ImageRow.id)))
                        queue_for_faces(session, waiting, enqueue=ctx.enqueue_faces)
                    while True:  # the worker is finding faces when the new pictures arrive
                        with ctx.db.session() as session:
                            done = session.scalar(select(func.count()).select_from(ImageRow)
                                                  .where(ImageRow.faces_state.is_not(None)))
                        if done and done > 1:
                            break
                        time.sleep(0.05)
                started = time.perf_counter()
                summary = ingest_queued(ctx.db, [Candidate(path=p, source="folder") for p in fresh],
                                        settings=settings, enqueue=ctx.enqueue)
                assert wait_until_indexed(ctx.db, summary.registered.new_ids, model=settings.model,
                                          timeout_s=3600, poll_s=0.05) == 0
                rates[mode].append(len(fresh) / (time.perf_counter() - started))
            finally:
                worker.terminate()
                worker.wait(timeout=60)
                ctx.close()
        print(f"round {round_ + 1}: " + ", ".join(f"{m} {r[-1]:.2f}/s" for m, r in rates.items()), flush=True)
    medians = {mode: round(statistics.median(r), 2) for mode, r in rates.items()}
    return {"new_pictures": len(fresh), "backlog": len(backlog), "rounds": rounds, "images_per_s": medians,
            "all_rounds": {m: [round(x, 2) for x in r] for m, r in rates.items()},
            "ratio_on_to_off": round(medians["people on, faces waiting"] / medians["people off"], 3)}


def _markdown(results: dict[str, Any]) -> str:
    md = ""
    if "detection" in results:
        md += _finding_markdown(results)
    if "indexing" in results:
        md += ("\n\n" if md else "") + _indexing_markdown(results["indexing"])
    return md


def _finding_markdown(results: dict[str, Any]) -> str:
    d = results["detection"]
    large = results["twelve_megapixels"]
    return (f"Faces found in {d['found_in']} of {d['face_pictures']} face pictures (detection rate "
            f"{d['detection_rate']:.1%}; {d['extra_faces_in_face_pictures']} extra faces); "
            f"{d['faces_invented']} faces found in {d['pictures_without_faces']} pictures without one.\n\n"
            + markdown_table(["picture", "CPU ms", "wall ms", "12 MP: CPU ms", "12 MP: wall ms"],
                             [[k, v["cpu"], v["wall"], large[k]["cpu"], large[k]["wall"]]
                              for k, v in d["ms_per_picture"].items()])
            + "\n\nGrouping, faces fed one by one in a random order:\n\n"
            + markdown_table(["distance", "people", "faces", "ungrouped", "purity", "completeness",
                              "ms per face"],
                             [[k, g["people"], g["faces"], g["ungrouped"], g["purity"],
                               ", ".join(f"{n} {c}" for n, c in g["completeness"].items()),
                               g["grouping_ms_per_face"]]
                              for k, g in results["grouping"].items()]))


def _indexing_markdown(ix: dict[str, Any]) -> str:
    return (f"Indexing beside finding faces, one warm worker, median of {ix['rounds']} alternating rounds "
            f"of {ix['new_pictures']} new pictures (backlog: {ix['backlog']} face pictures waiting):\n\n"
            + markdown_table(["worker", "images indexed per s", "every round"],
                             [[m, r, ", ".join(map(str, ix["all_rounds"][m]))]
                              for m, r in ix["images_per_s"].items()])
            + f"\n\nIndexing with people on runs at {ix['ratio_on_to_off']:.1%} of its rate with people off.")


def main() -> None:
    """Measure and write bench/results/xeon-amx/people.{json,md} (or into --out)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-person", type=int, default=40)
    parser.add_argument("--without", type=int, default=40)
    parser.add_argument("--large", type=int, default=6, help="12-megapixel pictures timed of each kind")
    parser.add_argument("--new", type=int, default=128, help="pictures indexed per round beside faces")
    parser.add_argument("--backlog", type=int, default=32, help="face pictures waiting meanwhile")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-indexing", action="store_true", help="leave out the worker measurement")
    parser.add_argument("--only-indexing", action="store_true", help="only the worker measurement")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.tiny:
        args.per_person, args.without, args.large, args.new, args.backlog, args.rounds = 3, 3, 1, 4, 2, 1
    rng = random.Random(11)
    results: dict[str, Any] = {"config": {k: v for k, v in vars(args).items() if k != "out"},
                               "finder": {"max_side": MAX_SIDE, "min_score": MIN_SCORE, "threads": 1}}
    with scratch_home() as home:
        from clipseek.settings import RANDOM_MODEL

        # One precision, named: `auto` would first measure every precision in each new home
        # (minutes), and the comparison is of people on against off, not of precisions.
        env = {**os.environ, "CLIPSEEK_HOME": str(home), "CLIPSEEK_MODEL": RANDOM_MODEL,
               "CLIPSEEK_OFFLINE": "1", "CLIPSEEK_OCR": "0",
               "CLIPSEEK_PRECISION": os.environ.get("CLIPSEEK_PRECISION", "fp32"),
               "CLIPSEEK_BATCH_SIZE": "4" if args.tiny else "32"}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        try:
            pictures = write_pictures(home / "faces", args.per_person, args.without, rng)
            finder = FaceFinder()
            finder.load()
            if not args.only_indexing:
                print("finding faces…", flush=True)
                results["detection"], found = detection(finder, pictures)
                results["twelve_megapixels"] = twelve_megapixel_cost(finder, home / "large", pictures,
                                                                     args.large)
                print("grouping…", flush=True)
                results["grouping"] = grouping(env, pictures, found, rng)
            if not args.no_indexing:
                print("indexing beside finding faces…", flush=True)
                backlog = [p for p, who in pictures if who][:args.backlog]
                results["indexing"] = indexing_beside_faces(home, env, backlog, new=args.new,
                                                            rounds=args.rounds)
        finally:
            from clipseek.indexing.embedded_redis import EmbeddedRedis
            from clipseek.store.embedded_db import EmbeddedPostgres

            EmbeddedRedis(home / "redis").stop()
            EmbeddedPostgres(home / "pgdata").stop()
    md = _markdown(results)
    name = "people-tiny" if args.tiny else "people-indexing" if args.only_indexing else "people"
    write_results(name, results, md, args.out or RESULTS)
    print(md)


if __name__ == "__main__":
    main()
