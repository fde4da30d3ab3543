"""The `clipseek` command, run as a user runs it, against a real database."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from clipseek.api import display_results, search
from clipseek.context import Context
from clipseek.library.register import Candidate
from clipseek.settings import Settings
from tests.cli import run_in_process
from tests.images import write_bad_files
from tests.ranking import assert_scores_descend


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["clipseek", *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_ingest_then_search_json(cli_env: dict[str, str], sample_photos: list[Candidate],
                                 tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for c in sample_photos[:6]:
        shutil.copy(c.path, folder)
    write_bad_files(folder, sample_photos[0].path)
    ingest = run_in_process(cli_env, "ingest", str(folder), "--inline", "--no-progress")
    assert ingest.returncode == 0, ingest.stderr
    assert "Registered 10 new file(s) (3 unreadable)" in ingest.stdout
    assert "Indexed 6 image(s)" in ingest.stdout and "1 failed" in ingest.stdout  # truncated
    assert "random weights" in ingest.stderr

    result = run_in_process(cli_env, "search", "a dog running on the beach", "--top-k", "4", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == "ViT-B-32/random" and data["random_weights"] is True
    assert data["total"] == 6 and [r["rank"] for r in data["results"]] == [1, 2, 3, 4]
    assert {"image_id", "path", "score", "captions"} <= set(data["results"][0])
    scores = [r["score"] for r in data["results"]]
    assert_scores_descend(scores)

    text = run_in_process(cli_env, "search", "a cat", "-k", "2", "--page", "3")
    assert text.returncode == 0 and "Page 3 of 3 (6 images searched)" in text.stdout


def test_missing_weights_stop_with_one_clear_sentence(cli_env: dict[str, str]) -> None:
    env = cli_env | {"CLIPSEEK_MODEL": "ViT-B-32/openai"}
    result = run_in_process(env, "search", "a cat")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: The ViT-B-32 weights are not on this machine")
    assert "CLIPSEEK_WEIGHTS=" in result.stderr


def test_unreachable_database_is_reported_plainly(cli_env: dict[str, str], tmp_path: Path) -> None:
    env = cli_env | {"DATABASE_URL": f"postgresql://postgres@/clipseek?host={tmp_path}"}
    result = run_in_process(env, "search", "a cat")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "Cannot reach the database" in result.stderr and "DATABASE_URL" in result.stderr


def test_db_url_prints_a_url_psql_accepts(cli_env: dict[str, str], settings: Settings) -> None:
    result = run_in_process(cli_env, "db", "url", "--psql")
    assert result.returncode == 0
    assert re.match(r"postgresql://postgres:[^@]+@/test_", result.stdout.strip())


def test_python_api_search_and_display(settings: Settings, sample_photos: list[Candidate],
                                       tmp_path: Path) -> None:
    from clipseek.library.ingest import ingest_inline

    ctx = Context(settings)
    try:
        ingest_inline(ctx.db, ctx.encoder, sample_photos[:5], settings=settings)
        page = search("an astronaut", top_k=3, context=ctx)
        assert len(page.hits) == 3 and page.total == 5
        png = display_results("an astronaut", top_k=3, save_to=tmp_path / "grid.png",
                              context=ctx)
    finally:
        ctx.close()
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_embedded_servers_are_reused_and_stopped_by_clipseek_stop(cli_env: dict[str, str],
                                                                  tmp_path: Path) -> None:
    from clipseek.store.embedded_db import EmbeddedPostgres

    home = Path(tempfile.mkdtemp(prefix="clipseek-stop-", dir="/tmp"))
    env = {k: v for k, v in cli_env.items() if k != "DATABASE_URL"} | {"CLIPSEEK_HOME": str(home)}
    try:
        first = _run(env, "db", "url")
        assert first.returncode == 0 and EmbeddedPostgres(home / "pgdata").is_running()
        assert _run(env, "db", "url").stdout == first.stdout  # reused, same server
        stop = _run(env, "stop")
        assert stop.returncode == 0
        assert "Stopped the embedded PostgreSQL." in stop.stdout
        assert "The embedded Redis was not running." in stop.stdout
        assert not EmbeddedPostgres(home / "pgdata").is_running()
    finally:
        EmbeddedPostgres(home / "pgdata").stop()
        shutil.rmtree(home, ignore_errors=True)


def test_up_beyond_this_machine_without_an_account_refuses_before_loading_the_model(
    cli_env: dict[str, str],
) -> None:
    # Weights that are not here: loading the model first would refuse for them instead (after
    # measuring precisions, minutes on a busy machine, where weights are present).
    env = cli_env | {"CLIPSEEK_MODEL": "ViT-B-32/openai"}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_in_process(env, "up", "--host", "0.0.0.0", "--port", str(port), "--no-worker",
                            "--no-samples")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "needs accounts, and none exists" in result.stderr
    assert "weights" not in result.stderr
