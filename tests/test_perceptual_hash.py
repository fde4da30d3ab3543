"""The perceptual hash on real photos: the same picture stays within the distance, others do not."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from PIL import Image

from clipseek.photo.perceptual_hash import hamming_distance, hash_file, perceptual_hash
from clipseek.settings import DEFAULT_DUPLICATE_DISTANCE
from tests.images import near_copies, real_photo

PHOTOS = ("astronaut", "chelsea", "camera", "grace_hopper")
MAX_PIXELS = 100_000_000


def _hash_of(folder: Path, name: str, data: bytes) -> str:
    path = folder / name
    path.write_bytes(data)
    return hash_file(path, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize("name", PHOTOS)
def test_a_photo_re_encoded_resized_cropped_or_brightened_stays_within_the_distance(
        tmp_path: Path, name: str) -> None:
    photo = real_photo(name)
    photo.save(tmp_path / "original.png")
    original = hash_file(tmp_path / "original.png", max_pixels=MAX_PIXELS)
    apart = {kind: hamming_distance(original, _hash_of(tmp_path, f"{kind}.jpg", data))
             for kind, data in near_copies(photo).items()}
    assert max(apart.values()) <= DEFAULT_DUPLICATE_DISTANCE, apart


def test_different_photos_and_other_parts_of_one_scene_are_beyond_the_distance() -> None:
    hashes = {name: perceptual_hash(real_photo(name)) for name in (*PHOTOS, "coffee", "rocket")}
    for a, b in itertools.combinations(hashes, 2):
        assert hamming_distance(hashes[a], hashes[b]) > DEFAULT_DUPLICATE_DISTANCE, (a, b)
    # Two photos of one scene, the second taken a third of the frame to the side and lower.
    scene = real_photo("retina")
    w, h = scene.size
    windows = [scene.crop((round(w * dx), round(h * dy), round(w * (dx + 0.65)), round(h * (dy + 0.65))))
               for dx, dy in ((0, 0), (0.3, 0), (0, 0.3), (0.3, 0.3))]
    for one, other in itertools.combinations(map(perceptual_hash, windows), 2):
        assert hamming_distance(one, other) > DEFAULT_DUPLICATE_DISTANCE


def test_a_file_stored_on_its_side_hashes_as_the_upright_picture_its_exif_shows(tmp_path: Path) -> None:
    photo = real_photo("chelsea")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to show
    sideways, upright = tmp_path / "sideways.jpg", tmp_path / "upright.jpg"
    photo.transpose(Image.Transpose.ROTATE_90).save(sideways, quality=95, exif=exif.tobytes())
    photo.save(upright, quality=95)
    turned, shown = (hash_file(path, max_pixels=MAX_PIXELS) for path in (sideways, upright))
    assert hamming_distance(turned, shown) <= 2


def test_a_hash_is_64_bits_written_as_pgvector_reads_them() -> None:
    value = perceptual_hash(real_photo("astronaut"))
    assert len(value) == 64 and set(value) <= {"0", "1"}
    assert value.count("1") == 32  # above or below the median: half of each
    with pytest.raises(ValueError, match="cannot be compared"):
        hamming_distance(value, value[:32])
