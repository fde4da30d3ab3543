"""Memory: a 100-megapixel image costs one decoded copy at a time, however often it is asked for.

Each scenario runs in a fresh process (tests/memory_probe.py), which reports how far its
peak resident memory rose above what it used just before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from clipseek.library.derivatives import DISPLAY_SIZE
from clipseek.library.register import Candidate, register_batch
from clipseek.photo.imaging import LARGE_DECODE_SLOTS
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.util.hashing import sha256_of
from tests.memory_probe import SIDE
from webapp import create_app

ROOT = Path(__file__).parents[1]
MB_PER_PIXEL = SIDE * SIDE / 2**20

# Ceilings, as growth in MB. Pillow holds a decoded image at 4 bytes a pixel for RGB and 2
# for 16-bit grey; whatever else a decode needs must fit in 100 MB. Measured (peak growth):
# RGB TIFF 396 MB (765 before decoding was reduced band by band), 16-bit PNG 231 MB (1,624).
SLACK_MB = 100
RGB_DECODE_MB = round(4 * MB_PER_PIXEL) + SLACK_MB
DEEP_DECODE_MB = round(2 * MB_PER_PIXEL) + SLACK_MB
# Six threads at once hold LARGE_DECODE_SLOTS decodes, plus what glibc's per-thread arenas
# keep after a decode: measured 790-1,040 MB (4,292 when all six decoded together).
CONCURRENT_MB = LARGE_DECODE_SLOTS * RGB_DECODE_MB + 250
# Six requests at once for one picture decode it once, to the size of its display copy:
# measured 423 MB (4,230 when each request converted the whole picture).
SERVING_MB = RGB_DECODE_MB


def _probe(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    run_env = {**(env or os.environ), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "tests.memory_probe", *args], cwd=ROOT,
                          env=run_env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    outcome: dict[str, Any] = json.loads(done.stdout)
    return outcome


@pytest.fixture(scope="module")
def large_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two files from the report: a 3.7 MB LZW TIFF and a 280 KB 16-bit PNG, 10000x10000."""
    folder = tmp_path_factory.mktemp("large")
    files = {"tiff": folder / "flat.tif", "png": folder / "deep.png"}
    for kind, path in files.items():
        subprocess.run([sys.executable, "-m", "tests.memory_probe", f"write-{kind}", str(path)],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    return files


@pytest.mark.parametrize(("kind", "ceiling"), [("tiff", RGB_DECODE_MB), ("png", DEEP_DECODE_MB)],
                         ids=["rgb-tiff", "16-bit-png"])
def test_decoding_a_100_megapixel_image_holds_one_copy_of_its_samples(
    large_images: dict[str, Path], kind: str, ceiling: int
) -> None:
    outcome = _probe("decode", str(large_images[kind]), "1")
    assert outcome["growth_mb"] < ceiling, outcome
    assert outcome["sizes"] == [[228, 228]]  # reduced to what CLIP needs


def test_concurrent_large_decodes_take_turns(large_images: dict[str, Path]) -> None:
    outcome = _probe("decode", str(large_images["tiff"]), "6")
    assert outcome["growth_mb"] < CONCURRENT_MB, outcome


def test_six_requests_for_a_large_tiff_make_one_bounded_display_copy(
    large_images: dict[str, Path], settings: Settings, db: Database
) -> None:
    with db.session() as session, ThreadPoolExecutor(1) as pool:
        report = register_batch(session, [Candidate(large_images["tiff"], source="test")],
                                max_pixels=settings.max_image_pixels, pool=pool)
        session.commit()
    [image_id] = report.new_ids
    env = {**os.environ, "CLIPSEEK_HOME": str(settings.home),
           "DATABASE_URL": settings.database_url or "", "CLIPSEEK_OFFLINE": "1"}
    outcome = _probe("serve", str(image_id), "6", env=env)
    assert outcome["growth_mb"] < SERVING_MB, outcome
    responses = outcome["responses"]
    assert isinstance(responses, list) and len(responses) == 6
    etag = f'"{sha256_of(large_images["tiff"])}-{DISPLAY_SIZE}"'
    assert {(r["status"], r["type"], r["etag"], r["cache"]) for r in responses} == {
        (200, "image/png", etag, "public, max-age=31536000, immutable")}
    [copy] = settings.thumbnails.rglob("*.png")
    with PILImage.open(copy) as picture:
        assert picture.size == (DISPLAY_SIZE, DISPLAY_SIZE)
    stamp = copy.stat().st_mtime_ns
    app = create_app({"TESTING": True}, settings=settings)
    again = app.test_client().get(f"/file/{image_id}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and copy.stat().st_mtime_ns == stamp
    again.close()
    app.extensions["clipseek"].close()
