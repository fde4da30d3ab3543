"""Leaving things out of a library: NAS and OS litter, .clipseekignore and --exclude."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from clipseek.library.excludes import BadPattern, Excludes
from clipseek.library.register import Candidate
from clipseek.library.scan import scan_folder
from clipseek.store.db import Database
from clipseek.store.tables import Image, ImageStatus
from tests.cli import run_in_process


def _synology(tmp_path: Path, sample_photos: list[Candidate]) -> Path:
    """A shared folder as a Synology leaves it: a photo, and its thumbnail (a real JPEG) in @eaDir."""
    share = tmp_path / "photo"
    thumbs = share / "@eaDir" / "IMG_1.jpg"
    thumbs.mkdir(parents=True)
    shutil.copy(sample_photos[0].path, share / "IMG_1.jpg")
    shutil.copy(sample_photos[1].path, thumbs / "SYNOFILE_THUMB_M.jpg")
    return share


def test_a_synology_thumbnail_is_not_indexed_as_a_photo(
    cli_env: dict[str, str], db: Database, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    share = _synology(tmp_path, sample_photos)
    synced = run_in_process(cli_env, "sync", str(share), "--inline")
    assert synced.returncode == 0, synced.stderr
    assert "1 new" in synced.stdout, synced.stdout
    assert "1 left out (0 by .clipseekignore/--exclude, 1 NAS/OS litter), e.g. @eaDir." in synced.stdout
    with db.session() as session:
        assert list(session.scalars(select(Image.original_name))) == ["IMG_1.jpg"]


def _tree(root: Path, files: list[str]) -> Path:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"\xff\xd8")  # named like a picture; the walk reads nothing
    return root


def _kept(root: Path, *patterns: str) -> list[str]:
    scan = scan_folder(root, excludes=Excludes(patterns))
    return sorted(str(Path(p).relative_to(root)) for p in scan.files)


FILES = ["a.jpg", "b.tmp.jpg", "raw/c.jpg", "x/raw/d.jpg", "x/y/e.jpg", "exports/f.jpg",
         "x/exports/g.jpg", "keep/h1.jpg", "keep/h2.jpg", "#recycle/i.jpg", "x/Thumbs.db",
         ".thumbnails/j.jpg", "x/#snapshot/k.jpg", "deep/a/b/c/l.jpg"]


@pytest.mark.parametrize(("patterns", "left_out"), [
    ((), []),
    (("*.tmp.jpg",), ["b.tmp.jpg"]),
    (("raw/",), ["raw/c.jpg", "x/raw/d.jpg"]),  # a folder, at any depth
    (("/exports",), ["exports/f.jpg"]),  # anchored to the folder walked
    (("x/**/*.jpg",), ["x/exports/g.jpg", "x/raw/d.jpg", "x/y/e.jpg"]),
    (("deep/**/l.jpg",), ["deep/a/b/c/l.jpg"]),
    (("keep/h?.jpg", "!keep/h2.jpg"), ["keep/h1.jpg"]),  # a later ! brings one back
    (("*.jpg", "!a.jpg"), [f for f in FILES if f.endswith(".jpg") and f != "a.jpg"]),
])
def test_exclude_patterns_follow_gitignore(tmp_path: Path, patterns: tuple[str, ...],
                                           left_out: list[str]) -> None:
    root = _tree(tmp_path / "lib", FILES)
    litter = {"#recycle/i.jpg", ".thumbnails/j.jpg", "x/#snapshot/k.jpg"}  # Thumbs.db: not an image name
    expected = sorted(f for f in FILES if f.endswith(".jpg") and f not in litter and f not in left_out)
    assert _kept(root, *patterns) == expected


def test_clipseekignore_files_apply_below_them_whichever_folder_is_walked(tmp_path: Path) -> None:
    root = _tree(tmp_path / "lib", ["a.jpg", "a.raw.jpg", "sub/b.jpg", "sub/b.raw.jpg", "sub/edits/c.jpg",
                                    "other/edits/d.jpg"])
    (root / ".clipseekignore").write_text("# raw conversions\n*.raw.jpg\n")
    (root / "sub" / ".clipseekignore").write_text("edits/\n!b.raw.jpg\n")
    assert _kept(root) == ["a.jpg", "other/edits/d.jpg", "sub/b.jpg", "sub/b.raw.jpg"]
    # Walking the subfolder alone reads the file above it too.
    assert _kept(root / "sub") == ["b.jpg", "b.raw.jpg"]
    # --exclude comes last: it wins over the files.
    assert _kept(root / "sub", "b.raw.jpg") == ["b.jpg"]
    scan = scan_folder(root, excludes=Excludes(("other/",)))
    assert (scan.excluded, scan.litter) == (3, 0)  # a.raw.jpg, sub/edits/ and other/, not what is in them


def test_litter_can_be_brought_back_and_a_bad_pattern_is_one_sentence(tmp_path: Path) -> None:
    root = _tree(tmp_path / "lib", ["@eaDir/IMG_1.jpg/SYNOFILE_THUMB_M.jpg", "IMG_1.jpg"])
    assert _kept(root) == ["IMG_1.jpg"]
    assert _kept(root, "!@eaDir/") == ["@eaDir/IMG_1.jpg/SYNOFILE_THUMB_M.jpg", "IMG_1.jpg"]
    with pytest.raises(BadPattern, match=r"^--exclude holds a pattern that cannot be read"):
        Excludes(("!",))
    (root / ".clipseekignore").write_text("\\\n")
    with pytest.raises(BadPattern, match=r"\.clipseekignore holds a pattern"):
        scan_folder(root)


def test_ingest_and_sync_leave_out_what_the_folder_and_the_command_say(
    cli_env: dict[str, str], db: Database, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    share = _synology(tmp_path, sample_photos)
    (share / "raw").mkdir()
    shutil.copy(sample_photos[2].path, share / "raw" / "IMG_2.jpg")
    shutil.copy(sample_photos[3].path, share / "IMG_3.jpg")
    (share / "Thumbs.db").write_bytes(b"\0" * 64)
    (share / ".clipseekignore").write_text("raw/\n")
    ingested = run_in_process(cli_env, "ingest", str(share), "--exclude", "IMG_3.jpg", "--inline",
                              "--no-progress")
    assert ingested.returncode == 0, ingested.stderr
    assert "4 left out (2 by .clipseekignore/--exclude, 2 NAS/OS litter)" in ingested.stdout
    assert "Registered 1 new file(s)" in ingested.stdout
    synced = run_in_process(cli_env, "sync", str(share), "--inline")
    # Without the --exclude, IMG_3.jpg joins; what was indexed stays.
    assert "1 new" in synced.stdout and "1 unchanged" in synced.stdout
    assert "3 left out (1 by .clipseekignore/--exclude, 2 NAS/OS litter)" in synced.stdout
    (share / ".clipseekignore").write_text("raw/\nIMG_1.jpg\n")
    hidden = run_in_process(cli_env, "sync", str(share), "--inline")
    assert "1 missing" in hidden.stdout  # left out from now on: out of search like a missing file
    with db.session() as session:
        rows = dict(session.execute(select(Image.original_name, Image.status)).all())
    assert rows == {"IMG_1.jpg": ImageStatus.MISSING, "IMG_3.jpg": ImageStatus.INDEXED}
    bad = run_in_process(cli_env, "sync", str(share), "--exclude", "!")
    assert bad.returncode == 1 and bad.stderr.startswith("Error: --exclude holds a pattern")
