"""Leaving things out of a library: gitignore-style patterns from `--exclude` and `.clipseekignore`
files, and the litter that NAS and OS tools leave beside pictures."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pathspec import GitIgnoreSpec

from clipseek.errors import ClipSeekError

IGNORE_FILE = ".clipseekignore"
# Thumbnails and metadata that Synology (@eaDir), its recycle bin and snapshots, desktop
# thumbnailers, Windows and macOS put beside pictures: a Synology's @eaDir/IMG_1.jpg/
# SYNOFILE_THUMB_M.jpg is a real JPEG, and was indexed as a photo. Matched by name, at any
# depth (as the gitignore patterns `@eaDir/` or `Thumbs.db` would be), without a pattern
# match per file: a walk of 10,000 files must stay a matter of stat calls.
LITTER_FOLDERS = frozenset({"@eaDir", "#recycle", "#snapshot", ".thumbnails"})
LITTER_FILES = frozenset({"Thumbs.db", ".DS_Store"})


class BadPattern(ClipSeekError):
    """An exclude pattern that gitignore syntax cannot read."""


class LeftOut(StrEnum):
    """Why a walk left a file or folder out."""

    EXCLUDED = "excluded"  # by --exclude or a .clipseekignore
    LITTER = "litter"  # NAS or OS litter, left out by default


def _spec(lines: list[str], where: str) -> GitIgnoreSpec:
    try:
        return GitIgnoreSpec.from_lines(lines)
    except ValueError as exc:  # pathspec's GitIgnorePatternError
        raise BadPattern(f"{where} holds a pattern that cannot be read ({exc}); patterns follow "
                         "gitignore's syntax, such as *.tmp, raw/ or /exports/**.") from None


def _read_ignore_file(folder: Path) -> GitIgnoreSpec | None:
    path = folder / IGNORE_FILE
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ClipSeekError(f"{path} cannot be read ({exc.strerror or exc}); fix its permissions "
                            "or remove it.") from None
    return _spec(lines, str(path))


@dataclass(frozen=True)
class _Rules:
    """Patterns and the folder they are relative to."""

    base: str
    spec: GitIgnoreSpec


@dataclass(frozen=True)
class Excludes:
    """What a walk leaves out: the litter, the `.clipseekignore` files it meets, and `patterns`.

    A `.clipseekignore` applies to its folder and everything under it, whichever folder is
    walked, so the ones in the folders above the walked one count too. Later rules win, as
    in git: litter, then the files from the top down, then `patterns` (from --exclude); a
    `!pattern` brings back what an earlier rule left out.
    """

    patterns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _spec(list(self.patterns), "--exclude")  # BadPattern at the edge, before any walk

    def for_folder(self, root: Path) -> FolderRules:
        """The rules for walking `root`: with the `.clipseekignore` files above it and in it."""
        above = []
        for folder in reversed(root.absolute().parents):
            found = _read_ignore_file(folder)
            if found is not None:
                above.append(_Rules(str(folder), found))
        given = [_Rules(str(root.absolute()), _spec(list(self.patterns), "--exclude"))]
        return FolderRules(above, given if self.patterns else [])


class FolderRules:
    """The rules in force while one folder tree is walked; `enter` adds each folder's own file."""

    def __init__(self, above: list[_Rules], given: list[_Rules]) -> None:
        self._above = above
        self._given = given
        # Per folder entered: the .clipseekignore files from the top down to it.
        self._files: dict[str, list[_Rules]] = {}
        self._in_force: dict[str, list[_Rules]] = {}

    def enter(self, folder: str, names: list[str]) -> None:
        """Note a folder of the walk (an absolute path), with the names in it."""
        files = self._files.get(os.path.dirname(folder), self._above)
        if IGNORE_FILE in names and (own := _read_ignore_file(Path(folder))) is not None:
            files = [*files, _Rules(folder, own)]
        self._files[folder] = files
        self._in_force[folder] = [*files, *self._given]

    def left_out(self, folder: str, name: str, *, is_folder: bool) -> LeftOut | None:
        """Why the entry `name` in `folder` (entered before) is left out, or None if it is kept."""
        verdict = LeftOut.LITTER if name in (LITTER_FOLDERS if is_folder else LITTER_FILES) else None
        rules = self._in_force[folder]
        if rules:
            path = os.path.join(folder, name) + ("/" if is_folder else "")
            for rule in rules:
                # Every base is `folder` or a folder above it, spelled the same way.
                found = rule.spec.check_file(path[len(rule.base.rstrip("/")) + 1:])
                if found.include is not None:
                    verdict = LeftOut.EXCLUDED if found.include else None
        return verdict
