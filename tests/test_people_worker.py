"""A real worker finds faces after indexing, on the low-priority queue: skipped while people is
off, the backlog found once it is turned on, and two people in several pictures each become two."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from clipseek.store.db import Database
from clipseek.store.tables import Face, FacesState, Image
from tests.cli import run_in_process
from tests.faces import write_face_photos
from tests.waiting import wait_for
from tests.workers import WorkerProcess


@pytest.fixture
def worker_env(cli_env: dict[str, str], redis_url: str) -> dict[str, str]:
    return cli_env | {"REDIS_URL": redis_url, "CLIPSEEK_BATCH_SIZE": "4"}


@pytest.fixture
def worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(worker_env, tmp_path / "worker.log")
    process.wait_ready()
    yield process
    process.stop()


def _states(db: Database) -> dict[str, str | None]:
    with db.session() as session:
        rows = session.execute(select(Image.path, Image.faces_state))
        return {Path(path).stem: state for path, state in rows}


@pytest.mark.slow  # the fast tier keeps one representative; CI runs every one
def test_the_worker_skips_faces_while_off_then_groups_two_people_once_on(
    db: Database, worker_env: dict[str, str], worker: WorkerProcess, tmp_path: Path,
) -> None:
    photos = write_face_photos(tmp_path / "all")
    first = tmp_path / "first"
    first.mkdir()
    for name in ("grace-original", "coffee"):
        shutil.copy(photos[name], first)
    assert run_in_process(worker_env, "ingest", str(first), "--no-progress").returncode == 0
    wait_for(lambda: set(_states(db).values()) == {FacesState.SKIPPED}, timeout=120,
             what="both pictures indexed with their faces skipped (people is off)")

    enabled = run_in_process(worker_env, "people", "enable")
    assert "People is on: 2 picture(s) wait" in enabled.stdout, enabled.stderr
    wait_for(lambda: _states(db) == {"grace-original": FacesState.FOUND, "coffee": FacesState.NONE},
             timeout=120, what="the backlog's faces found")

    rest = tmp_path / "rest"
    rest.mkdir()
    for name, path in photos.items():
        if name not in ("grace-original", "coffee"):
            shutil.copy(path, rest)
    assert run_in_process(worker_env, "ingest", str(rest), "--no-progress").returncode == 0
    wait_for(lambda: len(_states(db)) == 11 and None not in _states(db).values(), timeout=180,
             what="every picture's faces found")

    with db.session() as session:
        rows = session.execute(select(Image.path, Face.person_id, Image.indexed_at, Image.faces_at)
                               .join(Face, Face.image_id == Image.id)).all()
    people: dict[int | None, set[str]] = {}
    for stored, person_id, indexed_at, faces_at in rows:
        people.setdefault(person_id, set()).add(Path(stored).stem.split("-")[0])
        assert indexed_at is not None and faces_at is not None and indexed_at <= faces_at
    # Exactly two people, each of one person's five pictures, and no face left out.
    assert sorted(map(sorted, people.values())) == [["astronaut"], ["grace"]]
    assert None not in people and len(rows) == 10
    listed = json.loads(run_in_process(worker_env, "people", "--json").stdout)["people"]
    assert sorted((p["faces"], p["images"]) for p in listed) == [(5, 5), (5, 5)]
    status = json.loads(run_in_process(worker_env, "status", "--json").stdout)["people"]
    assert status == {"enabled": True, "faces": 10, "people": 2, "named": 0, "waiting": 0, "failed": 0}
