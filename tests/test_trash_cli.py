"""The trash from the command line: `clipseek delete` moves pictures there, sync leaves them out,
`clipseek trash list|restore|empty` and `--bring-back`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from clipseek.library.register import Candidate
from clipseek.store.db import Database
from tests.cli import CliResult, run_in_process


def _run(env: dict[str, str], *args: str, answer: str | None = None) -> CliResult:
    return run_in_process(env, *args, stdin=answer)


def _library(tmp_path: Path, sample_photos: list[Candidate]) -> Path:
    """LIB/exif with six pictures and LIB/other with two."""
    library = tmp_path / "LIB"
    for name, photos in (("exif", sample_photos[:6]), ("other", sample_photos[6:8])):
        (library / name).mkdir(parents=True)
        for c in photos:
            shutil.copy(c.path, library / name / c.path.name)
    return library


def test_a_deleted_folder_is_not_registered_again_by_the_next_sync(
    cli_env: dict[str, str], db: Database, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    library = _library(tmp_path, sample_photos)
    first = _run(cli_env, "sync", str(library), "--inline")
    assert first.returncode == 0, first.stderr
    assert "8 new" in first.stdout
    deleted = _run(cli_env, "delete", "--path-prefix", str(library / "exif"), answer="y\n")
    assert deleted.returncode == 0, deleted.stderr
    again = _run(cli_env, "sync", str(library), "--inline")
    assert again.returncode == 0, again.stderr
    assert "0 new" in again.stdout, again.stdout
    assert "Left out 6 file(s) of deleted pictures" in again.stdout
    assert "8 unchanged" not in again.stdout and "2 unchanged" in again.stdout


def test_delete_moves_to_the_trash_and_trash_lists_restores_and_empties(
    cli_env: dict[str, str], db: Database, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    library = _library(tmp_path, sample_photos)
    exif = library / "exif"
    assert _run(cli_env, "sync", str(library), "--inline").returncode == 0
    asked = _run(cli_env, "delete", "--path-prefix", str(exif), answer="n\n")
    assert "Move 6 picture(s) to the trash? [y/N]" in asked.stderr and "Nothing was deleted." in asked.stdout
    moved = _run(cli_env, "delete", "--path-prefix", str(exif), "--yes")
    assert moved.stdout.strip() == ("6 picture(s) moved to the trash; kept for 30 days; "
                                    "`clipseek trash restore` brings them back.")
    assert "Images: 2 (registered 0, queued 0, indexed 2, failed 0, missing 0); 6 in the trash" in _run(
        cli_env, "status").stdout
    listed = _run(cli_env, "trash", "list")
    assert "6 picture(s) in the trash, each kept for 30 days after it was deleted:" in listed.stdout
    assert "30 day(s) left" in listed.stdout and str(exif) in listed.stdout
    as_json = json.loads(_run(cli_env, "trash", "list", "--json").stdout)
    assert as_json["total"] == 6 and as_json["keep_days"] == 30 and len(as_json["pictures"]) == 6
    first = as_json["pictures"][0]["image_id"]

    unclear = _run(cli_env, "trash", "restore", "--all", str(first))
    assert unclear.returncode == 1 and "in one way" in unclear.stderr
    one = _run(cli_env, "trash", "restore", str(first))
    assert one.stdout.strip() == "Restored 1 picture(s)."
    assert "Nothing in the trash matches" in _run(cli_env, "trash", "restore", str(first)).stdout
    synced = _run(cli_env, "sync", str(library), "--inline")
    assert "0 new" in synced.stdout and "3 unchanged" in synced.stdout and "Left out 5" in synced.stdout

    refused = _run(cli_env, "trash", "empty", answer="n\n")
    assert "Remove 5 picture(s) in the trash for good?" in refused.stderr
    assert "Nothing was removed." in refused.stdout
    assert "Nothing in the trash matches" in _run(cli_env, "trash", "empty", "--older-than", "1").stdout
    emptied = _run(cli_env, "trash", "empty", "--yes")
    assert emptied.returncode == 0, emptied.stderr
    assert "Removed 5 picture(s) for good: deleted 0 stored file(s); 5 file(s) in your folders stay" \
        in emptied.stdout
    assert len(list(exif.iterdir())) == 6  # synced files are never deleted
    assert _run(cli_env, "trash", "list").stdout.strip() == "The trash is empty."
    after = _run(cli_env, "sync", str(library), "--inline")
    assert "0 new" in after.stdout and "Left out 5 file(s) of deleted pictures" in after.stdout
    back = _run(cli_env, "sync", str(library), "--inline", "--bring-back")
    assert "5 new" in back.stdout and "Left out" not in back.stdout


def test_ingest_of_a_folder_leaves_out_deleted_files_unless_brought_back(
    cli_env: dict[str, str], db: Database, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    library = _library(tmp_path, sample_photos)
    assert _run(cli_env, "ingest", str(library), "--inline", "--no-progress").returncode == 0
    assert _run(cli_env, "delete", "--collection", "LIB", "--yes").returncode == 0
    assert _run(cli_env, "trash", "empty", "--yes").returncode == 0
    # Every picture of the folder is gone, yet the folder is known: it is synced, not imported.
    again = _run(cli_env, "ingest", str(library), "--inline", "--no-progress")
    assert "0 new" in again.stdout and "Left out 8 file(s) of deleted pictures" in again.stdout
    copied = _run(cli_env, "ingest", str(library / "other"), "--copy", "--inline", "--no-progress")
    assert "Left out 2 file(s) of deleted pictures; --bring-back registers them again." in copied.stdout
    named = _run(cli_env, "ingest", str(library / "other" / sample_photos[6].path.name), "--inline",
                 "--no-progress")
    assert "Registered 1 new file(s)" in named.stdout  # a file named on its own comes back
    back = _run(cli_env, "ingest", str(library), "--inline", "--no-progress", "--bring-back")
    assert "7 new" in back.stdout and "1 unchanged" in back.stdout
