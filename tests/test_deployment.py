"""The deployment files agree with the code: compose validates, its commands run, gunicorn serves."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from clipseek import accounts
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.embedded_db import EmbeddedPostgres

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
SECRETS = {"POSTGRES_PASSWORD": "pw", "CLIPSEEK_SECRET_KEY": "key",
           "CLIPSEEK_ADMIN_PASSWORD": "long enough now", "CLIPSEEK_APP_DB_PASSWORD": "app-password-123"}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert shutil.which("docker-compose"), "needs Debian's docker-compose: apt-get install docker-compose"
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], env=clean | env,
                          capture_output=True, text=True, cwd=ROOT, check=False)


def test_compose_file_is_valid() -> None:
    result = _compose_config(SECRETS)
    assert result.returncode == 0, result.stderr


def test_compose_fails_loudly_without_secrets() -> None:
    result = _compose_config({"CLIPSEEK_SECRET_KEY": "key"})
    assert result.returncode != 0 and "set POSTGRES_PASSWORD in .env" in result.stderr


def test_compose_runs_the_app_as_a_role_that_is_no_superuser() -> None:
    without = {k: v for k, v in SECRETS.items() if k != "CLIPSEEK_APP_DB_PASSWORD"}
    result = _compose_config(without)
    assert result.returncode != 0 and "set CLIPSEEK_APP_DB_PASSWORD in .env" in result.stderr
    services = _compose()["services"]
    for name in ("web", "worker", "scheduler"):
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgresql://clipseek_app:")
    # Only the one-shot setup logs in as the superuser, and it hands the database over.
    assert services["migrate"]["environment"]["DATABASE_URL"].startswith("postgresql://clipseek:")
    assert services["migrate"]["command"] == ["clipseek", "db", "app-role", "clipseek_app"]
    assert services["db"]["environment"]["POSTGRES_USER"] == "clipseek"


def test_compose_refuses_to_start_without_the_admin_password() -> None:
    result = _compose_config({"POSTGRES_PASSWORD": "pw", "CLIPSEEK_SECRET_KEY": "key",
                              "CLIPSEEK_APP_DB_PASSWORD": "app-password-123"})
    assert result.returncode != 0 and "set CLIPSEEK_ADMIN_PASSWORD in .env" in result.stderr
    for name in ("web", "worker", "migrate"):
        assert _compose()["services"][name]["environment"]["CLIPSEEK_REQUIRE_ACCOUNTS"] == "1"


def test_services_healthchecks_and_order_are_as_documented() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"db", "redis", "migrate", "web", "worker", "scheduler", "db-replica"}
    assert "healthcheck" in services["db"] and "healthcheck" in services["redis"]
    for name in ("web", "worker"):
        needs = services[name]["depends_on"]
        assert needs["db"]["condition"] == "service_healthy"
        assert needs["redis"]["condition"] == "service_healthy"
        assert needs["migrate"]["condition"] == "service_completed_successfully"
    assert set(compose["volumes"]) == {"pgdata", "redisdata", "images", "models", "replicadata"}
    assert services["worker"]["command"] == ["clipseek", "worker", "--no-beat"]
    assert "ports" not in services["worker"]  # so that --scale worker=N works
    deployment = (ROOT / "docs" / "deployment.md").read_text()
    for word in [*services, *compose["volumes"], "--scale worker=", "pg_dump", "clipseek db upgrade"]:
        assert word in deployment, word


def test_the_replica_profile_adds_a_streaming_replica_the_web_app_may_read_from() -> None:
    services = _compose()["services"]
    replica = services["db-replica"]
    assert replica["profiles"] == ["replica"] and replica["image"] == services["db"]["image"]
    assert "pg_basebackup -h db" in replica["command"][0] and " -R " in replica["command"][0]
    assert services["web"]["environment"]["DATABASE_READ_URL"] == "${DATABASE_READ_URL:-}"
    # The primary lets replicas connect: the official image runs this on a new database.
    assert any("allow-replication.sh:/docker-entrypoint-initdb.d/" in v for v in services["db"]["volumes"])
    assert "--profile replica" in (ROOT / "docs" / "deployment.md").read_text()


def test_database_image_matches_the_tested_postgres(pg_server: EmbeddedPostgres) -> None:
    image = _compose()["services"]["db"]["image"]
    with pg_server.admin_connection() as conn:
        major = conn.execute("SHOW server_version_num").fetchone()[0][:2]  # type: ignore[index]
    assert image == f"pgvector/pgvector:pg{major}"


def test_dockerfile_runs_as_a_user_and_serves_the_wsgi_app() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "\nUSER clipseek\n" in dockerfile
    web = _compose()["services"]["web"]["command"]
    assert web[0] == "gunicorn" and web[-1] == "webapp:create_app()"
    assert '"webapp:create_app()"]' in dockerfile


@pytest.mark.parametrize("command", [["db", "upgrade"], ["db", "app-role"], ["worker", "--no-beat"], ["beat"],
                                     ["fetch-weights"]])
def test_container_commands_exist(command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "clipseek", *command, "--help"],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0 and "Usage: clipseek" in result.stdout, result.stderr


def test_migration_command_builds_the_schema_and_hands_it_to_a_role_that_is_no_superuser(
    pg_server: EmbeddedPostgres, cli_env: dict[str, str]
) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    with pg_server.admin_connection() as conn:
        conn.execute("DROP DATABASE IF EXISTS compose_migrate WITH (FORCE)")
        conn.execute("CREATE DATABASE compose_migrate")
    url = pg_server.superuser_url("compose_migrate")
    command = _compose()["services"]["migrate"]["command"]
    env = cli_env | {"DATABASE_URL": url, "CLIPSEEK_APP_DB_PASSWORD": "app-password-123"}
    for _ in range(2):  # the migrate service runs at every start
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                                timeout=120)
        assert result.returncode == 0, result.stderr
    assert "clipseek_app owns database compose_migrate" in result.stdout
    with pg_server.admin_connection("compose_migrate") as conn:
        owners: dict[str, str] = dict(conn.execute("SELECT tablename, tableowner FROM pg_tables "
                                                   "WHERE schemaname = 'public'").fetchall())
        superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'clipseek_app'").fetchone()
    assert {"images", "captions", "embeddings", "alembic_version", "users"} <= set(owners)
    assert set(owners.values()) == {"clipseek_app"} and superuser == (False,)
    app_url = make_url(url).set(username="clipseek_app", password="app-password-123")
    # The application works as that role (a status reads every table it shows)...
    status = subprocess.run(["clipseek", "status", "--json"], capture_output=True, text=True,
                            env=cli_env | {"DATABASE_URL": app_url.render_as_string(hide_password=False)},
                            check=False, timeout=120)
    assert status.returncode == 0, status.stderr
    # ...and cannot do what only a superuser may.
    app_dsn = app_url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(app_dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("COPY (SELECT 1) TO PROGRAM 'id'")
    # The command refuses a login that is no superuser, and a short password, in one sentence.
    refused = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120,
                             env=env | {"DATABASE_URL": app_url.render_as_string(hide_password=False)})
    assert refused.returncode != 0 and "clipseek_app is no superuser" in refused.stderr
    short = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120,
                           env=env | {"CLIPSEEK_APP_DB_PASSWORD": "short"})
    assert short.returncode != 0 and "at least 12 characters" in short.stderr


def test_gunicorn_under_compose_settings_creates_the_admin_and_asks_for_it(
        cli_env: dict[str, str], redis_url: str, db: Database) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = cli_env | {"REDIS_URL": redis_url, "CLIPSEEK_REQUIRE_ACCOUNTS": "1",
                     "CLIPSEEK_ADMIN_PASSWORD": "long enough now"}
    # Two workers build the app at once, as in docker-compose.yml: one creates the admin.
    server = subprocess.Popen(["gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                               "webapp:create_app()"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, status = time.monotonic() + 120, None
        while status is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=60)
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=60) as response:
            assert response.status == 200
        assert server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=30)
        assert server.stderr is not None
        server.stderr.close()
    assert status == 401
    with db.session() as session:
        assert accounts.verify_login(session, "admin", "long enough now") is not None


# Gunicorn's workers each load the model (25 s): CI runs it; `make test` keeps the other
# deployment checks.
@pytest.mark.slow
def test_gunicorn_serves_a_search(cli_env: dict[str, str], redis_url: str, db: Database,
                                  settings: Settings, sample_photos: list[Candidate], encoder: Any) -> None:
    ingest_inline(db, encoder, sample_photos[:5], settings=settings)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = cli_env | {"REDIS_URL": redis_url}
    server = subprocess.Popen(["gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                               "webapp:create_app()"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, data = time.monotonic() + 120, None
        while data is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/search?q=a+cat&per_page=3",
                                            timeout=60) as response:
                    data = json.load(response)
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=30)
        assert server.stderr is not None
        server.stderr.close()
    assert data["total"] == 5 and len(data["results"]) == 3
