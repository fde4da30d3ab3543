"""Short private folders for Unix sockets whose natural place has too long a path."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

from clipseek.errors import ClipSeekError

# A Unix socket's path must fit in sun_path (108 bytes with its NUL); a few bytes stay spare.
MAX_SOCKET_PATH = 100


class UnsafeFolder(ClipSeekError):
    """A folder ClipSeek needs private is owned by someone else or open to others."""


def socket_path_fits(path: Path) -> bool:
    """Whether a socket at `path` can be created without the kernel truncating its name."""
    return len(os.fsencode(path)) <= MAX_SOCKET_PATH


def short_socket_dir(kind: str, key: Path) -> Path:
    """A stable short folder in the temporary directory for the sockets of `key`'s server."""
    digest = hashlib.sha256(os.fsencode(key)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"clipseek-{kind}-{digest}"


def ensure_private_dir(folder: Path, *, owner_uid: int, owner_gid: int) -> None:
    """Create `folder` with mode 0700 for `owner_uid`, or check that the existing one is so.

    The temporary directory is shared by every local user, so a folder found there may
    have been made by someone else in advance to catch the socket: it is used only if it is
    a real folder (no link) owned by the server's user and closed to everyone else.
    """
    try:
        folder.mkdir(mode=0o700)
        os.chown(folder, owner_uid, owner_gid)
        os.chmod(folder, 0o700)
        return
    except FileExistsError:
        pass
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFolder(f"{folder} exists and is not a folder (a link, say): remove it, then "
                           "start ClipSeek again.")
    if info.st_uid != owner_uid:
        raise UnsafeFolder(f"{folder} belongs to user id {info.st_uid}, not to the server's user "
                           f"({owner_uid}): someone else made it; remove it, then start ClipSeek again.")
    if stat.S_IMODE(info.st_mode) & 0o077:
        # Ours, but opened up (by an older version): close it again before any socket appears.
        os.chmod(folder, 0o700)
