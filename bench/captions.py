"""What deriving captions costs: cleaning file names, reading EXIF/XMP text, registering folders.

    python -m bench.captions                 # 1,000 photos
    python -m bench.captions --tiny          # 60: checks the script runs

Photos are 480x640 JPEGs of the sample pictures; half carry an EXIF description, Windows
title and keywords and an XMP packet with a meaningful name, half are plain with camera
counter names (IMG_0042.jpg), as a phone leaves them. Registration runs through the one
insert path (`register_candidates`) on the embedded PostgreSQL, hashing and probing included.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from sqlalchemy import func, select

from bench.common import markdown_table, scratch_home, write_results
from clipseek.context import open_database
from clipseek.library.ingest import decode_pool, register_candidates
from clipseek.library.register import Candidate
from clipseek.library.samples import write_sample_photos
from clipseek.photo.caption_text import caption_from_filename
from clipseek.photo.imaging import probe_with_facts
from clipseek.photo.metadata import read_text
from clipseek.settings import RANDOM_MODEL, Settings
from clipseek.store.tables import Caption

RESULTS = Path(__file__).resolve().parent / "results" / "epyc-avx512-bf16"
NAMES = ["beach-sunset-2024.jpg", "IMG_0042.JPG", "PXL_20240101_123456789.jpg", "Strand_Münster.jpg",
         "Screenshot_2024-01-01-12-00-00.png", "3f2a9c1e-8b7d-4e6f-a5c3-1d2e3f4a5b6c.jpg",
         "birthdayPartyWithGrandma (3).jpg", "DSC01234.jpg", "holiday_IMG_0042.jpg", "image (3).jpeg"]
XMP = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
       '<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Photo {n}</rdf:li></rdf:Alt></dc:title>'
       '<dc:subject><rdf:Bag><rdf:li>beach</rdf:li><rdf:li>family</rdf:li></rdf:Bag></dc:subject>'
       "</rdf:Description></rdf:RDF></x:xmpmeta>")


def write_photos(folder: Path, samples: list[Path], count: int) -> list[Path]:
    """`count` distinct JPEGs, every other one with EXIF and XMP text and a meaningful name."""
    folder.mkdir(parents=True)
    paths = []
    for n in range(count):
        with PILImage.open(samples[n % len(samples)]) as img:
            picture = img.convert("RGB").resize((640, 480)).rotate(n % 360)
        # A block coloured by the number keeps every file's content, and so its hash, distinct.
        picture.paste((n % 256, n // 256 % 256, 128), (0, 0, 16, 16))
        if n % 2:
            paths.append(folder / f"IMG_{n:04d}.jpg")
            picture.save(paths[-1], quality=85)
            continue
        exif = PILImage.Exif()
        exif[270] = f"A walk on the beach, day {n}"
        exif[0x9C9B] = f"Holiday {n}".encode("utf-16-le") + b"\0\0"
        exif[0x9C9E] = "beach;sea;family".encode("utf-16-le") + b"\0\0"
        paths.append(folder / f"beach-walk-{n}.jpg")
        picture.save(paths[-1], quality=85, exif=exif.tobytes(), xmp=XMP.format(n=n).encode())
    return paths


def per_call_us(call: Any, items: list[Any], repeat: int) -> float:
    """Median over `repeat` rounds of the mean microseconds per item."""
    rounds = []
    for _ in range(repeat):
        started = time.perf_counter()
        for item in items:
            call(item)
        rounds.append((time.perf_counter() - started) / len(items) * 1e6)
    return round(statistics.median(rounds), 2)


def header_costs(paths: list[Path], repeat: int) -> dict[str, float]:
    """Microseconds per file: reading the caption text from an opened header, and the whole probe."""

    def text_only(path: Path) -> None:
        with PILImage.open(path) as img:
            read_text(img)

    def opened(path: Path) -> None:
        with PILImage.open(path) as img:
            img.getexif()

    def probe(path: Path) -> None:
        probe_with_facts(path, max_pixels=100_000_000)

    with_text, plain = paths[0::2], paths[1::2]
    return {"open_with_text_us": per_call_us(opened, with_text, repeat),
            "open_and_read_text_with_text_us": per_call_us(text_only, with_text, repeat),
            "open_plain_us": per_call_us(opened, plain, repeat),
            "open_and_read_text_plain_us": per_call_us(text_only, plain, repeat),
            "probe_with_facts_with_text_us": per_call_us(probe, with_text, repeat),
            "probe_with_facts_plain_us": per_call_us(probe, plain, repeat)}


def registration(settings: Settings, paths: list[Path]) -> dict[str, Any]:
    """Register every photo once (hash, probe, rows, derived captions) and count the captions."""
    db = open_database(settings)
    try:
        with decode_pool(settings) as pool:
            started = time.perf_counter()
            report = register_candidates(db, [Candidate(path=p, source="folder") for p in paths],
                                         settings=settings, pool=pool)
            seconds = time.perf_counter() - started
        with db.session() as session:
            captions = int(session.scalar(select(func.count()).select_from(Caption)) or 0)
    finally:
        db.close()
    assert len(report.new_ids) == len(paths), report
    return {"files": len(paths), "seconds": round(seconds, 3),
            "files_per_s": round(len(paths) / seconds, 1), "caption_rows": captions}


def main() -> None:
    """Measure and write bench/results/epyc-avx512-bf16/captions.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.tiny:
        args.photos, args.repeat = 60, 2
    names_us = per_call_us(caption_from_filename, NAMES * 1000, args.repeat)
    with scratch_home() as home:
        env = {"CLIPSEEK_HOME": str(home), "CLIPSEEK_MODEL": RANDOM_MODEL, "CLIPSEEK_OFFLINE": "1"}
        if os.environ.get("DATABASE_URL"):
            env["DATABASE_URL"] = os.environ["DATABASE_URL"]
        settings = Settings.from_env(env)
        samples = [c.path for c in write_sample_photos(home / "samples") if c.path.suffix == ".jpg"]
        paths = write_photos(home / "photos", samples, args.photos)
        headers = header_costs(paths, args.repeat)
        try:
            registered = registration(settings, paths)
        finally:
            if not settings.database_url:
                from clipseek.store.embedded_db import EmbeddedPostgres

                EmbeddedPostgres(settings.pgdata).stop()
    results = {"file_name_us": names_us, **headers, "registration": registered}
    md = ("Per file, microseconds (median of the per-round means):\n\n" + markdown_table(
        ["step", "photo with EXIF + XMP text", "plain camera photo"],
        [["clean the file name (`caption_from_filename`)", names_us, names_us],
         ["open + EXIF only", headers["open_with_text_us"], headers["open_plain_us"]],
         ["open + EXIF/XMP caption text (`read_text`)", headers["open_and_read_text_with_text_us"],
          headers["open_and_read_text_plain_us"]],
         ["whole probe at registration (`probe_with_facts`)", headers["probe_with_facts_with_text_us"],
          headers["probe_with_facts_plain_us"]]])
        + f"\n\nRegistering {registered['files']:,} photos (half with text) through `register_candidates`: "
        f"{registered['seconds']} s, {registered['files_per_s']} files/s, "
        f"{registered['caption_rows']:,} caption rows.")
    write_results("captions-tiny" if args.tiny else "captions", {"results": results}, md,
                  args.out or RESULTS)
    print(md)


if __name__ == "__main__":
    main()
