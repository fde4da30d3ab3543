"""A switch to another model shows its progress in `clipseek status`, the Status page and
/api/status; without one they show the active model only."""

from __future__ import annotations

import json
import subprocess

import pytest
from flask.testing import FlaskClient

from clipseek.settings import RANDOM_MODEL
from clipseek.store.db import Database
from clipseek.switching.switch import SwitchProgress, register_model
from clipseek.upkeep.status import (
    collection_status,
    duration_text,
    percent_done,
    rate_text,
    switch_summary,
)
from tests.switching import INCOMING, collection, half_switched


def test_report_measures_the_incoming_models_share_rate_and_time_left(db: Database) -> None:
    half_switched(db)
    with db.session() as s:
        report = collection_status(s, model=RANDOM_MODEL)
    assert report.switch is not None
    assert (report.switch.model, report.switch.active) == (INCOMING, RANDOM_MODEL)
    assert (report.switch.embedded, report.switch.total, report.switch_percent) == (5, 10, 50)
    # Five vectors in the 100 s since the switch began: 0.05 images/s, so 100 s for the other five.
    assert report.switch.rate == pytest.approx(0.05, rel=0.1)
    assert report.switch.eta_s == pytest.approx(100, rel=0.1)
    assert switch_summary(report.switch) == ("5 of 10 images embedded (50%) at 3 images/min; "
                                             "about 2 min left.")


def test_a_stalled_switch_says_its_time_left_is_unknown(db: Database) -> None:
    half_switched(db, started_s_ago=3600, embedded_s_ago=1800)
    with db.session() as s:
        report = collection_status(s, model=RANDOM_MODEL)
    assert report.switch is not None and report.switch.rate is None and report.switch.eta_s is None
    assert switch_summary(report.switch) == ("5 of 10 images embedded (50%); none in the last "
                                             "5 minutes, so the time left is unknown.")


def test_api_status_carries_the_switch_and_the_active_model(client: FlaskClient, db: Database) -> None:
    half_switched(db)
    data = client.get("/api/status").get_json()
    assert data["model"] == RANDOM_MODEL
    switch = data["switch"]
    assert (switch["model"], switch["active"]) == (INCOMING, RANDOM_MODEL)
    assert (switch["embedded"], switch["total"], switch["percent"]) == (5, 10, 50)
    assert switch["rate"] == pytest.approx(0.05, rel=0.1)
    assert switch["eta_s"] == pytest.approx(100, rel=0.1) and switch["started_at"]


def test_status_page_shows_a_progress_bar_with_its_words(client: FlaskClient, db: Database) -> None:
    half_switched(db)
    html = client.get("/status").get_data(as_text=True)
    assert f"Switching to {INCOMING}" in html
    assert ('<progress id="switch-progress" max="100" value="50" aria-describedby="switch-summary">'
            "50%</progress>") in html
    assert "5 of 10 images embedded (50%) at 3 images/min; about 2 min left." in html
    assert f'id="active-model">{RANDOM_MODEL}<' in html
    assert " style=" not in html and "<script>" not in html  # the CSP forbids inline ones


def test_clipseek_status_prints_the_switch(cli_env: dict[str, str], db: Database) -> None:
    half_switched(db)
    shown = subprocess.run(["clipseek", "status"], env=cli_env, capture_output=True, text=True,
                           timeout=300, check=False)
    assert shown.returncode == 0, shown.stderr
    assert f"Active model: {RANDOM_MODEL}" in shown.stdout
    assert (f"Switching to {INCOMING}: 5 of 10 images embedded (50%) at 3 images/min; "
            "about 2 min left.") in shown.stdout
    as_json = subprocess.run(["clipseek", "status", "--json"], env=cli_env, capture_output=True,
                             text=True, timeout=300, check=False)
    assert json.loads(as_json.stdout)["switch"]["percent"] == 50


def test_without_a_switch_only_the_active_model_is_shown(client: FlaskClient, db: Database,
                                                         cli_env: dict[str, str]) -> None:
    collection(db)
    register_model(db.engine, INCOMING)  # a kept model is no switch
    data = client.get("/api/status").get_json()
    assert data["model"] == RANDOM_MODEL and data["switch"] is None
    html = client.get("/status").get_data(as_text=True)
    assert f'id="active-model">{RANDOM_MODEL}<' in html and "Switching" not in html
    assert "<progress" not in html
    shown = subprocess.run(["clipseek", "status"], env=cli_env, capture_output=True, text=True,
                           timeout=300, check=False)
    assert shown.returncode == 0, shown.stderr
    assert f"Active model: {RANDOM_MODEL}" in shown.stdout and "Switching" not in shown.stdout


def test_percent_rounds_down_so_100_means_every_image() -> None:
    def progress(embedded: int, total: int) -> SwitchProgress:
        return SwitchProgress(model=INCOMING, active=RANDOM_MODEL, embedded=embedded, total=total,
                              started_at=None, rate=None)

    assert [percent_done(progress(e, t)) for e, t in ((0, 3), (2, 3), (999, 1000), (3, 3), (0, 0))] \
        == [0, 66, 99, 100, 100]


def test_time_left_reads_as_a_person_says_it() -> None:
    assert [duration_text(s) for s in (5, 59, 60, 150, 3599, 3600, 12_000)] == [
        "under a minute", "under a minute", "about 1 min", "about 2 min", "about 1 h",
        "about 1 h", "about 3 h 20 min"]


def test_slow_rates_read_per_minute_and_fast_ones_per_second() -> None:
    assert [rate_text(r) for r in (1 / 300, 0.05, 0.5, 1.0, 12.34)] == [
        "under 1 image/min", "3 images/min", "30 images/min", "1.0 images/s", "12.3 images/s"]
