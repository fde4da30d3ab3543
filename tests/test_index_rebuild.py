"""`clipseek db index`: a model's graph shown, and built again with other parameters while
searches keep using the old one."""

from __future__ import annotations

import subprocess
import threading

import psycopg
import pytest
from sqlalchemy import text

from clipseek.errors import ClipSeekError
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.vector_indexes import (
    _building_name,
    check_graph,
    create_index,
    index_graph,
    index_name,
    rebuild_index,
)
from tests.waiting import wait_for

MODEL = "graph/model"


def _rows(db: Database, count: int) -> None:
    """`count` images with 8-d embeddings of MODEL."""
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO images (id, sha256, path, original_name, source, file_size, status) "
                          "SELECT g, lpad(g::text, 64, '0'), 'p' || g, 'n', 'folder', 1, 'indexed' "
                          "FROM generate_series(1, :n) g"), {"n": count})
        conn.execute(text("INSERT INTO embeddings (image_id, model, embedding) "
                          "SELECT g, :m, array_fill((g % 7)::real + 1, ARRAY[8])::halfvec "
                          "FROM generate_series(1, :n) g"), {"m": MODEL, "n": count})


def _index_used(db: Database, name: str) -> bool:
    """Whether a search of MODEL is planned through the index called `name`."""
    with db.engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(conn.scalars(text(
            f"EXPLAIN SELECT image_id FROM embeddings WHERE model = '{MODEL}' "
            "ORDER BY embedding::halfvec(8) <=> CAST('[1,1,1,1,1,1,1,1]' AS halfvec(8)) LIMIT 5")))
    return name in plan


def test_a_rebuild_replaces_the_graph_while_searches_use_the_old_one(db: Database) -> None:
    _rows(db, 50)
    create_index(db.engine, MODEL, 8)
    before = index_graph(db.engine, MODEL)
    assert before is not None and (before.m, before.ef_construction, before.valid) == (16, 64, True)
    address = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    phases: list[str] = []
    failed: list[BaseException] = []
    with psycopg.connect(address) as old:
        # An open snapshot holds the concurrent build back, as a long report would.
        old.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        old.execute("SELECT count(*) FROM images").fetchall()

        def rebuild() -> None:
            try:
                rebuild_index(db.engine, MODEL, 8, m=24, ef_construction=96, memory="64MB",
                              progress=lambda phase, done, total: phases.append(phase), poll_s=0.1)
            except BaseException as exc:  # handed to the test's thread
                failed.append(exc)

        thread = threading.Thread(target=rebuild)
        thread.start()
        wait_for(lambda: bool(phases), 60, "the rebuild to report its phase")
        # Meanwhile the old graph is there, valid, and searches go through it.
        assert thread.is_alive()
        assert index_graph(db.engine, MODEL) == before
        assert _index_used(db, index_name(MODEL))
        old.rollback()
        thread.join(timeout=120)
    assert not thread.is_alive() and not failed
    after = index_graph(db.engine, MODEL)
    assert after is not None and (after.name, after.m, after.ef_construction, after.valid) == \
        (index_name(MODEL), 24, 96, True)
    assert _index_used(db, index_name(MODEL))
    with db.engine.connect() as conn:
        names = set(conn.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings'")))
    assert _building_name(MODEL) not in names


def test_a_failed_rebuild_keeps_the_old_graph(db: Database) -> None:
    _rows(db, 20)
    create_index(db.engine, MODEL, 8)
    with pytest.raises(ClipSeekError, match="maintenance_work_mem"):
        rebuild_index(db.engine, MODEL, 8, m=24, ef_construction=96, memory="a lot")
    graph = index_graph(db.engine, MODEL)
    assert graph is not None and (graph.m, graph.valid) == (16, True)


@pytest.mark.parametrize(("m", "ef", "said"), [
    (1, 64, "m must be between 2 and 100, not 1"),
    (101, 400, "m must be between 2 and 100, not 101"),
    (16, 3, "ef_construction must be between 4 and 1000, not 3"),
    (32, 48, "ef_construction must be at least twice m (64), not 48"),
])
def test_graph_parameters_pgvector_would_refuse_are_refused_in_a_sentence(m: int, ef: int, said: str) -> None:
    with pytest.raises(ClipSeekError, match=said.replace("(", r"\(").replace(")", r"\)")):
        check_graph(m, ef)


def test_the_command_shows_and_rebuilds_the_active_models_graph(settings: Settings, db: Database,
                                                                 cli_env: dict[str, str]) -> None:
    def clipseek(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["clipseek", "db", "index", *args], env=cli_env, capture_output=True,
                              text=True, timeout=300)

    shown = clipseek()
    assert shown.returncode == 0, shown.stderr
    assert f"{index_name(settings.model)}: m = 16, ef_construction = 64" in shown.stdout
    refused = clipseek("--m", "40")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "Error: ef_construction must be at least twice m (80), not 64."
    rebuilt = clipseek("--m", "24", "--ef-construction", "128")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "m = 24, ef_construction = 128" in rebuilt.stdout
    graph = index_graph(db.engine, settings.model)
    assert graph is not None and (graph.m, graph.ef_construction) == (24, 128)
