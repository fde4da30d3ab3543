"""The sync, prune and ingest commands on a folder that changes, and EXIF facts in the table."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

from PIL import ExifTags
from PIL import Image as PILImage
from sqlalchemy import select, update

from clipseek.library.register import Candidate
from clipseek.store.db import Database
from clipseek.store.tables import Image, ImageStatus
from clipseek.upkeep.reindexing import backfill_metadata
from tests.cli import CliResult, run_in_process


def _run(env: dict[str, str], *args: str) -> CliResult:
    return run_in_process(env, *args)


def _photo_with_exif(source: Path, target: Path) -> Path:
    with PILImage.open(source) as img:
        exif = PILImage.Exif()
        exif[271], exif[272] = "Canon", "EOS R6"
        details = exif.get_ifd(ExifTags.IFD.Exif)
        details[36867], details[36881] = "2023:12:24 19:45:00", "+01:00"
        img.convert("RGB").save(target, "JPEG", exif=exif)
    return target


def test_ingest_again_after_a_move_and_a_deletion_syncs_instead_of_duplicating(
    cli_env: dict[str, str], db: Database, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for c in sample_photos[:4]:
        shutil.copy(c.path, folder)
    (folder / "notes.txt").write_text("not a picture")
    first = _run(cli_env, "ingest", str(folder), "--inline", "--no-progress")
    assert first.returncode == 0, first.stderr
    assert "Skipped 1 file(s) not named like images, e.g. notes.txt" in first.stdout
    moved, deleted = sample_photos[0].path.name, sample_photos[1].path.name
    (folder / "sub").mkdir()
    (folder / moved).rename(folder / "sub" / moved)
    (folder / deleted).unlink()
    again = _run(cli_env, "ingest", str(folder), "--inline", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "0 new, 0 changed, 1 moved, 1 missing, 0 returned, 2 unchanged, 0 duplicates" in again.stdout
    with db.session() as session:
        rows = {Path(i.path).name: i for i in session.scalars(select(Image))}
    assert rows[moved].path == str(folder / "sub" / moved)
    assert rows[deleted].status == ImageStatus.MISSING and len(rows) == 4
    searched = _run(cli_env, "search", "a photo", "--json")
    assert '"total": 3' in searched.stdout
    pruned = _run(cli_env, "prune")
    assert pruned.returncode == 0 and "Removed 1 missing image(s)." in pruned.stdout


def test_sync_of_a_vanished_folder_says_so_in_one_sentence(
    cli_env: dict[str, str], sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = tmp_path / "drive"
    folder.mkdir()
    shutil.copy(sample_photos[0].path, folder)
    assert _run(cli_env, "sync", str(folder), "--inline").returncode == 0
    folder.rename(tmp_path / "elsewhere")
    refused = _run(cli_env, "sync", str(folder), "--inline")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "does not exist (an unmounted drive?)" in refused.stderr
    allowed = _run(cli_env, "sync", str(folder), "--inline", "--allow-missing-root")
    assert allowed.returncode == 0 and "1 missing" in allowed.stdout


def test_registration_records_exif_facts_and_reindex_backfills_old_rows(
    cli_env: dict[str, str], db: Database, sample_photos: list[Candidate], tmp_path: Path,
) -> None:
    folder = tmp_path / "camera"
    folder.mkdir()
    _photo_with_exif(sample_photos[0].path, folder / "party.jpg")
    assert _run(cli_env, "sync", str(folder), "--inline").returncode == 0
    with db.session() as session:
        row = session.scalars(select(Image)).one()
        assert row.taken_at == datetime(2023, 12, 24, 19, 45) and row.taken_offset_minutes == 60
        assert (row.camera_make, row.camera_model) == ("Canon", "EOS R6")
        assert row.display_width == row.width and row.file_mtime
        # As a row registered before ClipSeek read EXIF.
        session.execute(update(Image).values(taken_at=None, camera_make=None, display_width=None))
        session.commit()
    backfilled = _run(cli_env, "reindex", "--metadata")
    assert backfilled.returncode == 0 and "Read the EXIF facts of 1 image(s)." in backfilled.stdout
    with db.session() as session:
        row = session.scalars(select(Image)).one()
        assert row.taken_at == datetime(2023, 12, 24, 19, 45) and row.camera_make == "Canon"
        assert backfill_metadata(session) == 0
