"""A new machine serves at once in the safe precision, measures in the background, then switches."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from clipseek.cli.launcher import StartLater, _die_with_parent, nothing_to_index, searched
from clipseek.clip.encoder import ClipEncoder
from clipseek.clip.precision import (
    INT8_MIN_COSINE,
    MEASURING_FILE,
    SAFE_PRECISION,
    Measurement,
    PrecisionChoice,
    measure_once,
    measuring_since,
    read_cpu,
    remember_choice,
    report_lines,
)
from clipseek.context import Context
from clipseek.library.ingest import ingest_queued
from clipseek.library.register import Candidate
from clipseek.settings import RANDOM_MODEL, Settings
from clipseek.store.embedded_db import EmbeddedPostgres
from tests.cli import run_in_process
from tests.waiting import wait_for
from webapp import create_app

QUERIES = ["a dog on the beach", "a red car", "the moon"]


def _choice(key: str, precision: str, runnable: tuple[str, ...]) -> PrecisionChoice:
    return PrecisionChoice(key=key, precision=precision, reason=f"{precision} was the fastest.",
                           measurements=(Measurement("fp32", 10.0, 5.0, 1.0, 1.0),),
                           measured_at="2026-12-07T12:00:00+00:00", offered=runnable)


def test_a_new_machine_serves_in_the_safe_precision_and_switches_when_the_choice_lands(
        tmp_path: Path) -> None:
    cache = tmp_path / "precision.json"
    encoder = ClipEncoder(RANDOM_MODEL, allow_download=False, precision_cache=cache)
    before = encoder.encode_texts(QUERIES)
    # Nothing measured at load: the model answers now, in fp32, and says so.
    assert encoder.precision == SAFE_PRECISION and encoder.precision_pending
    assert encoder.precision_choice is None and not cache.exists()
    assert "fp32 for now: this machine is not measured yet" in encoder.precision_sentence()
    if "int8" not in encoder.runnable_precisions:
        pytest.skip("this PyTorch build has no int8 engine")
    # What a background measurement writes (int8: quick to convert, no export).
    remember_choice(cache, _choice(encoder._key, "int8", encoder.runnable_precisions))
    wait_for(lambda: encoder.precision == "int8", 120, "the encoder to switch to the measured int8")
    assert not encoder.precision_pending and encoder.precision_from_cache
    assert encoder.precision_sentence() == "int8: measured on 2026-12-07T12:00:00+00:00, int8 chosen."
    after = encoder.encode_texts(QUERIES)
    # Queries made before and after the switch stay comparable (auto keeps only such precisions).
    assert float(np.min((before * after).sum(axis=1))) >= INT8_MIN_COSINE


def test_a_measurement_under_way_is_not_started_twice_and_is_reported_with_its_start(
        tmp_path: Path) -> None:
    cache = tmp_path / "precision.json"
    calls: list[str] = []

    def measure() -> list[Measurement]:
        calls.append("measured")
        return [Measurement("fp32", 10.0, 5.0, 1.0, 1.0)]

    assert measuring_since(cache) is None
    # Another process measuring holds the lock beside the file, with a note of when it began.
    with open(tmp_path / ".precision.json.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        (tmp_path / MEASURING_FILE).write_text(json.dumps({"since": "2026-12-07T12:00:00+00:00"}))
        assert measuring_since(cache) == "2026-12-07T12:00:00+00:00"
        assert measure_once(cache, "key", measure, ("fp32",)) is None and calls == []
    # A note left by a process that died does not claim a measurement is running.
    assert measuring_since(cache) is None
    choice = measure_once(cache, "key", measure, ("fp32",))
    assert choice is not None and choice.precision == "fp32" and calls == ["measured"]
    assert not (tmp_path / MEASURING_FILE).exists()
    # Remembered: a second call measures nothing.
    assert measure_once(cache, "key", measure, ("fp32",)) == choice and calls == ["measured"]


def test_doctor_says_the_safe_precision_and_the_measurement_under_way() -> None:
    cpu = read_cpu()
    lines = report_lines(cpu=cpu, cores=2, device="cpu", runnable=("fp32", "int8"), setting="auto",
                         precision="fp32", choice=None, from_cache=False,
                         measuring="2026-12-07T12:00:00+00:00")
    assert lines[-1] == ("Precision: fp32 for now, measuring in the background (since "
                         "2026-12-07T12:00:00+00:00); searches and indexing switch to the measured "
                         "choice when it lands.")
    chosen = replace(_choice("k", "int8", ("fp32", "int8")), measured_at="2026-12-07T12:05:00+00:00")
    lines = report_lines(cpu=cpu, cores=2, device="cpu", runnable=("fp32", "int8"), setting="auto",
                         precision="int8", choice=chosen, from_cache=True)
    assert "Precision: int8, chosen by CLIPSEEK_PRECISION=auto (remembered from 2026-12-07T12:05" in \
        "\n".join(lines)


def _fresh(cli_env: dict[str, str], home: Path) -> dict[str, str]:
    return cli_env | {"CLIPSEEK_HOME": str(home), "CLIPSEEK_PRECISION": "auto"}


def _measured_nothing(home: Path) -> bool:
    return not (home / "precision.json").exists() and not (home / MEASURING_FILE).exists()


def test_doctor_on_a_new_machine_answers_without_measuring(cli_env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    result = run_in_process(_fresh(cli_env, home), "doctor")
    assert result.returncode == 0, result.stderr
    assert "Precision: fp32 for now: this machine is not measured yet" in result.stdout
    assert "Measuring" not in result.stderr and _measured_nothing(home)


def test_refusals_on_a_new_machine_come_before_any_measuring(cli_env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Weights present (the random model's): the refusal is the accounts', and nothing is measured.
    refused = run_in_process(_fresh(cli_env, home), "up", "--host", "0.0.0.0", "--port", str(port),
                             "--no-samples")
    assert refused.returncode == 1 and "needs accounts, and none exists" in refused.stderr
    assert _measured_nothing(home)
    # Weights missing: the load refuses for them, before anything is measured.
    missing = run_in_process(_fresh(cli_env, home) | {"CLIPSEEK_MODEL": "ViT-B-32/openai"},
                             "up", "--port", str(port), "--no-samples", "--no-worker")
    assert missing.returncode == 1 and "weights" in missing.stderr and "Traceback" not in missing.stderr
    assert _measured_nothing(home)
    # A model that does not exist is refused by `model use` at once.
    unknown = run_in_process(_fresh(cli_env, home), "model", "use", "ViT-B-32/nonesuch")
    assert unknown.returncode == 1 and _measured_nothing(home)


def test_a_new_home_is_refused_before_any_server_starts(cli_env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    # The embedded servers, as `make run` on a new machine uses them.
    env = {k: v for k, v in _fresh(cli_env, home).items() if k != "DATABASE_URL"}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        missing = run_in_process(env | {"CLIPSEEK_MODEL": "ViT-B-32/openai"}, "up", "--port", str(port),
                                 "--no-samples", "--no-worker")
        assert missing.returncode == 1 and "weights are not on this machine" in missing.stderr
        # Neither PostgreSQL nor Redis was started (nor their folders made) only to refuse.
        assert not (home / "pgdata").exists() and not (home / "redis").exists()
        accounts = run_in_process(env, "up", "--host", "0.0.0.0", "--port", str(port), "--no-samples",
                                  "--no-worker")
        assert accounts.returncode == 1 and "needs accounts, and none exists" in accounts.stderr
        assert not (home / "pgdata").exists() and not (home / "redis").exists()
    finally:
        EmbeddedPostgres(home / "pgdata").stop()


def test_the_start_waits_for_the_first_search_or_an_idle_worker(
        settings: Settings, sample_photos: list[Candidate]) -> None:
    ctx = Context(settings)
    try:
        assert nothing_to_index(ctx) and not searched(ctx)
        ingest_queued(ctx.db, sample_photos[:2], settings=settings, enqueue=lambda ids, model: None)
        assert not nothing_to_index(ctx)  # the worker has pictures to index
        ctx.encoder.encode_texts(["a cat"])
        assert searched(ctx)
    finally:
        ctx.close()


def test_a_child_started_later_lives_until_the_launcher_stops() -> None:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(["sleep", "60"], preexec_fn=_die_with_parent(os.getpid()))

    later = StartLater(start, lambda: False, at_most_s=0.2, every_s=0.05, on_start=started.append)
    later.start()
    wait_for(lambda: bool(started), 30, "the child to start once its time is up")
    # Its death signal follows the thread that started it, which must live on: a child of a
    # thread that had ended would be gone by now.
    time.sleep(1.0)
    assert started[0].poll() is None
    later.stop()
    # The launcher stopping: the child is told to stop too (SIGTERM), as when `up` dies.
    assert started[0].wait(timeout=30) == -signal.SIGTERM


def test_the_status_page_and_api_say_the_precision_serving_for_now(settings: Settings,
                                                                   redis_url: str) -> None:
    fresh = settings.with_changes(precision="auto", redis_url=redis_url)
    app = create_app({"TESTING": True}, settings=fresh)
    try:
        client = app.test_client()
        answer = client.get("/api/status").get_json()
        assert answer["precision"].startswith("fp32 for now: this machine is not measured yet")
        page = client.get("/status").get_data(as_text=True)
        assert 'id="precision">fp32 for now' in page
        # Nothing was measured by asking.
        assert _measured_nothing(fresh.home)
    finally:
        app.extensions["clipseek"].close()


def _status(port: int) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=30) as answer:
            found: dict[str, object] = json.loads(answer.read())
            return found
    except OSError:
        return None


@pytest.mark.slow
def test_up_on_a_new_machine_serves_then_measures_in_a_process_of_its_own(
        cli_env: dict[str, str], redis_url: str, tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    env = _fresh(cli_env, home) | {"REDIS_URL": redis_url}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        server = subprocess.Popen(["clipseek", "up", "--port", str(port), "--no-samples", "--no-worker"],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "ClipSeek is running" in log.read_text(), 300, "the web server")
        assert "Precision: fp32 for now; measuring which precision runs fastest in the background" \
            in log.read_text()
        # The measuring process takes the lock and says since when; the web server answers meanwhile.
        wait_for(lambda: "measuring in the background (since" in str((_status(port) or {}).get("precision")),
                 300, "the status to say a measurement is under way")
        measurer = [p for p in _children(server.pid) if "measure-precision" in p[1]]
        assert len(measurer) == 1 and os.getpriority(os.PRIO_PROCESS, measurer[0][0]) == 19
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=120)
    assert "Stopped." in log.read_text()


def _children(pid: int) -> list[tuple[int, str]]:
    """The direct children of a process, with their command lines."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append((int(entry.name), command))
        except (OSError, ValueError, IndexError):
            continue
    return found
