"""MS-COCO 2017: reading caption annotations, and downloading the images and captions."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

from clipseek.errors import ClipSeekError, DownloadError
from clipseek.library.register import Candidate
from clipseek.util.download import download_file

COCO_BASE_URL = "http://images.cocodataset.org"
SPLITS = ("val2017", "train2017")
ANNOTATIONS_ZIP = "annotations/annotations_trainval2017.zip"

# Progress: the archive's name, bytes received so far and its size (None until known).
OnDownload = Callable[[str, int, int | None], None]
# Progress: the archive's name, members extracted (or found in place) so far, and how many it has.
OnExtract = Callable[[str, int, int], None]


def read_captions(annotations: Path) -> dict[str, list[str]]:
    """Map each image file name to its captions, from a captions_*.json file."""
    try:
        data = json.loads(annotations.read_text(encoding="utf-8"))
        files = {img["id"]: img["file_name"] for img in data["images"]}
        captions: dict[str, list[str]] = {name: [] for name in files.values()}
        for ann in data["annotations"]:
            captions[files[ann["image_id"]]].append(" ".join(ann["caption"].split()))
    except FileNotFoundError:
        raise ClipSeekError(f"{annotations} does not exist; give the captions_*.json file "
                            "from COCO's annotations archive.") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ClipSeekError(f"{annotations} is not a COCO captions file ({exc!r}).") from None
    return captions


def coco_candidates(images: Path, annotations: Path) -> tuple[list[Candidate], int]:
    """Candidates for every annotated image present in `images`, and how many are missing."""
    captions = read_captions(annotations)
    split = annotations.stem.removeprefix("captions_")
    found, missing = [], 0
    for name in sorted(captions):
        path = images / name
        if not path.exists():
            missing += 1
            continue
        found.append(Candidate(path=path.absolute(), source="coco", collection=f"coco/{split}",
                               captions=tuple(captions[name])))
    return found, missing


def verify_zip(path: Path) -> None:
    """Check every member's CRC; raise DownloadError (and delete the file) if one is bad."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as exc:
        bad = str(exc)
    if bad is not None:
        path.unlink()
        raise DownloadError(f"{path.name} is damaged ({bad}); it was deleted, run the "
                            "command again to download it afresh.")


def _extract(archive_path: Path, dest: Path, on_extract: OnExtract | None) -> int:
    """Extract members not yet present with the right size; return how many were written."""
    written = 0
    with zipfile.ZipFile(archive_path) as archive:
        members = archive.infolist()
        for done, member in enumerate(members, start=1):
            target = dest / member.filename
            if not (member.is_dir() or (target.exists() and target.stat().st_size == member.file_size)):
                archive.extract(member, dest)
                written += 1
            if on_extract:
                on_extract(archive_path.name, done, len(members))
    return written


def download_coco(split: str, dest: Path, *, base_url: str = COCO_BASE_URL, keep_archives: bool = False,
                  on_download: OnDownload | None = None,
                  on_extract: OnExtract | None = None) -> tuple[Path, Path]:
    """Fetch, verify and extract a COCO split and its captions; return (images, captions)."""
    if split not in SPLITS:
        raise ClipSeekError(f"COCO split must be one of {', '.join(SPLITS)}, not {split!r}.")
    dest.mkdir(parents=True, exist_ok=True)
    for relative in (ANNOTATIONS_ZIP, f"zips/{split}.zip"):
        archive = dest / Path(relative).name
        images_done = (dest / split).is_dir() and relative.startswith("zips/") and \
            (dest / f".{split}.complete").exists()
        notes_done = relative == ANNOTATIONS_ZIP and \
            (dest / "annotations" / f"captions_{split}.json").exists()
        if images_done or notes_done:
            continue
        if not archive.exists():
            download_file(f"{base_url.rstrip('/')}/{relative}", archive,
                          progress=partial(on_download, archive.name) if on_download else None)
        verify_zip(archive)
        _extract(archive, dest, on_extract)
        if relative.startswith("zips/"):
            (dest / f".{split}.complete").touch()
        if not keep_archives:
            archive.unlink()
    return dest / split, dest / "annotations" / f"captions_{split}.json"

