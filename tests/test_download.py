"""Downloads survive broken connections, resume, and reject damaged files."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from clipseek.errors import DownloadError
from clipseek.library.coco import download_coco
from clipseek.library.register import Candidate
from clipseek.util.download import download_file
from tests.httpserver import Files, serve


def test_broken_connections_are_resumed_with_range_requests(tmp_path: Path) -> None:
    payload = os.urandom(3_000_000)
    files = Files({"/big.bin": payload}, breaks_left=2)
    with serve(files) as base:
        out = download_file(f"{base}/big.bin", tmp_path / "big.bin",
                            expected_sha256=hashlib.sha256(payload).hexdigest(), backoff=0.01)
    assert out.read_bytes() == payload
    assert any("bytes=" in r for r in files.requests)  # it resumed, not restarted
    assert not (tmp_path / "big.bin.part").exists()


def test_checksum_mismatch_deletes_the_file(tmp_path: Path) -> None:
    with serve(Files({"/f": b"hello"})) as base, pytest.raises(DownloadError, match="corrupt"):
        download_file(f"{base}/f", tmp_path / "f", expected_sha256="0" * 64)
    assert not (tmp_path / "f").exists() and not (tmp_path / "f.part").exists()


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with serve(Files({})) as base, pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{base}/nothing.zip", tmp_path / "x")


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_download_coco_survives_a_broken_connection(tmp_path: Path, sample_photos: list[Candidate]) -> None:
    photos = {f"val2017/{n:012d}.jpg": c.path.read_bytes()
              for n, c in enumerate(sample_photos[:3], start=1)}
    captions = {"images": [{"id": 1, "file_name": "000000000001.jpg"}],
                "annotations": [{"id": 1, "image_id": 1, "caption": "a test"}]}
    annotations = _zip({"annotations/captions_val2017.json": json.dumps(captions).encode()})
    files = Files({"/zips/val2017.zip": _zip(photos),
                   "/annotations/annotations_trainval2017.zip": annotations}, breaks_left=2)
    with serve(files) as base:
        images, notes = download_coco("val2017", tmp_path / "coco", base_url=base)
    assert sorted(p.name for p in images.iterdir()) == [Path(k).name for k in sorted(photos)]
    assert json.loads(notes.read_text()) == captions
    assert not list((tmp_path / "coco").glob("*.zip"))  # archives removed after extraction
    # a second run finds everything done and downloads nothing
    files.requests.clear()
    with serve(files) as base:
        download_coco("val2017", tmp_path / "coco", base_url=base)
    assert files.requests == []


def test_damaged_archive_is_deleted_and_reported(tmp_path: Path) -> None:
    good = _zip({"val2017/a.jpg": b"x" * 5000})
    damaged = bytearray(good)
    damaged[60:70] = b"\0" * 10  # inside the member's data: its CRC no longer matches
    files = Files({"/zips/val2017.zip": bytes(damaged),
                   "/annotations/annotations_trainval2017.zip":
                       _zip({"annotations/captions_val2017.json": b"{}"})})
    with serve(files) as base, pytest.raises(DownloadError, match="damaged"):
        download_coco("val2017", tmp_path, base_url=base)
    assert not (tmp_path / "val2017.zip").exists()


def test_download_coco_reports_each_archive_s_progress_through_callbacks(tmp_path: Path) -> None:
    images = _zip({f"val2017/{n}.jpg": os.urandom(4000) for n in range(3)})
    files = Files({"/zips/val2017.zip": images, "/annotations/annotations_trainval2017.zip":
                   _zip({"annotations/captions_val2017.json": b"{}"})})
    downloaded: dict[str, tuple[int, int | None]] = {}
    extracted: dict[str, list[tuple[int, int]]] = {}
    with serve(files) as base:
        download_coco("val2017", tmp_path, base_url=base,
                      on_download=lambda name, got, size: downloaded.__setitem__(name, (got, size)),
                      on_extract=lambda name, done, size: extracted.setdefault(name, []).append((done, size)))
    assert downloaded["val2017.zip"] == (len(images), len(images))
    assert set(downloaded) == set(extracted) == {"val2017.zip", "annotations_trainval2017.zip"}
    assert extracted["val2017.zip"] == [(1, 3), (2, 3), (3, 3)]
