"""Settings: read once from the environment, with defaults and readable errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipseek.errors import ConfigError
from clipseek.settings import DEFAULT_MODEL, Settings


def test_defaults_need_no_environment() -> None:
    s = Settings.from_env({"HOME": "/home/ada"})
    assert s.model == DEFAULT_MODEL and s.database_url is None and s.redis_url is None
    assert s.device == "auto" and s.batch_size == 32
    assert s.pgdata == s.home / "pgdata"


def test_environment_overrides(tmp_path: Path) -> None:
    s = Settings.from_env({"CLIPSEEK_HOME": str(tmp_path), "DATABASE_URL": "postgresql://x/y",
                           "CLIPSEEK_WEIGHTS": "~/w.pt", "CLIPSEEK_DEVICE": "cpu",
                           "CLIPSEEK_BATCH_SIZE": "64", "CLIPSEEK_OFFLINE": "1"})
    assert s.home == tmp_path and s.database_url == "postgresql://x/y"
    assert s.weights == Path("~/w.pt").expanduser() and s.device == "cpu"
    assert s.batch_size == 64 and s.offline


def test_allowed_hosts_are_a_comma_separated_list(tmp_path: Path) -> None:
    s = Settings.from_env({"CLIPSEEK_HOME": str(tmp_path),
                           "CLIPSEEK_ALLOWED_HOSTS": " Photos.Example, nas.local ,"})
    assert s.allowed_hosts == ("photos.example", "nas.local")
    assert Settings.from_env({"CLIPSEEK_HOME": str(tmp_path)}).allowed_hosts == ()


@pytest.mark.parametrize(("env", "message"), [
    ({"CLIPSEEK_DEVICE": "tpu"}, "CLIPSEEK_DEVICE must be one of auto, cpu, cuda"),
    ({"CLIPSEEK_BATCH_SIZE": "many"}, "CLIPSEEK_BATCH_SIZE must be a whole number"),
    ({"CLIPSEEK_BATCH_SIZE": "0"}, "at least 1"),
])
def test_bad_values_are_explained(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
