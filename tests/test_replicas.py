"""Reads from a real streaming replica (DATABASE_READ_URL), made from the shipped PostgreSQL
binaries with pg_basebackup: searches served by it, writers reading their own writes, and a
replica that stops, lags or comes back costing no request."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from PIL import Image as PILImage

from clipseek.context import open_database
from clipseek.settings import RANDOM_MODEL, Settings
from clipseek.store.db import Database
from clipseek.store.embedded_db import EmbeddedPostgres
from clipseek.store.replicas import parse_lsn
from clipseek.store.tables import Embedding, Image, ImageStatus
from tests.conftest import TEST_PRECISION
from tests.waiting import wait_for
from webapp import create_app


@dataclass
class Pair:
    """A primary and its streaming replica, each an embedded server of its own."""

    primary: EmbeddedPostgres
    replica: EmbeddedPostgres

    def replayed(self) -> bool:
        """Whether the replica has replayed everything the primary has written so far."""
        with self.primary.admin_connection() as conn:
            written = parse_lsn(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])  # type: ignore[index]
        with self.replica.admin_connection() as conn:
            replayed = conn.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()[0]  # type: ignore[index]
        return parse_lsn(replayed) >= written

    def embedding_scans(self, server: EmbeddedPostgres) -> int:
        """How many scans of the embeddings table a server's statistics have counted."""
        with server.admin_connection("clipseek") as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute("SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) "
                               "FROM pg_stat_user_tables WHERE relname = 'embeddings'").fetchone()
        return int(row[0]) if row else 0

    def pause_replay(self) -> None:
        """Stop the replica applying WAL (it keeps receiving it): it lags from now on."""
        with self.replica.admin_connection() as conn:
            conn.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        """Let the replica catch up again."""
        with self.replica.admin_connection() as conn:
            conn.execute("SELECT pg_wal_replay_resume()")


SEARCH = "/api/search?like=1"
SCRIPT = {"X-Requested-With": "test"}  # the API's own callers, without a form's token


def _add_indexed_pictures(db: Database, count: int) -> None:
    """Pictures with embeddings, as indexing leaves them (no model needed: searches ask by image)."""
    vectors = np.random.default_rng(7).normal(size=(count, 512)).astype(np.float32)
    with db.session() as session:
        for n, vector in enumerate(vectors / np.linalg.norm(vectors, axis=1, keepdims=True)):
            image = Image(sha256=f"{n:064x}", path=f"/nowhere/{n}.jpg", original_name=f"{n}.jpg",
                          source="test", file_size=1, width=64, height=48, format="JPEG",
                          status=ImageStatus.INDEXED)
            session.add(image)
            session.flush()
            session.add(Embedding(image_id=image.id, model=RANDOM_MODEL, embedding=vector))
        session.commit()


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    """A primary holding four indexed pictures and a streaming replica that has replayed them."""
    folder = Path(tempfile.mkdtemp(prefix="clipseek-replicas-", dir="/tmp"))
    primary = EmbeddedPostgres(folder / "primary")
    replica = EmbeddedPostgres(folder / "replica")
    try:
        primary.ensure_running()
        settings = _settings(folder / "loader", primary, None)
        db = open_database(settings)
        _add_indexed_pictures(db, 4)
        db.close()
        replica.ensure_replica_of(primary)
        found = Pair(primary, replica)
        wait_for(found.replayed, 60, "the replica to replay the primary's WAL")
        yield found
    finally:
        replica.stop(mode="immediate")
        primary.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _settings(home: Path, primary: EmbeddedPostgres, replica: EmbeddedPostgres | None,
              **extra: str) -> Settings:
    env = {"CLIPSEEK_HOME": str(home), "DATABASE_URL": primary.url(), "CLIPSEEK_MODEL": RANDOM_MODEL,
           "CLIPSEEK_OFFLINE": "1", "CLIPSEEK_PRECISION": TEST_PRECISION} | extra
    if replica is not None:
        env["DATABASE_READ_URL"] = replica.url()
    return Settings.from_env(env)


@pytest.fixture
def make_app(pair: Pair, tmp_path: Path, redis_url: str) -> Iterator[Callable[..., Flask]]:
    """Build web apps on the pair (reading from the replica), closed after the test."""
    apps: list[Flask] = []

    def build(**extra: str) -> Flask:
        settings = _settings(tmp_path / "home", pair.primary, pair.replica, **extra)
        app = create_app({"TESTING": True}, settings=settings.with_changes(redis_url=redis_url))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["clipseek"].close()


def _photo(seed: int) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (64, 48), ((seed * 37) % 256, (seed * 91) % 256, 120)).save(out, "PNG")
    return out.getvalue()


def _replica_state(app: Flask) -> str:
    replicas = app.test_client().get("/api/status").get_json()["replicas"]
    assert len(replicas) == 1
    return str(replicas[0]["state"])


def test_searches_are_answered_by_the_replica(pair: Pair, make_app: Callable[..., Flask],
                                              tmp_path: Path, redis_url: str) -> None:
    app = make_app()
    client = app.test_client()
    before, on_primary = pair.embedding_scans(pair.replica), pair.embedding_scans(pair.primary)
    for _ in range(4):
        found = client.get(SEARCH)
        assert found.status_code == 200 and len(found.get_json()["results"]) == 3
    # The pages read there too: browsing, a search page, a picture with its neighbours.
    for page in ("/", "/?like=1", "/image/1", "/image/1/similar", "/api/images/1/similar"):
        assert client.get(page).status_code == 200, page
    # A backend sends its statistics when it ends: close the app's connections, then read them.
    app.extensions["clipseek"].close()
    wait_for(lambda: pair.embedding_scans(pair.replica) >= before + 4, 30,
             "the replica's statistics to count the searches")
    assert pair.embedding_scans(pair.primary) == on_primary
    assert _replica_state(app) == "up"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIPSEEK_", "DATABASE_", "REDIS_"))}
    env |= {"CLIPSEEK_HOME": str(tmp_path / "cli"), "DATABASE_URL": pair.primary.url(),
            "DATABASE_READ_URL": pair.replica.url(), "REDIS_URL": redis_url,
            "CLIPSEEK_MODEL": RANDOM_MODEL, "CLIPSEEK_OFFLINE": "1",
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    shown = subprocess.run(["clipseek", "status"], env=env, capture_output=True, text=True,
                           timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    assert f"Replica {pair.replica.socket_dir}:5432/clipseek: up, " in shown.stdout


def test_an_upload_and_a_deletion_are_seen_by_their_author_at_once_while_the_replica_lags(
    pair: Pair, make_app: Callable[..., Flask],
) -> None:
    app = make_app()
    author, stranger = app.test_client(), app.test_client()
    assert stranger.get("/api/images?ids=1").status_code == 200  # the stranger reads from the replica
    pair.pause_replay()
    try:
        sent = author.post("/api/images", data={"files": [(io.BytesIO(_photo(1)), "new.png")]},
                           content_type="multipart/form-data", headers=SCRIPT)
        assert sent.status_code == 202
        image_id = sent.get_json()["uploads"][0]["image_id"]
        mine = author.get(f"/api/images?ids={image_id}").get_json()["images"]
        assert [i["image_id"] for i in mine] == [image_id]
        assert author.get(f"/api/images/{image_id}").status_code == 200
        # Someone who wrote nothing reads from the replica, which has not replayed the upload.
        assert stranger.get(f"/api/images?ids={image_id}").get_json()["images"] == []
        assert author.delete(f"/api/images/{image_id}", headers=SCRIPT).status_code == 200
        assert author.get(f"/api/images/{image_id}").status_code == 404
        assert stranger.get(f"/api/images/{image_id}").status_code == 404  # never seen there yet
    finally:
        pair.resume_replay()
    wait_for(pair.replayed, 30, "the replica to catch up")
    wait_for(lambda: stranger.get(f"/api/images/{image_id}").status_code == 404, 30,
             "the replica to show the deletion")


def test_a_lagging_replica_is_skipped_and_comes_back(pair: Pair, make_app: Callable[..., Flask]) -> None:
    app = make_app(CLIPSEEK_REPLICA_MAX_LAG="1")
    writer, reader = make_app().test_client(), app.test_client()
    wait_for(lambda: _replica_state(app) == "up", 30, "the replica to be up")
    pair.pause_replay()
    try:
        sent = writer.post("/api/images", data={"files": [(io.BytesIO(_photo(2)), "late.png")]},
                           content_type="multipart/form-data", headers=SCRIPT)
        image_id = sent.get_json()["uploads"][0]["image_id"]
        wait_for(lambda: _replica_state(app) == "lagging", 30, "the replica to count as lagging")
        page = reader.get("/status").get_data(as_text=True)
        assert "Replica " in page and 'class="replica replica-lagging"' in page
        # The reader wrote nothing, yet sees the upload: its reads went to the primary.
        assert [i["image_id"] for i in reader.get(f"/api/images?ids={image_id}").get_json()["images"]] \
            == [image_id]
    finally:
        pair.resume_replay()
    wait_for(lambda: _replica_state(app) == "up", 30, "the replica to be used again")


def test_stopping_the_replica_under_load_fails_no_request_and_it_comes_back(
    pair: Pair, make_app: Callable[..., Flask],
) -> None:
    app = make_app()
    codes: list[int] = []
    stop = threading.Event()
    enough = threading.Semaphore(0)

    def search() -> None:
        client = app.test_client()
        while not stop.is_set():
            codes.append(client.get(SEARCH).status_code)
            enough.release()

    # The first request opens the app's database: not three threads at once.
    assert _replica_state(app) == "up"
    threads = [threading.Thread(target=search) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(6):
            enough.acquire(timeout=60)
        pair.replica.stop(mode="immediate")
        served = len(codes)
        wait_for(lambda: len(codes) >= served + 9, 60, "searches after the replica stopped")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert codes and set(codes) == {200}
    assert _replica_state(app) == "down"
    pair.replica.ensure_replica_of(pair.primary)
    wait_for(lambda: _replica_state(app) == "up", 60, "the restarted replica to be used again")


def test_read_urls_are_split_on_commas_and_without_them_every_read_is_on_the_primary(db: Database) -> None:
    settings = Settings.from_env({"CLIPSEEK_HOME": "/tmp/unused",
                                  "DATABASE_READ_URL": " postgresql://a/x , postgresql://b/x ,"})
    assert settings.database_read_urls == ("postgresql://a/x", "postgresql://b/x")
    assert Settings.from_env({"CLIPSEEK_HOME": "/tmp/unused"}).database_read_urls == ()
    assert db.replicas is None and db.replica_states() == []
    with db.read_session() as session:
        assert session.get_bind() is db.engine and "replica" not in session.info
