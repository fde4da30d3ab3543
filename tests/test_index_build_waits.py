"""A model's index build that waits for an old transaction says which one, then finishes."""

from __future__ import annotations

import logging
import threading

import psycopg
import pytest

from clipseek.store.db import Database
from clipseek.store.vector_indexes import create_index, index_state
from tests.waiting import wait_for


def test_an_index_build_held_back_by_an_old_transaction_names_it(
    db: Database, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="clipseek.store.lock_waits")
    address = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(address) as old:
        old.execute("SET application_name = 'a long report'")
        old.commit()
        old.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        old.execute("SELECT count(*) FROM images").fetchall()  # its snapshot stays open
        pid = old.info.backend_pid
        failed: list[BaseException] = []

        def build() -> None:
            try:
                create_index(db.engine, "waiting/model", 8)
            except BaseException as exc:  # handed to the test's thread
                failed.append(exc)

        thread = threading.Thread(target=build)
        thread.start()
        wait_for(lambda: any(f"pid {pid}" in r.getMessage() for r in caplog.records), 60,
                 "the index build to name the transaction it waits for")
        said = next(r.getMessage() for r in caplog.records if f"pid {pid}" in r.getMessage())
        assert "waiting/model" in said and "'a long report'" in said and " since " in said
        assert thread.is_alive()
        old.rollback()
        thread.join(timeout=120)
    assert not thread.is_alive() and not failed
    assert index_state(db.engine, "waiting/model") == "valid"
