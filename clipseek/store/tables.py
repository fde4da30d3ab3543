"""The tables: images, their captions, and their embeddings per model."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from pgvector.sqlalchemy import BIT, HALFVEC, VECTOR
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ColumnElement,
    Computed,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class ImageStatus(StrEnum):
    """Where an image stands: registered, then queued, then indexed; or failed, with a reason."""

    REGISTERED = "registered"
    QUEUED = "queued"
    INDEXED = "indexed"
    FAILED = "failed"
    # Its file is gone from the folder it was synced from: kept (with its embedding) in case
    # it comes back, but out of every search until then.
    MISSING = "missing"


class OcrState(StrEnum):
    """Where reading the words in an indexed image stands (NULL in the table: not read yet)."""

    READ = "read"
    FAILED = "failed"
    # Reading was turned off (CLIPSEEK_OCR=0) when its turn came.
    SKIPPED = "skipped"


class FacesState(StrEnum):
    """Where finding the faces in an indexed image stands (NULL in the table: not looked at yet)."""

    FOUND = "found"
    NONE = "none"
    FAILED = "failed"
    # People was off when its turn came (`clipseek people enable` looks at them later).
    SKIPPED = "skipped"


class CaptionSource(StrEnum):
    """Captions that ClipSeek derives itself, shown apart from what people and files wrote."""

    OCR = "ocr"
    PLACE = "place"


# Derived captions are searched like any other, but never edited or listed as captions.
DERIVED_SOURCES = tuple(CaptionSource)
# The same as SQL, written out: the partial index over derived captions' words holds it, and
# a query uses that index only where its condition names the same sources as constants.
DERIVED_SOURCES_SQL = "source IN (" + ", ".join(f"'{s}'" for s in CaptionSource) + ")"
_DERIVED = text(DERIVED_SOURCES_SQL)  # Caption's own `text` column hides the function there


# Stored but neither indexed nor failed yet: waiting for the model.
WAITING = (ImageStatus.REGISTERED, ImageStatus.QUEUED)


# An image's date for date filters and date order: when it was taken, else when it was added
# (in UTC, like capture times without a zone). Written once here so the index and the
# queries use the same expression.
SHOWN_AT_SQL = "COALESCE(taken_at, (created_at AT TIME ZONE 'UTC'))"


class Base(DeclarativeBase):
    """Declarative base of all ClipSeek tables."""


def table_of(entity: type[Base]) -> Table:
    """The Core table of a mapped class: statements through it skip the ORM's per-row work
    (a bulk update or insert through the class built and compiled a statement each time)."""
    return typing.cast(Table, entity.__table__)


class Image(Base):
    """One stored picture and where it stands in its lifecycle."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    original_name: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))
    collection: Mapped[str | None] = mapped_column(Text)
    file_size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), server_default=ImageStatus.REGISTERED.value)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    indexed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Seconds since the epoch as the file system reported them: a re-sync compares size and
    # mtime with these instead of reading the file again.
    file_mtime: Mapped[float | None] = mapped_column(Double)
    missing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # From the photo's EXIF (clipseek.photo.metadata): the camera's wall-clock time, without a zone,
    # and its offset from UTC where the camera recorded one.
    taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))
    taken_offset_minutes: Mapped[int | None] = mapped_column(Integer)
    camera_make: Mapped[str | None] = mapped_column(Text)
    camera_model: Mapped[str | None] = mapped_column(Text)
    latitude: Mapped[float | None] = mapped_column(Double)
    longitude: Mapped[float | None] = mapped_column(Double)
    display_width: Mapped[int | None] = mapped_column(Integer)
    display_height: Mapped[int | None] = mapped_column(Integer)
    # Who uploaded it, for the audit and for a contributor's right to delete it; NULL for
    # imports, synced folders and uploads in the local single-user mode.
    added_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The place its GPS coordinates name (an offline gazetteer); placed_at is when it was
    # looked up, so images registered before places existed are told apart from those
    # whose coordinates name no place.
    place_city: Mapped[str | None] = mapped_column(Text)
    place_region: Mapped[str | None] = mapped_column(Text)
    place_country: Mapped[str | None] = mapped_column(Text)
    place_country_code: Mapped[str | None] = mapped_column(Text)
    placed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Reading the words in it, after it is indexed: NULL while waiting, else an OcrState.
    # A failure here never makes the image `failed` for search.
    ocr_state: Mapped[str | None] = mapped_column(String(16))
    ocr_error: Mapped[str | None] = mapped_column(Text)
    ocr_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # In the trash since then (out of search and browsing, restorable with everything it
    # had) until the trash is emptied; NULL for every picture in the library.
    trashed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    trashed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Its perceptual hash (64 bits, as '0101…'): near-duplicates are a Hamming-distance
    # query on an HNSW index. NULL until computed (`clipseek reindex --hashes`).
    phash: Mapped[str | None] = mapped_column(BIT(64))
    # When its near-duplicate pairs (near_duplicate_pairs) were looked up from its hash.
    phash_paired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Finding the faces in it (people on), after it is indexed: NULL while waiting, else a
    # FacesState. Never delays CLIP, never makes the image `failed`.
    faces_state: Mapped[str | None] = mapped_column(String(16))
    faces_error: Mapped[str | None] = mapped_column(Text)
    faces_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    captions: Mapped[list[Caption]] = relationship(
        back_populates="image", cascade="all, delete-orphan", order_by="Caption.id"
    )

    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in ImageStatus) + ")", name="images_status_valid"
        ),
        CheckConstraint("ocr_state IN (" + ", ".join(f"'{s}'" for s in OcrState) + ")",
                        name="images_ocr_state_valid"),
        CheckConstraint("faces_state IN (" + ", ".join(f"'{s}'" for s in FacesState) + ")",
                        name="images_faces_state_valid"),
        Index("images_faces_waiting_idx", "id",
              postgresql_where=text("faces_state IS NULL AND status = 'indexed'")),
        Index("images_ocr_waiting_idx", "id",
              postgresql_where=text("ocr_state IS NULL AND status = 'indexed'")),
        Index("images_place_country_idx", "place_country"),
        Index("images_phash_hnsw_idx", "phash", postgresql_using="hnsw",
              postgresql_ops={"phash": "bit_hamming_ops"}),
        Index("images_trashed_at_idx", "trashed_at", postgresql_where=text("trashed_at IS NOT NULL")),
        Index("images_status_idx", "status"),
        # Re-running an import skips files already registered without hashing them again.
        Index("images_path_idx", "path"),
        Index("images_taken_at_idx", "taken_at"),
        # For the search filters (clipseek.search.query.Filters) and browsing newest first.
        Index("images_created_at_idx", "created_at"),
        Index("images_collection_idx", "collection"),
        Index("images_path_prefix_idx", "path", postgresql_ops={"path": "text_pattern_ops"}),
        Index("images_shown_at_idx", text(SHOWN_AT_SQL)),
    )


def in_library() -> ColumnElement[bool]:
    """SQL condition: the image is in the library, not in the trash.

    Every query that lists, counts, searches or indexes images holds it; only the trash's
    own pages and commands look at the others.
    """
    return Image.trashed_at.is_(None)


class DuplicateFile(Base):
    """A file in a synced folder whose content is already stored as another image.

    Remembered with its size and mtime so that the next sync need not read it again, and so
    that the image can take this path if its own file goes.
    """

    __tablename__ = "duplicate_files"

    path: Mapped[str] = mapped_column(Text, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    file_size: Mapped[int] = mapped_column(BigInteger)
    file_mtime: Mapped[float] = mapped_column(Double)

    __table_args__ = (Index("duplicate_files_image_id_idx", "image_id"),)


class ForgottenFile(Base):
    """A file in a synced folder whose picture was deleted: `sync` and `watch` leave it out.

    Without it, deleting a picture indexed where it lies (its file is kept) would bring it
    back as new at the next sync. Restoring the picture, or asking for it, forgets this row.
    """

    __tablename__ = "forgotten_files"

    path: Mapped[str] = mapped_column(Text, primary_key=True)
    sha256: Mapped[str | None] = mapped_column(String(64))
    forgotten_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("forgotten_files_sha256_idx", "sha256"),)


class Album(Base):
    """A set of pictures chosen by people; a picture may be in any number of albums.

    Collections say where pictures came from; albums are what people make of them.
    """

    __tablename__ = "albums"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text)
    # Its maker: contributors manage their own albums, admins every album.
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("albums_name_key", text("lower(name)"), unique=True),)


class AlbumImage(Base):
    """A picture's place in an album (kept while the picture is in the trash)."""

    __tablename__ = "album_images"

    album_id: Mapped[int] = mapped_column(ForeignKey("albums.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    added_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("album_images_image_id_idx", "image_id"),)


class Person(Base):
    """A person: faces grouped as one, named by people or not yet."""

    __tablename__ = "people"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(Text)
    # The face shown for the person (any of theirs when it is gone).
    cover_face_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("people_name_key", text("lower(name)"), unique=True,
                            postgresql_where=text("name IS NOT NULL")),)


class Face(Base):
    """A face found in a picture: where it is (in the picture as displayed) and whose it is."""

    __tablename__ = "faces"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    box_left: Mapped[int] = mapped_column(Integer)
    box_top: Mapped[int] = mapped_column(Integer)
    box_right: Mapped[int] = mapped_column(Integer)
    box_bottom: Mapped[int] = mapped_column(Integer)
    score: Mapped[float | None] = mapped_column(Double)
    # Set when a person moved it by hand (removed from a person, or placed): grouping
    # leaves it where they put it.
    person_locked: Mapped[bool] = mapped_column(Boolean, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("faces_image_id_idx", "image_id"), Index("faces_person_id_idx", "person_id"))


class FaceDescriptor(Base):
    """A face's 128-d descriptor (dlib's ResNet; same person below about 0.6 Euclidean).

    Kept apart from `faces`: biometric data the read-only SQL role never reads.
    """

    __tablename__ = "face_descriptors"

    face_id: Mapped[int] = mapped_column(ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True)
    descriptor: Mapped[Sequence[float]] = mapped_column(VECTOR(128))

    __table_args__ = (Index("face_descriptors_hnsw_idx", "descriptor", postgresql_using="hnsw",
                            postgresql_ops={"descriptor": "vector_l2_ops"}),)


class NearDuplicatePair(Base):
    """Two pictures whose perceptual hashes are close (image_id < other_id), found once."""

    __tablename__ = "near_duplicate_pairs"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    other_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    distance: Mapped[int] = mapped_column(SmallInteger)

    __table_args__ = (CheckConstraint("image_id < other_id", name="near_duplicate_pairs_ordered"),
                      Index("near_duplicate_pairs_other_id_idx", "other_id"))


class QueryEmbedding(Base):
    """A text's embedding under a model: each text search keeps one, so SQL can rank by text."""

    __tablename__ = "query_embeddings"

    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(Text, primary_key=True)
    embedding: Mapped[Sequence[float]] = mapped_column(HALFVEC())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Stored on purpose (`clipseek embed --store`): never pruned, unlike those searches store.
    kept: Mapped[bool] = mapped_column(Boolean, server_default=false())

    __table_args__ = (Index("query_embeddings_last_used_at_idx", "last_used_at"),)


class LibrarySetting(Base):
    """A switch kept for the whole library (e.g. people on), whichever process reads it."""

    __tablename__ = "library_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[object] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Caption(Base):
    """A sentence describing an image (MS-COCO gives five per image)."""

    __tablename__ = "captions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))
    # Who wrote it, for a contributor's right to change it; NULL for captions a file brought
    # (name, EXIF, XMP), COCO's, the samples', and those written in the local single-user mode.
    added_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # For text read in the picture (source 'ocr'): the recognizer's mean confidence (0..1)
    # and the boxes the lines were found in ([[x, y], ...] corners per line, in pixels).
    confidence: Mapped[float | None] = mapped_column(Double)
    boxes: Mapped[list[list[list[float]]] | None] = mapped_column(JSONB)
    # Kept by PostgreSQL itself, so every way a caption is written is searchable at once.
    words: Mapped[str | None] = mapped_column(TSVECTOR, Computed("to_tsvector('english'::regconfig, text)",
                                                          persisted=True))

    image: Mapped[Image] = relationship(back_populates="captions")

    __table_args__ = (
        Index("captions_image_id_idx", "image_id"),
        Index("captions_words_idx", "words", postgresql_using="gin"),
        # A text search finds the places and read words that hold part of it here, without a
        # pass over every caption (clipseek.search.sql.caption_documents).
        Index("captions_derived_words_idx", "words", postgresql_using="gin",
              postgresql_where=_DERIVED),
    )


class Embedding(Base):
    """An image's CLIP embedding, produced by the model named in `model`.

    Stored as `halfvec` without a fixed dimension, so models of any dimension share the
    table; each model has its own HNSW index, a partial index over its rows with the column
    cast to its dimension (clipseek.store.vector_indexes), so no graph mixes embedding spaces.
    Half precision keeps a 512-d row (1,032 bytes) inline in the heap, whereas a 512-d
    `vector` (2,056 bytes) is TOASTed out of line, which made an exact scan over 118,000
    rows 9x slower (680 ms vs 74 ms p50, bench/search.py, BENCHMARKS.md). Rounding to fp16
    moves cosine scores by under 1e-3, far below the gaps that separate CLIP matches.
    """

    __tablename__ = "embeddings"

    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Written from numpy arrays; read back as lists of floats.
    embedding: Mapped[Sequence[float]] = mapped_column(HALFVEC())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("embeddings_model_idx", "model"),)


class EmbeddingCount(Base):
    """How many embeddings each model has, kept exact by triggers on `embeddings`.

    Counting 118,000 rows cost a search about 15 ms (bench/search.py); reading this row
    costs well under one.
    """

    __tablename__ = "embedding_counts"

    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    images: Mapped[int] = mapped_column(BigInteger)


class ModelState(StrEnum):
    """A model's part in search: the one searches use, the one being moved to, or kept aside."""

    ACTIVE = "active"
    # Embedding the collection by the workers; searches move to it once it covers every image.
    INCOMING = "incoming"
    # A former active model: its vectors and index stay until `clipseek model drop`.
    KEPT = "kept"


class SearchModel(Base):
    """A model that has (or is getting) embeddings here, and its part in search.

    Exactly one is active (the first run takes CLIPSEEK_MODEL); at most one is incoming.
    """

    __tablename__ = "search_models"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    dim: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # When the move to this model began, and when searches moved to it.
    switch_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the images the incoming model lacked were last sent to the workers.
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("state IN (" + ", ".join(f"'{s}'" for s in ModelState) + ")",
                        name="search_models_state_valid"),
        Index("search_models_one_active", "state", unique=True,
              postgresql_where=text("state = 'active'")),
        Index("search_models_one_incoming", "state", unique=True,
              postgresql_where=text("state = 'incoming'")),
    )


class WorkerBeat(Base):
    """A running worker's heartbeat and the task it holds, written every few seconds.

    Liveness comes from here rather than from a broadcast over the broker: a status page
    reads one small table, and a worker whose heartbeat stopped is known to be gone, so the
    images it held can be queued again at once instead of after the visibility timeout.
    """

    __tablename__ = "worker_beats"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    hostname: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    beat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The broker's delivery tag of the task in hand and the image ids it carries.
    task_id: Mapped[str | None] = mapped_column(Text)
    image_ids: Mapped[list[int] | None] = mapped_column(JSONB)


class QueryExample(Base):
    """An example picture's embedding, kept so its search pages, reloads and shares by URL.

    Named by the SHA-256 of the picture; short-lived: unused ones are dropped after a while.
    """

    __tablename__ = "query_examples"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    embedding: Mapped[Sequence[float]] = mapped_column(HALFVEC())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("query_examples_last_used_at_idx", "last_used_at"),)


class ScoreCutoff(Base):
    """The score below which a model's matches are hidden, calibrated on the stored collection."""

    __tablename__ = "score_cutoffs"

    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    cutoff: Mapped[float] = mapped_column(Double)
    # How many images the model had embedded when it was calibrated: a collection that has
    # grown much since is calibrated again.
    images: Mapped[int] = mapped_column(BigInteger)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class UploadRejection(Base):
    """A file refused at upload (not an image, too large, ...), kept so the refusal is never lost."""

    __tablename__ = "upload_rejections"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    filename: Mapped[str] = mapped_column(Text)
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    collection: Mapped[str | None] = mapped_column(Text)
    rejected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("upload_rejections_rejected_at_idx", "rejected_at"),)


class Role(StrEnum):
    """What an account may do: viewers search and look, contributors also upload, admins everything."""

    VIEWER = "viewer"
    CONTRIBUTOR = "contributor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Order of the roles: each may do what the ones below it may."""
        return list(Role).index(self)


class User(Base):
    """An account of a shared deployment; the local single-user mode has none."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    password_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("role IN (" + ", ".join(f"'{r}'" for r in Role) + ")", name="users_role_valid"),
    )


class ApiToken(Base):
    """A personal API token: only its SHA-256 is kept; the secret is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginSession(Base):
    """A signed-in browser: the cookie holds the secret, the server its SHA-256.

    Logging out deletes the row, so a copied cookie is worthless afterwards; changing the
    password deletes every row of that user.
    """

    __tablename__ = "login_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AuditEvent(Base):
    """Who uploaded or deleted which image, and when (kept after the image and the user are gone)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    user_name: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    image_id: Mapped[int] = mapped_column(BigInteger)
    image_name: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
