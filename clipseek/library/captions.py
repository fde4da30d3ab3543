"""Captions: those derived from a file's name and its own EXIF/XMP text, and those people write."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any, NewType

from sqlalchemy import ColumnElement, delete, exists, insert, select
from sqlalchemy.orm import Session

from clipseek.errors import BadQuery, InTrash
from clipseek.photo.caption_text import MAX_CAPTION_CHARS, caption_from_filename
from clipseek.photo.metadata import PhotoText
from clipseek.store.tables import DERIVED_SOURCES, Caption, Image
from clipseek.util.user_text import user_text


class CaptionSource(StrEnum):
    """Where a caption's text came from (COCO's and the samples' captions keep their own source)."""

    FILENAME = "filename"
    EXIF = "exif"
    XMP = "xmp"
    USER = "user"


class BadCaption(BadQuery):
    """A caption text that cannot be stored as given (the web answers 400)."""


# Written by ClipSeek itself: replaced whenever the file is read again.
DERIVED = (CaptionSource.FILENAME, CaptionSource.EXIF, CaptionSource.XMP)


def listed() -> ColumnElement[bool]:
    """The condition on `captions` that keeps the ones shown to people as captions.

    What ClipSeek derives about the whole picture (its place, the words read in it) is
    searched like any caption, but never listed, edited, used as alternative text or as a
    grid's caption, nor taken for a caption a file or a person gave.
    """
    return Caption.source.not_in(DERIVED_SOURCES)


def listed_captions(captions: Iterable[Caption]) -> list[Caption]:
    """The captions of a list that are shown to people, as `listed()` selects them in SQL."""
    return [c for c in captions if is_listed(c)]


def is_listed(caption: Caption) -> bool:
    """Whether a caption is shown to people as a caption (see `listed()`)."""
    return caption.source not in DERIVED_SOURCES


# A caption's text as a person may write it: visible (clipseek.util.user_text), 1 to
# MAX_CAPTION_CHARS characters.
CaptionText = NewType("CaptionText", str)


def parse_caption_text(raw: object) -> CaptionText:
    """A caption text from a request, or BadCaption with a sentence saying what to change."""
    if not isinstance(raw, str):
        raise BadCaption('Send the caption as a string in the "text" field.')
    # Lines and tabs become single spaces: a caption is shown on one line.
    try:
        return CaptionText(user_text(" ".join(raw.split()), what="A caption", max_chars=MAX_CAPTION_CHARS))
    except BadQuery as refused:
        raise BadCaption(str(refused)) from None


def derived_captions(name: str, text: PhotoText) -> list[tuple[CaptionSource, str]]:
    """The captions a file brings by itself: its own EXIF and XMP text, then its name's words."""
    found = [(CaptionSource.EXIF, t) for t in text.exif] + [(CaptionSource.XMP, t) for t in text.xmp]
    from_name = caption_from_filename(name)
    if from_name and from_name.casefold() not in {t.casefold() for _, t in found}:
        found.append((CaptionSource.FILENAME, from_name))
    return found


def add_derived_captions(session: Session, image_id: int, *, name: str, text: PhotoText) -> None:
    """Record the captions a newly registered file brings by itself. The caller commits."""
    rows = [{"image_id": image_id, "source": source, "text": caption}
            for source, caption in derived_captions(name, text)]
    if rows:
        session.execute(insert(Caption), rows)


def has_given_captions(session: Session, image_id: int) -> bool:
    """Whether the image arrived with captions of its own (COCO's, the samples'): it takes no others."""
    return bool(session.scalar(select(exists().where(
        Caption.image_id == image_id, Caption.source.not_in([*DERIVED, CaptionSource.USER]), listed()))))


def replace_derived_captions(session: Session, image_id: int, *, name: str,
                             text: PhotoText | None) -> None:
    """Derive an image's captions afresh after its file changed or was renamed. The caller commits.

    With `text` None (the file was not read again) only the file-name caption is replaced.
    People's captions, and images that arrived with captions of their own, are left alone.
    """
    if has_given_captions(session, image_id):
        return
    sources = list(DERIVED) if text is not None else [CaptionSource.FILENAME]
    session.execute(delete(Caption).where(Caption.image_id == image_id, Caption.source.in_(sources)))
    rows = [{"image_id": image_id, "source": source, "text": caption}
            for source, caption in derived_captions(name, text or PhotoText()) if source in sources]
    if rows:
        session.execute(insert(Caption), rows)


def add_caption(session: Session, *, image_id: int, text: CaptionText,
                added_by: int | None = None) -> Caption | None:
    """Add a person's caption (written by user `added_by`) to an image; None if there is no such image.

    The caller commits.
    """
    image = session.get(Image, image_id)
    if image is None:
        return None
    _not_in_trash(image)
    caption = Caption(image_id=image_id, text=text, source=CaptionSource.USER, added_by=added_by)
    session.add(caption)
    session.flush()
    return caption


def edit_caption(session: Session, *, caption_id: int, text: CaptionText,
                 edited_by: int | None = None) -> Caption | None:
    """Change a caption's text; it becomes a person's caption, which a re-sync keeps. The caller commits.

    A caption keeps its author; one without (a file's, say) becomes the editor's.
    """
    caption = _listed_caption(session, caption_id)
    if caption is None:
        return None
    caption.text, caption.source = text, CaptionSource.USER
    if caption.added_by is None:
        caption.added_by = edited_by
    session.flush()
    return caption


def caption_owners(session: Session, caption_id: int) -> tuple[int | None, int | None] | None:
    """Who wrote a caption and who uploaded its picture (None where unrecorded); None without the caption."""
    row = session.execute(select(Caption.added_by, Image.added_by)
                          .join(Image, Image.id == Caption.image_id)
                          .where(Caption.id == caption_id, listed())).first()
    return None if row is None else (row[0], row[1])


def delete_caption(session: Session, *, caption_id: int) -> Caption | None:
    """Remove a caption; the removed one, or None if there was none. The caller commits."""
    caption = _listed_caption(session, caption_id)
    if caption is not None:
        session.delete(caption)
        session.flush()
    return caption


def _listed_caption(session: Session, caption_id: int) -> Caption | None:
    """A caption people may change; a derived one is no caption to them (its source changes it)."""
    caption = session.get(Caption, caption_id)
    if caption is None or caption.source in DERIVED_SOURCES:
        return None
    _not_in_trash(caption.image)
    return caption


def _not_in_trash(image: Image) -> None:
    # A picture in the trash is out of search and its page: its captions wait with it, as
    # they were, until it is restored (or removed for good).
    if image.trashed_at is not None:
        raise InTrash(f"Image {image.id} is in the trash; restore it before changing its captions.")


def caption_dict(caption: Caption) -> dict[str, Any]:
    """A caption as the API returns it: id, image, text and where the text came from."""
    return {"id": caption.id, "image_id": caption.image_id, "text": caption.text,
            "source": caption.source}
