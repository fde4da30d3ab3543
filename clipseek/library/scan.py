"""Walking a folder with stat only: which image files are there, which were left out, and why."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG

from clipseek.library.excludes import Excludes, LeftOut
from clipseek.photo.imaging import is_image_name

# How many skipped names a report keeps to show; the count covers them all.
SHOWN_SKIPPED = 5


@dataclass(frozen=True)
class FileStat:
    """What the file system says about a file: size and modification time."""

    size: int
    mtime: float


@dataclass
class FolderScan:
    """A folder's files as found, with the ones left out and the places that could not be read."""

    files: dict[str, FileStat] = field(default_factory=dict)
    skipped_by_extension: int = 0
    skipped_names: list[str] = field(default_factory=list)
    # Files and folders left out by --exclude or a .clipseekignore, and NAS/OS litter; a
    # folder left out counts once, and nothing under it is listed.
    excluded: int = 0
    litter: int = 0
    left_out_names: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    # Folders that could not be listed: what is recorded under them is left as it is.
    unlisted_folders: list[str] = field(default_factory=list)

    def skip(self, path: str) -> None:
        """Count a file left out for its name, keeping the first few names to show."""
        self.skipped_by_extension += 1
        if len(self.skipped_names) < SHOWN_SKIPPED:
            self.skipped_names.append(path)

    def leave_out(self, path: str, why: LeftOut) -> None:
        """Count a file or folder left out by a rule, keeping the first few names to show."""
        if why is LeftOut.LITTER:
            self.litter += 1
        else:
            self.excluded += 1
        if len(self.left_out_names) < SHOWN_SKIPPED:
            self.left_out_names.append(path)

    def under_unlisted(self, path: str) -> bool:
        """Whether a path lies in a folder that could not be listed."""
        return any(path.startswith(folder + os.sep) for folder in self.unlisted_folders)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def scan_folder(root: Path, *, all_files: bool = False, excludes: Excludes | None = None) -> FolderScan:
    """Stat every file under `root` (hidden ones and symlinked folders are not followed).

    Files are kept if their name is an image's, or every file with `all_files`; nothing is
    read. What `excludes` leaves out (NAS/OS litter, .clipseekignore, --exclude) is counted,
    and a folder it leaves out is not entered. Symbolic links to files are followed; links
    to folders are not, so a loop of links cannot trap the walk.
    """
    scan = FolderScan()
    root = root.absolute()
    rules = (excludes or Excludes()).for_folder(root)

    def unlisted(exc: OSError) -> None:
        where = str(exc.filename) if exc.filename else str(root)
        scan.unlisted_folders.append(where)
        scan.unreadable[where] = f"cannot list the folder ({_reason(exc)})"

    for folder, dirs, names in os.walk(root, onerror=unlisted):
        rules.enter(folder, names)
        kept_dirs = []
        for name in sorted(dirs):
            why = rules.left_out(folder, name, is_folder=True)
            if why is not None:
                scan.leave_out(os.path.join(folder, name), why)
            elif not name.startswith("."):
                kept_dirs.append(name)
        dirs[:] = kept_dirs
        for name in sorted(names):
            path = os.path.join(folder, name)
            why = rules.left_out(folder, name, is_folder=False)
            if why is not None:
                scan.leave_out(path, why)
                continue
            if name.startswith("."):
                continue
            if not all_files and not is_image_name(Path(name)):
                scan.skip(path)
                continue
            try:
                stat = os.stat(path)
            except OSError as exc:  # a broken or looping link, or a file gone since the listing
                scan.unreadable[path] = f"cannot read the file ({_reason(exc)})"
                continue
            if not S_ISREG(stat.st_mode):
                continue
            scan.files[path] = FileStat(size=stat.st_size, mtime=stat.st_mtime)
    return scan
