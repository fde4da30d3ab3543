"""Files become rows: registering pictures from every way in (uploads, folders, sync and watch,
MS-COCO, the samples), the image store, captions, collections, albums, zip archives and deletion."""

from clipseek.library.deletion import Selection, delete_images
from clipseek.library.register import Candidate
from clipseek.library.sync import sync_folder

__all__ = ["Candidate", "Selection", "delete_images", "sync_folder"]
