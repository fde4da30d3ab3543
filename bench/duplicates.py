"""Near-duplicates: precision and recall of the groups, and the time to group 100,000 hashes.

    python -m bench.duplicates                # the real photos; 100,000 synthetic hashes
    python -m bench.duplicates --tiny         # 6 photos, 3,000 hashes: checks the script runs

Quality: each real photo (scikit-image's, matplotlib's Grace Hopper and present) is written
as a file, then again in re-encodes, resizes, small crops and light edits; beside them,
distinct photos of similar scenes: overlapping windows of one large photo, shifted by 30%
of its width or height, each with the same variants of its own. Every file is hashed as a
worker hashes it (`decode_for_clip`), the rows go into PostgreSQL, and the groups come
from `find_duplicate_groups` (the pairs kept when the hashes were stored, then
union-find) at each distance. Precision and recall count pairs of files: a pair is right
when both are the same photo.

Speed: synthetic hashes shaped like the real ones (64 bits, 32 of them set), one in
twenty with one to three near copies (2-8 bits moved); pairing them all once (one HNSW walk
per picture, as `clipseek reindex --hashes` and the scheduler pair pictures hashed before),
then grouping all of them from the kept pairs against the walk per picture that listing
did before pairs were kept, in the same run, and one picture's look-alike query as an
upload asks it.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageEnhance
from sqlalchemy import delete, func, insert, select

from bench.common import markdown_table, scratch_home, write_results
from clipseek.context import open_database
from clipseek.indexing.encoding import decode_for_clip
from clipseek.indexing.hash_pairs import PAIR_DISTANCE, neighbour_pairs, walk_settings
from clipseek.library.duplicates import DuplicateGroup, find_duplicate_groups, groups_from_pairs, look_alikes
from clipseek.photo.perceptual_hash import hamming_distance
from clipseek.settings import DEFAULT_DUPLICATE_DISTANCE, RANDOM_MODEL, Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image, ImageStatus, NearDuplicatePair
from clipseek.upkeep.reindexing import backfill_pairs

RESULTS = Path(__file__).resolve().parent / "results" / "xeon-amx"
# Photographs only: the drawings (colour wheel, logo, horse silhouette) are left out.
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                  "retina", "camera", "coins", "moon", "page", "text", "grass", "gravel", "brick", "clock",
                  "cell")
# Large enough to cut into overlapping windows that are distinct photos of one scene.
SCENES = ("retina", "hubble_deep_field", "motorcycle", "coffee", "rocket", "grace_hopper")
WINDOW = 0.65
SHIFT = 0.30
DISTANCES = range(0, PAIR_DISTANCE + 1)
INSERT_CHUNK = 5000


def real_photos() -> dict[str, PILImage.Image]:
    """The real photos, by name, as RGB images."""
    import matplotlib
    import skimage.data

    photos = {}
    for name in SKIMAGE_PHOTOS:
        array = getattr(skimage.data, name)()
        photos[name] = PILImage.fromarray(array).convert("RGB")
    left = skimage.data.stereo_motorcycle()[0]  # type: ignore[no-untyped-call]
    photos["motorcycle"] = PILImage.fromarray(left).convert("RGB")
    sample_data = Path(matplotlib.get_data_path()) / "sample_data"
    for name, file in (("grace_hopper", "grace_hopper.jpg"), ("present", "Minduka_Present_Blue_Pack.png")):
        with PILImage.open(sample_data / file) as img:
            photos[name] = img.convert("RGB")
    return photos


def scene_windows(photos: dict[str, PILImage.Image]) -> dict[str, PILImage.Image]:
    """Overlapping windows of the large photos: the same scene, shifted substantially."""
    windows = {}
    for name in (n for n in SCENES if n in photos):
        img = photos[name]
        w, h = img.size
        ww, wh = round(w * WINDOW), round(h * WINDOW)
        for dx, dy in ((0, 0), (SHIFT, 0), (0, SHIFT), (SHIFT, SHIFT)):
            left, top = round(w * dx), round(h * dy)
            windows[f"{name}@{dx:.2f},{dy:.2f}"] = img.crop((left, top, left + ww, top + wh))
    return windows


def _encoded(img: PILImage.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def _crop(img: PILImage.Image, left: float, top: float, right: float, bottom: float) -> PILImage.Image:
    w, h = img.size
    return img.crop((round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom))))


def _watermark(img: PILImage.Image) -> PILImage.Image:
    marked = img.copy()
    draw = ImageDraw.Draw(marked)
    w, h = marked.size
    draw.text((w * 0.05, h * 0.88), "© 2024 holiday", fill=(255, 255, 255))
    return marked


def _exif_rotated(img: PILImage.Image) -> bytes:
    """Stored turned on its side, with EXIF telling viewers to turn it back (as cameras do)."""
    exif = PILImage.Exif()
    exif[0x0112] = 6
    return _encoded(img.transpose(PILImage.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif.tobytes())


def _scaled(img: PILImage.Image, divisor: int) -> PILImage.Image:
    return img.resize((img.width // divisor, img.height // divisor), PILImage.Resampling.LANCZOS)


def _jpeg(img: PILImage.Image) -> bytes:
    return _encoded(img, "JPEG", quality=90)


VARIANTS: dict[str, Callable[[PILImage.Image], bytes]] = {
    "JPEG q85": lambda img: _encoded(img, "JPEG", quality=85),
    "JPEG q60": lambda img: _encoded(img, "JPEG", quality=60),
    "WebP q75": lambda img: _encoded(img, "WEBP", quality=75),
    "PNG": lambda img: _encoded(img, "PNG"),
    "resized 50%": lambda img: _jpeg(_scaled(img, 2)),
    "resized 25%": lambda img: _jpeg(_scaled(img, 4)),
    "crop 5% (2.5% each side)": lambda img: _jpeg(_crop(img, 0.025, 0.025, 0.025, 0.025)),
    "crop 5% off one edge": lambda img: _jpeg(_crop(img, 0, 0, 0.05, 0)),
    "crop 10% (5% each side)": lambda img: _jpeg(_crop(img, 0.05, 0.05, 0.05, 0.05)),
    "brightness +10%": lambda img: _jpeg(ImageEnhance.Brightness(img).enhance(1.1)),
    "contrast +15%": lambda img: _jpeg(ImageEnhance.Contrast(img).enhance(1.15)),
    "saturation +20%": lambda img: _jpeg(ImageEnhance.Color(img).enhance(1.2)),
    "watermark text": lambda img: _jpeg(_watermark(img)),
    "EXIF-rotated file": _exif_rotated,
}
SUFFIX = {"WebP q75": ".webp", "PNG": ".png"}


def write_files(folder: Path, originals: dict[str, PILImage.Image]) -> list[tuple[Path, str, str]]:
    """Each original as a PNG, then its variants: (path, original's name, variant kind)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for n, (name, img) in enumerate(originals.items()):
        path = folder / f"{n:03d}-original.png"
        img.save(path)
        files.append((path, name, "original"))
        for m, (kind, make) in enumerate(VARIANTS.items()):
            path = folder / f"{n:03d}-{m:02d}{SUFFIX.get(kind, '.jpg')}"
            path.write_bytes(make(img))
            files.append((path, name, kind))
    return files


def _rows(hashes: list[str], start: int = 0) -> list[dict[str, Any]]:
    return [{"sha256": f"{start + n:064x}", "path": f"/bench/{start + n}.jpg", "original_name": f"{n}.jpg",
             "source": "folder", "file_size": 1000 + n, "width": 640, "height": 480, "format": "JPEG",
             "status": ImageStatus.INDEXED, "phash": h} for n, h in enumerate(hashes)]


def _insert(db: Database, hashes: list[str]) -> list[int]:
    """The hashes as the only pictures, not paired yet (as after an upgrade)."""
    with db.session() as session:
        session.execute(delete(Image))
        ids: list[int] = []
        for start in range(0, len(hashes), INSERT_CHUNK):
            ids += session.scalars(insert(Image).returning(Image.id, sort_by_parameter_order=True),
                                   _rows(hashes[start:start + INSERT_CHUNK], start)).all()
        session.commit()
    return ids


def _pair(db: Database) -> int:
    """Look up the pairs of every picture, in batches as the scheduler and reindex do."""
    with db.session() as session:
        return backfill_pairs(session)


def groups_by_walk(db: Database, distance: int) -> list[DuplicateGroup]:
    """The groups as listing found them before pairs were kept: one HNSW walk per picture."""
    with db.session() as session:
        walk_settings(session)
        pairs = [(a, b) for a, b, _ in session.execute(neighbour_pairs(None, distance=distance))]
        return groups_from_pairs(session, pairs)


def pair_scores(truth: dict[int, str], groups: list[list[int]]) -> dict[str, float | int]:
    """Precision and recall over pairs of pictures, and how many true groups came out whole."""
    predicted = {frozenset(p) for g in groups for p in itertools.combinations(g, 2)}
    by_photo: dict[str, list[int]] = {}
    for image_id, photo in truth.items():
        by_photo.setdefault(photo, []).append(image_id)
    actual = {frozenset(p) for g in by_photo.values() for p in itertools.combinations(g, 2)}
    right = len(predicted & actual)
    whole = sum(sorted(g) in [sorted(x) for x in by_photo.values()] for g in groups)
    return {"precision": round(right / len(predicted), 4) if predicted else 1.0,
            "recall": round(right / len(actual), 4), "groups": len(groups), "exact_groups": whole,
            "photos": len(by_photo), "wrong_pairs": len(predicted - actual)}


def quality(db: Database, home: Path, *, default: int, photo_count: int | None = None) -> dict[str, Any]:
    """Hash every file as a worker does, then group at each distance and score the groups."""
    photos = dict(list(real_photos().items())[:photo_count])
    originals = {**photos, **scene_windows(photos)}
    files = write_files(home / "duplicates", originals)
    hashes = []
    for path, _, _ in files:
        _, _, error, phash = decode_for_clip(0, str(path), 100_000_000)
        assert phash is not None, (path, error)
        hashes.append(phash)
    ids = _insert(db, hashes)
    _pair(db)
    truth = {i: photo for i, (_, photo, _) in zip(ids, files, strict=True)}
    sweep = []
    for distance in DISTANCES:
        with db.session() as session:
            groups = [[m.id for m in g.members] for g in find_duplicate_groups(session, distance=distance)]
        sweep.append({"distance": distance, **pair_scores(truth, groups)})
        if distance == default:
            at_default = groups
    first = {photo: i for i, photo in reversed(truth.items())}
    original_hash = {photo: hashes[ids.index(i)] for photo, i in first.items()}
    grouped_with = {i: frozenset(g) for g in at_default for i in g}
    kinds = []
    for kind in VARIANTS:
        members = [(i, photo) for i, (_, photo, k) in zip(ids, files, strict=True) if k == kind]
        bits = [hamming_distance(original_hash[photo], hashes[ids.index(i)]) for i, photo in members]
        found = sum(first[photo] in grouped_with.get(i, ()) for i, photo in members)
        kinds.append({"variant": kind, "grouped_with_original": round(found / len(members), 3),
                      "bits_median": statistics.median(bits), "bits_max": max(bits)})
    distinct = [hamming_distance(original_hash[a], original_hash[b])
                for a, b in itertools.combinations(original_hash, 2)]
    scene = [hamming_distance(original_hash[a], original_hash[b])
             for a, b in itertools.combinations([p for p in original_hash if "@" in p], 2)
             if a.split("@")[0] == b.split("@")[0]]
    stereo = photos_stereo_distance()
    return {"files": len(files), "photos": len(originals), "real_photos": len(photos),
            "scenes": sum(n in photos for n in SCENES), "variants": list(VARIANTS), "sweep": sweep,
            "by_variant": kinds, "distinct_photos_min_bits": min(distinct),
            "scene_windows_min_bits": min(scene), "stereo_pair_bits": stereo}


def photos_stereo_distance() -> int:
    """Bits between the two views of scikit-image's stereo pair (taken side by side at once)."""
    import skimage.data

    from clipseek.photo.perceptual_hash import perceptual_hash

    left, right, _ = skimage.data.stereo_motorcycle()  # type: ignore[no-untyped-call]
    return hamming_distance(perceptual_hash(PILImage.fromarray(left)),
                            perceptual_hash(PILImage.fromarray(right)))


def synthetic_hashes(count: int, seed: int = 0) -> tuple[list[str], int]:
    """`count` balanced 64-bit hashes; every 20th starts a cluster of 2-4 near copies. Returns
    the hashes and how many clusters were planted."""
    rng = np.random.default_rng(seed)
    bits = np.zeros((count, 64), dtype=np.uint8)
    for row in bits:
        row[rng.choice(64, 32, replace=False)] = 1
    planted = 0
    for start in range(0, count - 4, 20):
        planted += 1
        for offset in range(1, int(rng.integers(2, 5))):
            copy = bits[start].copy()
            moved = int(rng.integers(1, 5))  # 1-4 ones move: 2-8 bits differ
            copy[rng.choice(np.flatnonzero(copy == 1), moved, replace=False)] = 0
            copy[rng.choice(np.flatnonzero(bits[start] == 0), moved, replace=False)] = 1
            bits[start + offset] = copy
    return ["".join(map(str, row)) for row in bits], planted


def _timed(run: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    found = run()
    return found, time.perf_counter() - started


def speed(db: Database, count: int, *, default: int, lookups: int) -> dict[str, Any]:
    """Insert `count` synthetic hashes (the HNSW index kept up) and pair them once; then group
    them all from the kept pairs and by a walk per picture, in turns, and time both."""
    hashes, planted = synthetic_hashes(count)
    ids, insert_s = _timed(lambda: _insert(db, hashes))
    load_before = os.getloadavg()[0]
    paired, pair_s = _timed(lambda: _pair(db))
    stored_s, walk_s = [], []
    # In turns, the stored pairs first and last, so that a change of load falls on both.
    for _ in range(2):
        groups, seconds = _timed(lambda: _fresh_groups(db, default))
        stored_s.append(seconds)
        walked, seconds = _timed(lambda: groups_by_walk(db, default))
        walk_s.append(seconds)
    groups, seconds = _timed(lambda: _fresh_groups(db, default))
    stored_s.append(seconds)
    same = sorted(sorted(m.id for m in g.members) for g in groups) == sorted(
        sorted(m.id for m in g.members) for g in walked)
    position = {image_id: n for n, image_id in enumerate(ids)}
    starts = set(range(0, count - 4, 20))
    found_whole = sum(1 for g in groups if min(position[m.id] for m in g.members) in starts)
    picks = ids[:: max(1, len(ids) // lookups)][:lookups]
    lookup_ms = []
    with db.session() as session:
        for image_id in picks:
            _, seconds = _timed(lambda: look_alikes(session, [image_id], distance=default))  # noqa: B023
            lookup_ms.append(seconds * 1000)
            session.rollback()
    stored, walk = statistics.median(stored_s), statistics.median(walk_s)
    return {"hashes": count, "planted_clusters": planted, "groups_found": len(groups),
            "groups_by_walk": len(walked), "same_groups_as_the_walk": same,
            "groups_starting_at_a_planted_cluster": found_whole, "pictures_paired": paired,
            "pairs_in_table": _count_pairs(db),
            "insert_s": round(insert_s, 1), "pair_all_once_s": round(pair_s, 1),
            "pair_ms_per_picture": round(pair_s * 1000 / count, 3),
            "group_from_pairs_s": round(stored, 3), "group_by_walk_s": round(walk, 2),
            "group_from_pairs_runs_s": [round(x, 3) for x in stored_s],
            "group_by_walk_runs_s": [round(x, 2) for x in walk_s],
            "walk_over_pairs": round(walk / stored, 1),
            "look_alike_ms_p50": round(statistics.median(lookup_ms), 2),
            "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2)}


def _fresh_groups(db: Database, distance: int) -> list[DuplicateGroup]:
    with db.session() as session:
        return find_duplicate_groups(session, distance=distance)


def _count_pairs(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(NearDuplicatePair)) or 0)


def markdown(found: dict[str, Any], timing: dict[str, Any], default: int) -> str:
    """The tables: the distance sweep, each variant at the default, and the speed."""
    q = found
    sweep = markdown_table(
        ["distance (bits)", "precision", "recall", "groups", "true groups found whole", "wrong pairs"],
        [[f"**{s['distance']}** (default)" if s["distance"] == default else s["distance"], s["precision"],
          s["recall"], s["groups"], f"{s['exact_groups']} of {s['photos']}", s["wrong_pairs"]]
         for s in q["sweep"]])
    kinds = markdown_table(["variant", "grouped with its original", "bits from it: median", "max"],
                           [[k["variant"], k["grouped_with_original"], k["bits_median"], k["bits_max"]]
                            for k in q["by_variant"]])
    t = timing
    real = q["real_photos"]
    return (f"{q['photos']} photos ({real} real photos and {q['photos'] - real} windows of "
            f"{q['scenes']} of them, {WINDOW:.0%} of each side, shifted by {SHIFT:.0%}), each with "
            f"{len(q['variants'])} variants: {q['files']} files, grouped through PostgreSQL's HNSW "
            "index.\n\n" + sweep + f"\n\nAt the default distance ({default} bits), each variant:\n\n"
            + kinds + f"\n\nClosest two distinct photos: {q['distinct_photos_min_bits']} bits; closest "
            f"two windows of one scene: {q['scene_windows_min_bits']} bits; the two views of "
            f"scikit-image's stereo pair (same moment, cameras side by side): {q['stereo_pair_bits']} "
            f"bits.\n\n{t['hashes']:,} synthetic hashes ({t['planted_clusters']:,} planted clusters), "
            f"inserted with the index kept up in {t['insert_s']} s, then paired once (a walk per picture, "
            f"in batches, as `clipseek reindex --hashes` and the scheduler do): {t['pair_all_once_s']} s "
            f"({t['pair_ms_per_picture']} ms per picture), {t['pairs_in_table']:,} pairs kept (up to "
            f"{PAIR_DISTANCE} bits).\n\n" + markdown_table(
                ["grouping all of them", "seconds (median)", "runs", "groups"],
                [["from the kept pairs", f"**{t['group_from_pairs_s']}**", t["group_from_pairs_runs_s"],
                  f"{t['groups_found']:,}"],
                 ["a walk per picture (before pairs were kept)", f"**{t['group_by_walk_s']}**",
                  t["group_by_walk_runs_s"], f"{t['groups_by_walk']:,}"]])
            + f"\n\nThe kept pairs group **{t['walk_over_pairs']}x** faster than the walk, in the same run; "
            f"same groups: {'yes' if t['same_groups_as_the_walk'] else 'no'}; "
            f"{t['groups_starting_at_a_planted_cluster']:,} groups at a planted cluster. One picture's "
            f"look-alike query (an upload's): p50 {t['look_alike_ms_p50']} ms. Load average "
            f"{t['load_average_before']} before, {t['load_average_after']} after.")


def main() -> None:
    """Measure and write bench/results/xeon-amx/duplicates.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hashes", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=50)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.tiny:
        args.hashes, args.lookups, photo_count = 3000, 10, 6
    else:
        photo_count = None
    default = DEFAULT_DUPLICATE_DISTANCE
    with scratch_home() as home:
        env = {"CLIPSEEK_HOME": str(home), "CLIPSEEK_MODEL": RANDOM_MODEL, "CLIPSEEK_OFFLINE": "1"}
        if os.environ.get("DATABASE_URL"):
            env["DATABASE_URL"] = os.environ["DATABASE_URL"]
        settings = Settings.from_env(env)
        db = open_database(settings)
        try:
            found = quality(db, home, default=default, photo_count=photo_count)
            print(markdown_table(["distance", "precision", "recall"],
                                 [[s["distance"], s["precision"], s["recall"]] for s in found["sweep"]]),
                  flush=True)
            timing = speed(db, args.hashes, default=default, lookups=args.lookups)
        finally:
            db.close()
            if not settings.database_url:
                from clipseek.store.embedded_db import EmbeddedPostgres

                EmbeddedPostgres(settings.pgdata).stop()
    md = markdown(found, timing, default)
    write_results("duplicates-tiny" if args.tiny else "duplicates",
                  {"default_distance": default, "quality": found, "speed": timing}, md, args.out or RESULTS)
    print(md)


if __name__ == "__main__":
    main()
