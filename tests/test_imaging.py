"""Decoding: every Pillow mode becomes upright RGB; unusable files give a readable reason."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image

from clipseek.library.register import Candidate
from clipseek.photo.imaging import (
    CLIP_SIZE,
    ImageDecodeError,
    clip_pixels,
    fit_rgb,
    load_rgb,
    probe,
    read_rgb,
)
from tests.images import jpeg_with_orientation, photo_array, write_bad_files

LIMIT = 100_000_000


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = jpeg_with_orientation(tmp_path / "rotated.jpg", orientation=6, size=(300, 200))
    img = load_rgb(path, max_pixels=LIMIT, min_side=200)
    assert img.size == (200, 300)  # stored landscape, shown portrait


@pytest.mark.parametrize("mode", ["CMYK", "P", "RGBA", "LA", "L", "I;16", "1"])
def test_every_mode_decodes_to_rgb(tmp_path: Path, mode: str) -> None:
    rgb = Image.fromarray(photo_array(2, (120, 160)))
    if mode == "I;16":
        arr = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
        img = Image.fromarray(arr)
        path = tmp_path / "deep.png"
    else:
        img = rgb.convert(mode)
        path = tmp_path / ("image.tif" if mode == "CMYK" else "image.png")
    img.save(path)
    out = load_rgb(path, max_pixels=LIMIT, min_side=1)
    assert out.mode == "RGB" and out.size == (160, 120)
    # 16-bit data is rescaled, not clipped to white
    assert 0 < np.asarray(out).mean() < 255


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (50, 50), (255, 0, 0, 0))
    img.save(tmp_path / "clear.png")
    out = np.asarray(load_rgb(tmp_path / "clear.png", max_pixels=LIMIT, min_side=1))
    assert (out == 255).all()


def test_large_jpeg_is_decoded_at_reduced_scale(tmp_path: Path) -> None:
    Image.fromarray(photo_array(3, (3000, 4000))).save(tmp_path / "big.jpg", quality=80)
    out = load_rgb(tmp_path / "big.jpg", max_pixels=1_000_000)  # 12 MP > limit, JPEG allowed
    assert min(out.size) >= CLIP_SIZE
    assert out.size[0] <= 1000  # draft() decoded at 1/4 or 1/8 scale, not 4000 wide


def test_oversized_png_is_refused_with_a_reason(tmp_path: Path) -> None:
    Image.new("L", (2000, 2000)).save(tmp_path / "huge.png")
    with pytest.raises(ImageDecodeError, match="more than the limit"):
        probe(tmp_path / "huge.png", max_pixels=1_000_000)


def test_bad_files_give_readable_reasons(tmp_path: Path, sample_photos: list[Candidate]) -> None:
    jpeg = next(c.path for c in sample_photos if c.path.suffix == ".jpg")
    bad = write_bad_files(tmp_path, jpeg)
    for kind in ("empty", "text", "garbage"):
        with pytest.raises(ImageDecodeError) as info:
            probe(bad[kind], max_pixels=LIMIT)
        assert "Traceback" not in str(info.value)
    assert "empty" in _reason(bad["empty"])
    probe(bad["truncated"], max_pixels=LIMIT)  # the header is intact...
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        load_rgb(bad["truncated"], max_pixels=LIMIT)  # ...the pixels are not


def _reason(path: Path) -> str:
    try:
        probe(path, max_pixels=LIMIT)
    except ImageDecodeError as exc:
        return str(exc)
    raise AssertionError("expected a failure")


def test_clip_pixels_shape_and_normalisation() -> None:
    img = Image.fromarray(photo_array(4, (300, 500)))
    px = clip_pixels(img)
    assert px.shape == (3, CLIP_SIZE, CLIP_SIZE) and px.dtype == np.float32
    assert -2.5 < px.mean() < 2.5


def _large_gradient() -> Image.Image:
    # 6 megapixels: above REDUCE_ABOVE_PIXELS, cheap to make and to compress.
    return Image.radial_gradient("L").resize((3000, 2000)).convert("RGB")


def test_large_images_are_reduced_to_the_size_asked(tmp_path: Path) -> None:
    path = tmp_path / "large.png"
    _large_gradient().save(path)
    out = load_rgb(path, max_pixels=LIMIT, min_side=CLIP_SIZE)
    assert CLIP_SIZE <= min(out.size) < 2 * CLIP_SIZE and out.size[0] > out.size[1]
    with Image.open(path) as original:
        assert abs(np.asarray(out).mean() - np.asarray(original).mean()) < 1


def test_exif_orientation_is_applied_to_reduced_images(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    _large_gradient().save(tmp_path / "rotated.png", exif=exif.tobytes())
    out = load_rgb(tmp_path / "rotated.png", max_pixels=LIMIT, min_side=CLIP_SIZE)
    assert out.size[0] < out.size[1]  # stored landscape, shown portrait


def test_large_16_bit_images_are_scaled_by_their_whole_range(tmp_path: Path) -> None:
    arr = np.full((2000, 2500), 1000, dtype=np.uint16)
    arr[1000:] = 3000  # each band on its own is flat; together they span the range
    Image.fromarray(arr).save(tmp_path / "deep.png")
    out = np.asarray(load_rgb(tmp_path / "deep.png", max_pixels=LIMIT, min_side=CLIP_SIZE))
    assert out[0].max() == 0 and out[-1].min() == 255


def test_fit_rgb_fits_the_square_and_never_enlarges(tmp_path: Path) -> None:
    _large_gradient().save(tmp_path / "large.tif")
    large = fit_rgb(tmp_path / "large.tif", max_pixels=LIMIT, side=1024)
    assert large.mode == "RGB" and large.size == (1024, 683)
    Image.fromarray(photo_array(5, (200, 300))).save(tmp_path / "small.ppm")
    assert fit_rgb(tmp_path / "small.ppm", max_pixels=LIMIT, side=1024).size == (300, 200)


def test_an_oversized_stream_is_refused_with_a_reason_not_pillows_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only the header: 200 megapixels is past Pillow's own decompression-bomb limit.
    ihdr = struct.pack(">IIBBBBB", 20_000, 10_000, 8, 0, 0, 0, 0)
    chunks = [(b"IHDR", ihdr), (b"IEND", b"")]
    png = b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        for kind, data in chunks)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)  # as in a fresh process
    with pytest.raises(ImageDecodeError, match="more than the limit"):
        read_rgb(io.BytesIO(png), max_pixels=LIMIT)
