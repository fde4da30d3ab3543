"""Keeping the collection healthy: recovering lost work, indexing again, retrying failures,
and the status people see."""

from clipseek.upkeep.recovery import requeue
from clipseek.upkeep.retrying import retry_failed_images
from clipseek.upkeep.status import collection_status

__all__ = ["collection_status", "requeue", "retry_failed_images"]
