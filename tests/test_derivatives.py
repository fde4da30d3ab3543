"""Derived pictures: made once, at a bounded size, written whole or not at all."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from clipseek.library.derivatives import DISPLAY_SIZE, display_copy_path, ensure_display_copy
from clipseek.photo.imaging import ImageDecodeError
from tests.images import photo_array

LIMIT = 100_000_000
SHA = "ab" * 32


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_display_copy_is_made_once_within_the_display_size(tmp_path: Path) -> None:
    source = tmp_path / "wide.tif"
    Image.linear_gradient("L").resize((3 * DISPLAY_SIZE, DISPLAY_SIZE)).save(source)
    cache = tmp_path / "cache"
    copy = ensure_display_copy(cache, sha256=SHA, source=source, max_pixels=LIMIT)
    assert copy == display_copy_path(cache, SHA) and _files(cache) == [copy]
    with Image.open(copy) as picture:
        assert picture.format == "PNG" and picture.mode == "RGB"
        assert picture.size[0] == DISPLAY_SIZE and abs(picture.size[1] - DISPLAY_SIZE / 3) < 1
    stamp = copy.stat().st_mtime_ns
    assert ensure_display_copy(cache, sha256=SHA, source=source, max_pixels=LIMIT) == copy
    assert copy.stat().st_mtime_ns == stamp


def test_concurrent_requests_share_one_copy(tmp_path: Path) -> None:
    source = tmp_path / "small.ppm"
    Image.fromarray(photo_array(6, (200, 300))).save(source)
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(6) as pool:
        copies = set(pool.map(lambda _: ensure_display_copy(cache, sha256=SHA, source=source,
                                                            max_pixels=LIMIT), range(6)))
    assert copies == {display_copy_path(cache, SHA)} and _files(cache) == list(copies)
    with Image.open(copies.pop()) as picture:
        assert picture.size == (300, 200)  # never enlarged


def test_an_unreadable_original_leaves_nothing_in_the_cache(tmp_path: Path) -> None:
    source = tmp_path / "notes.tif"
    source.write_text("not a picture\n")
    cache = tmp_path / "cache"
    with pytest.raises(ImageDecodeError, match="not an image format"):
        ensure_display_copy(cache, sha256=SHA, source=source, max_pixels=LIMIT)
    assert _files(tmp_path) == [source]
