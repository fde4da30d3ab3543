"""Collections and deletion from the command line, run as a user runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from clipseek.library.register import Candidate
from clipseek.store.db import Database
from clipseek.store.tables import Image
from tests.cli import CliResult, run_in_process


def _run(env: dict[str, str], *args: str, answer: str | None = None) -> CliResult:
    return run_in_process(env, *args, stdin=answer)


def _photos(tmp_path: Path, sample_photos: list[Candidate], name: str, count: int) -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True)
    for c in sample_photos[:count]:
        shutil.copy(c.path, folder)
    return folder


def _collections(env: dict[str, str]) -> dict[str | None, dict[str, Any]]:
    out = _run(env, "collections", "--json")
    assert out.returncode == 0, out.stderr
    return {c["name"]: c for c in json.loads(out.stdout)["collections"]}


def test_ingest_names_the_collection_after_the_folder_unless_told(
    cli_env: dict[str, str], sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    trips = _photos(tmp_path, sample_photos, "trips", 3)
    (trips / "2019").mkdir()
    shutil.copy(sample_photos[3].path, trips / "2019")
    other = _photos(tmp_path, sample_photos[4:], "misc", 2)
    assert _run(cli_env, "ingest", str(trips), "--inline", "--no-progress").returncode == 0
    assert _run(cli_env, "ingest", str(other), "--collection", " Family ", "--no-progress").returncode == 0
    found = _collections(cli_env)
    assert set(found) == {"trips", "Family"}
    assert found["trips"]["images"] == 4 and found["trips"]["by_status"] == {
        "registered": 0, "queued": 0, "indexed": 4, "failed": 0, "missing": 0}
    assert found["Family"]["by_status"]["queued"] == 2
    text = _run(cli_env, "collections").stdout
    assert "trips: 4 image(s) (indexed 4)" in text and "Family: 2 image(s) (queued 2)" in text
    lone = _photos(tmp_path / "deep", sample_photos[6:], "loose", 1)
    assert _run(cli_env, "ingest", str(next(lone.iterdir())), "--no-progress").returncode == 0
    assert _collections(cli_env)["loose"]["images"] == 1  # a file named alone: its folder's name
    bad = _run(cli_env, "ingest", str(other), "--collection", " ")
    assert bad.returncode == 1 and bad.stderr.strip() == "Error: A collection name cannot be empty."


def test_collections_are_renamed_and_deleted_after_confirmation(
    cli_env: dict[str, str], sample_photos: list[Candidate], tmp_path: Path, db: Database,
) -> None:
    folder = _photos(tmp_path, sample_photos, "holiday", 3)
    _run(cli_env, "ingest", str(folder), "--inline", "--no-progress")
    renamed = _run(cli_env, "collections", "rename", "holiday", "Greece 2019")
    assert renamed.returncode == 0 and "Renamed 'holiday' to 'Greece 2019' (3 image(s))" in renamed.stdout
    missing = _run(cli_env, "collections", "rename", "holiday", "x")
    assert missing.returncode == 1 and "There is no collection 'holiday'" in missing.stderr

    refused = _run(cli_env, "collections", "delete", "Greece 2019", answer="n\n")
    assert "Move 3 picture(s) to the trash? [y/N]" in refused.stderr
    assert "Nothing was deleted." in refused.stdout
    assert set(_collections(cli_env)) == {"Greece 2019"}
    done = _run(cli_env, "collections", "delete", "Greece 2019", answer="y\n")
    assert done.returncode == 0, done.stderr
    assert "3 picture(s) moved to the trash; kept for 30 days" in done.stdout
    assert _collections(cli_env) == {} and len(list(folder.iterdir())) == 3


def test_delete_by_id_into_the_trash_and_by_folder_for_good_with_the_files(
    cli_env: dict[str, str], sample_photos: list[Candidate], tmp_path: Path, db: Database,
) -> None:
    keep = _photos(tmp_path, sample_photos, "keep", 2)
    gone = _photos(tmp_path, sample_photos[2:], "gone", 2)
    _run(cli_env, "ingest", str(keep), str(gone), "--no-progress")
    with db.session() as s:
        first = s.scalar(select(func.min(Image.id)).where(Image.collection == "keep"))
    assert first is not None
    by_id = _run(cli_env, "delete", str(first), "--yes")
    assert by_id.returncode == 0 and "1 picture(s) moved to the trash" in by_id.stdout
    asked = _run(cli_env, "delete", "--path-prefix", str(gone), "--delete-files", answer="n\n")
    assert "Delete 2 picture(s) and their original files for good (not into the trash)?" in asked.stderr
    by_folder = _run(cli_env, "delete", "--path-prefix", str(gone), "--delete-files", "--yes")
    assert "Deleted 2 image(s) for good; removed 2 stored or original file(s)" in by_folder.stdout
    assert list(gone.iterdir()) == [] and len(list(keep.iterdir())) == 2
    assert _collections(cli_env)["keep"]["images"] == 1
    nothing = _run(cli_env, "delete", "999999", "--yes")
    assert nothing.returncode == 0 and "No image matches; nothing was deleted." in nothing.stdout
    unclear = _run(cli_env, "delete", "--collection", "keep", "--path-prefix", str(keep))
    assert unclear.returncode == 1 and "in one way" in unclear.stderr
