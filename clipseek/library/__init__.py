"""Files become rows: registering pictures from every way in (uploads, folders, sync and watch,
MS-COCO, the samples), what walks leave out, the image store, captions, collections, albums,
zip archives, deletion and the trash."""

from clipseek.library.deletion import Selection, delete_images
from clipseek.library.excludes import Excludes
from clipseek.library.register import Candidate
from clipseek.library.sync import sync_folder
from clipseek.library.trash import empty_trash, restore_images

__all__ = ["Candidate", "Excludes", "Selection", "delete_images", "empty_trash", "restore_images",
           "sync_folder"]
