"""Many pictures as one zip, streamed: the files as they are, read a piece at a time.

The archive is written into a generator, so a download of a few gigabytes holds no more
than one piece of one file in memory. JPEGs and the other compressed formats are stored
as they are (deflating them again costs CPU and gains nothing); other files are deflated.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePath

from sqlalchemy import select
from sqlalchemy.orm import Session

from clipseek.errors import BadQuery
from clipseek.store.tables import Image

# The most a download may hold: counted before the first byte is sent.
MAX_ZIP_PICTURES = 2_000
MAX_ZIP_BYTES = 4 * 1024**3
PIECE = 1024 * 1024
# Formats whose files are compressed already.
STORED_FORMATS = {"JPEG", "MPO", "PNG", "GIF", "WEBP", "HEIF", "AVIF"}
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
NOT_INCLUDED = "not-included.txt"


@dataclass(frozen=True)
class ZipEntry:
    """One file to put in the archive, under a name no other entry has."""

    image_id: int
    path: Path
    name: str
    compress: int


@dataclass
class ZipPlan:
    """What a download holds, and the pictures left out with the reason (listed in the archive)."""

    entries: list[ZipEntry] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    total_bytes: int = 0

    @property
    def filename(self) -> str:
        """The name the download is saved under."""
        return f"clipseek-{len(self.entries)}-pictures.zip"


def _safe_name(name: str, image_id: int) -> str:
    # Only the last part of a name, without separators or controls: never a path out of
    # the folder the archive is unpacked in.
    cleaned = _UNSAFE.sub("_", PurePath(name.replace("\\", "/")).name).strip(" .")
    return cleaned or f"image-{image_id}"


def _unique(name: str, taken: set[str]) -> str:
    # Compared without case, as the file systems of Windows and macOS compare names.
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        stem, suffix = name, ""
    candidate, n = name, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{stem} ({n}).{suffix}" if suffix else f"{stem} ({n})"
    taken.add(candidate.casefold())
    return candidate


def plan_zip(session: Session, image_ids: Sequence[int]) -> ZipPlan:
    """The files of these pictures under unique names; BadQuery past the limits on count and size."""
    if not image_ids:
        raise BadQuery("Select some pictures to download.")
    if len(image_ids) > MAX_ZIP_PICTURES:
        raise BadQuery(f"A download holds at most {MAX_ZIP_PICTURES:,} pictures, not "
                       f"{len(image_ids):,}; select fewer and download them in parts.")
    rows = session.execute(select(Image.id, Image.path, Image.original_name, Image.format, Image.file_size)
                           .where(Image.id.in_(image_ids)).order_by(Image.id)).all()
    order = {image_id: n for n, image_id in enumerate(image_ids)}
    plan, taken = ZipPlan(), {NOT_INCLUDED}
    for row in sorted(rows, key=lambda r: order[r.id]):
        path = Path(row.path)
        name = _safe_name(row.original_name or path.name, row.id)
        if not path.is_file():
            plan.left_out[f"{name} (image {row.id})"] = f"its file is no longer at {path}"
            continue
        plan.total_bytes += path.stat().st_size
        compress = zipfile.ZIP_STORED if row.format in STORED_FORMATS else zipfile.ZIP_DEFLATED
        plan.entries.append(ZipEntry(row.id, path, _unique(name, taken), compress))
    if plan.total_bytes > MAX_ZIP_BYTES:
        raise BadQuery(f"These pictures come to {plan.total_bytes / 1024**3:.1f} GiB; a download holds "
                       f"at most {MAX_ZIP_BYTES / 1024**3:.0f} GiB: select fewer and download them in parts.")
    for missing in sorted(set(image_ids) - {r.id for r in rows}):
        plan.left_out[f"image {missing}"] = "there is no such picture"
    if not plan.entries:
        raise BadQuery("None of the selected pictures has a file to download.")
    return plan


class _Pieces(io.RawIOBase):
    """A sink that keeps what the zip writer wrote until the generator hands it on."""

    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.pieces.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.pieces)
        self.pieces.clear()
        return out


def _date_time(path: Path) -> tuple[int, int, int, int, int, int]:
    when = datetime.fromtimestamp(path.stat().st_mtime)
    # A zip cannot hold dates before 1980.
    return max(when, datetime(1980, 1, 1)).timetuple()[:6]


def stream_zip(plan: ZipPlan) -> Iterator[bytes]:
    """The archive of `plan`, piece by piece (none larger than a piece of a file and its headers)."""
    sink = _Pieces()
    # An unseekable sink: sizes and checksums follow each file's data instead of preceding it.
    with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
        for entry in plan.entries:
            info = zipfile.ZipInfo(entry.name, date_time=_date_time(entry.path))
            info.compress_type = entry.compress
            # Told the size, the writer chooses ZIP64 headers for files past 2 GiB itself.
            info.file_size = entry.path.stat().st_size
            with entry.path.open("rb") as source, archive.open(info, "w") as target:
                while piece := source.read(PIECE):
                    target.write(piece)
                    yield sink.take()
            yield sink.take()
        if plan.left_out:
            archive.writestr(NOT_INCLUDED, "".join(f"{name}: {why}\n" for name, why in plan.left_out.items()))
    yield sink.take()
