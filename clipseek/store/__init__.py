"""Where everything is kept: the database and its tables, the embedded PostgreSQL, the vector
indexes per model, and the database roles (the application's and the read-only readers')."""

from clipseek.store.db import Database
from clipseek.store.tables import Caption, Embedding, EmbeddingCount, Image, ImageStatus

__all__ = ["Caption", "Database", "Embedding", "EmbeddingCount", "Image", "ImageStatus"]
