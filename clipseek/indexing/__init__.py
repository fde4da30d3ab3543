"""Indexing in the background: the queue (Redis and Celery), what is waiting, encoding a batch
of pictures into embeddings, why one failed, and the workers' heartbeats."""

from clipseek.indexing.encoding import index_images
from clipseek.indexing.failures import is_retryable
from clipseek.indexing.queueing import Enqueue, queue_for_indexing

__all__ = ["Enqueue", "index_images", "is_retryable", "queue_for_indexing"]
