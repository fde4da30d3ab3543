"""Small tools with no knowledge of pictures: file hashes, downloads, private folders, and the
rule for text people write."""

from clipseek.util.download import download_file
from clipseek.util.hashing import sha256_of
from clipseek.util.private_dir import ensure_private_dir
from clipseek.util.user_text import user_text

__all__ = ["download_file", "ensure_private_dir", "sha256_of", "user_text"]
