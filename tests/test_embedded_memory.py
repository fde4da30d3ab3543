"""The embedded server's cache: sized to the machine, or as the user sets it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clipseek.errors import ConfigError
from clipseek.store.embedded_db import EmbeddedPostgres, shared_buffers


def _memory_mb() -> int:
    """The machine's memory from /proc/meminfo, or its container's limit if lower."""
    kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal:"))
    limit = Path("/sys/fs/cgroup/memory.max")
    if limit.exists() and limit.read_text().strip().isdigit():
        return min(kib // 1024, int(limit.read_text()) // 2**20)
    return kib // 1024


def test_the_cache_is_a_quarter_of_the_memory_within_bounds() -> None:
    # /proc/meminfo's total is a little less than the physical pages sysconf counts.
    expected = max(128, min(4096, _memory_mb() // 4))
    assert abs(int(shared_buffers({}).removesuffix("MB")) - expected) <= max(8, expected // 50)


def test_a_size_given_is_used_and_a_wrong_one_refused_in_a_sentence() -> None:
    assert shared_buffers({"CLIPSEEK_DB_SHARED_BUFFERS": "512MB"}) == "512MB"
    with pytest.raises(ConfigError, match="CLIPSEEK_DB_SHARED_BUFFERS='lots' is not a size"):
        shared_buffers({"CLIPSEEK_DB_SHARED_BUFFERS": "lots"})


def test_the_running_server_has_that_cache(pg_server: EmbeddedPostgres) -> None:
    with pg_server.admin_connection() as conn:
        row = conn.execute("SELECT setting::bigint * 8192 / 1048576 FROM pg_settings "
                           "WHERE name = 'shared_buffers'").fetchone()
    assert row is not None and row[0] == int(shared_buffers().removesuffix("MB"))


def test_a_wrong_size_is_refused_in_a_sentence_before_a_server_is_made(cli_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    env = {k: v for k, v in cli_env.items() if k != "DATABASE_URL"} | {
        "CLIPSEEK_HOME": str(tmp_path / "home"), "CLIPSEEK_DB_SHARED_BUFFERS": "half"}
    result = subprocess.run(["clipseek", "db", "url"], env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode != 0
    assert "CLIPSEEK_DB_SHARED_BUFFERS='half' is not a size PostgreSQL takes" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "pgdata" / "PG_VERSION").exists()
