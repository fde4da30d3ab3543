"""scripts/test-packages.sh: installs the Debian packages the tests use, or says how to.

The script runs for real, with a PATH of stand-ins for `id`, `sudo` and `apt-get` that
record what they were asked, so that no test installs anything or needs to run as root.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "test-packages.sh"


class FakeSystem:
    """A folder that stands in for the PATH of a Debian machine."""

    def __init__(self, folder: Path) -> None:
        self.bin = folder / "bin"
        self.bin.mkdir()
        self.log = folder / "calls.log"
        self.log.touch()
        env = shutil.which("env")
        assert env
        (self.bin / "env").symlink_to(env)  # the script runs apt-get through env

    def command(self, name: str, body: str = "") -> None:
        """A command that logs its arguments, then runs `body`."""
        script = self.bin / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> "{self.log}"\n{body}\n')
        script.chmod(0o755)

    def user(self, uid: int) -> None:
        self.command("id", f"echo {uid}")

    def run(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/sh", str(SCRIPT)], env={"PATH": str(self.bin)}, capture_output=True,
                              text=True, check=False, timeout=30)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()


@pytest.fixture
def system(tmp_path: Path) -> FakeSystem:
    debian = FakeSystem(tmp_path)
    debian.command("apt-get", "echo 'debconf: delaying package configuration' >&2")
    return debian


def test_root_installs_the_missing_packages_and_says_so(system: FakeSystem) -> None:
    system.user(0)
    system.command("chromium")
    result = system.run()
    assert (result.returncode, result.stderr) == (0, "")  # apt-get's chatter is kept back
    assert result.stdout == "Installing the Debian packages the tests use: docker-compose\n"
    assert system.calls() == ["id -u", "apt-get update -qq",
                              "apt-get install -y -qq docker-compose"]


def test_passwordless_sudo_installs_them(system: FakeSystem) -> None:
    system.user(1000)
    system.command("sudo", 'shift; "$@"')  # `sudo -n CMD...` runs CMD
    result = system.run()
    assert result.returncode == 0, result.stderr
    assert "apt-get install -y -qq chromium docker-compose" in system.calls()
    assert "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium docker-compose" \
        in system.calls()


def test_a_failing_apt_get_shows_its_output_and_stops(system: FakeSystem) -> None:
    system.user(0)
    system.command("apt-get", "echo 'E: Could not get lock /var/lib/apt/lists/lock' >&2; exit 100")
    result = system.run()
    assert result.returncode == 100
    assert result.stderr == "E: Could not get lock /var/lib/apt/lists/lock\n"
    assert system.calls() == ["id -u", "apt-get update -qq"]


def test_without_root_or_sudo_it_names_the_command_and_installs_nothing(system: FakeSystem) -> None:
    system.user(65534)
    system.command("sudo", "exit 1")  # sudo wants a password
    result = system.run()
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == ("make test needs the Debian packages chromium docker-compose: run "
                             "`sudo apt-get install chromium docker-compose`, then make test again.\n")
    assert not [call for call in system.calls() if call.startswith("apt-get")]


def test_without_apt_get_it_says_what_to_install(tmp_path: Path) -> None:
    elsewhere = FakeSystem(tmp_path)
    elsewhere.user(0)
    elsewhere.command("docker-compose")
    result = elsewhere.run()
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == ("make test needs chromium and docker-compose on the PATH and this system "
                             "has no apt-get: install chromium with its package manager, then run "
                             "make test again.\n")


def test_nothing_is_done_when_both_are_installed(system: FakeSystem) -> None:
    system.user(0)
    system.command("chromium")
    system.command("docker-compose")
    result = system.run()
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert system.calls() == []
