"""Re-syncing an unchanged folder: the cost of `clipseek sync` when nothing has changed.

    python -m bench.sync                  # 10,000 and 100,000 files
    python -m bench.sync --tiny           # a few hundred: checks the script runs

The files are small copies of one 64-pixel sample JPEG, each with a few bytes of its own appended;
their rows are inserted directly, as registration is not what is measured. A re-sync only
stats the files and compares size and mtime with the rows, so it reads none of them.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from sqlalchemy import insert

from bench.common import markdown_table, scratch_home, write_results
from clipseek.context import open_database
from clipseek.library.ingest import decode_pool
from clipseek.library.samples import write_sample_photos
from clipseek.library.sync import sync_folder
from clipseek.settings import RANDOM_MODEL, Settings
from clipseek.store.db import Database
from clipseek.store.tables import Image, ImageStatus

PER_FOLDER = 500
INSERT_CHUNK = 5000


def small_jpeg(path: Path) -> bytes:
    """A 64-pixel JPEG of a sample photo: 100,000 copies fit in a few hundred MB."""
    with PILImage.open(path) as img:
        small = img.convert("RGB")
    small.thumbnail((64, 64))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def write_files(folder: Path, count: int, source: bytes) -> list[dict[str, Any]]:
    """Write `count` distinct small files in folders of PER_FOLDER; return their rows."""
    rows = []
    for n in range(count):
        sub = folder / f"{n // PER_FOLDER:04d}"
        if n % PER_FOLDER == 0:
            sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"{n:07d}.jpg"
        path.write_bytes(source + n.to_bytes(4, "big"))
        stat = path.stat()
        rows.append({"sha256": f"{count:016x}{n:048x}", "path": str(path), "original_name": path.name,
                     "source": "folder", "collection": str(sub), "file_size": stat.st_size,
                     "file_mtime": stat.st_mtime, "status": ImageStatus.INDEXED})
    return rows


def run_size(db: Database, settings: Settings, home: Path, count: int, repeat: int,
             source: bytes) -> dict[str, Any]:
    """Create `count` files and their rows, then time re-syncs of the unchanged folder."""
    folder = home / f"library-{count}"
    rows = write_files(folder, count, source)
    with db.session() as session:
        for start in range(0, len(rows), INSERT_CHUNK):
            session.execute(insert(Image), rows[start:start + INSERT_CHUNK])
        session.commit()
    seconds = []
    with decode_pool(settings) as pool:
        for _ in range(repeat):
            started = time.perf_counter()
            with db.session() as session:
                found = sync_folder(session, folder, model=settings.model,
                                    max_pixels=settings.max_image_pixels, pool=pool)
                session.commit()
            seconds.append(time.perf_counter() - started)
            assert found.unchanged == count and not found.new_ids and not found.missing_ids, found
    print(f"{count} files: {statistics.median(seconds):.3f} s median", flush=True)
    return {"files": count, "median_s": round(statistics.median(seconds), 3),
            "min_s": round(min(seconds), 3), "max_s": round(max(seconds), 3), "repeat": repeat}


def main() -> None:
    """Run every size and write bench/results/sync.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.tiny:
        args.sizes, args.repeat = "300", 2
    with scratch_home() as home:
        env = {"CLIPSEEK_HOME": str(home), "CLIPSEEK_MODEL": RANDOM_MODEL, "CLIPSEEK_OFFLINE": "1"}
        if os.environ.get("DATABASE_URL"):
            env["DATABASE_URL"] = os.environ["DATABASE_URL"]
        settings = Settings.from_env(env)
        source = small_jpeg(write_sample_photos(home / "samples")[0].path)
        db = open_database(settings)
        try:
            results = [run_size(db, settings, home, int(n), args.repeat, source)
                       for n in args.sizes.split(",")]
        finally:
            db.close()
            if not settings.database_url:
                from clipseek.store.embedded_db import EmbeddedPostgres

                EmbeddedPostgres(settings.pgdata).stop()
    md = "Re-sync of an unchanged folder (seconds; stat only, no file read):\n\n" + markdown_table(
        ["files", "median s", "min s", "max s", "runs"],
        [[f"{r['files']:,}", r["median_s"], r["min_s"], r["max_s"], r["repeat"]] for r in results])
    write_results("sync-tiny" if args.tiny else "sync", {"results": results}, md, args.out)
    print(md)


if __name__ == "__main__":
    main()
