"""`clipseek user` and `clipseek token` against a real database."""

from __future__ import annotations

import subprocess

from clipseek import accounts
from clipseek.store.db import Database
from tests.cli import CliResult, run_in_process


def _run(env: dict[str, str], *args: str, stdin: str | None = None) -> CliResult:
    return run_in_process(env, *args, stdin=stdin)


def test_users_are_added_listed_changed_and_removed(cli_env: dict[str, str], db: Database) -> None:
    added = _run(cli_env, "user", "add", "ann", "--role", "admin", stdin="long password\nlong password\n")
    assert added.returncode == 0, added.stderr
    assert _run(cli_env, "user", "add", "bob", "--password", "another one here").returncode == 0
    assert _run(cli_env, "user", "role", "bob", "contributor").returncode == 0
    listed = _run(cli_env, "user", "list").stdout
    assert "ann\tadmin" in listed and "bob\tcontributor" in listed
    assert _run(cli_env, "user", "passwd", "bob", "--password", "changed it again").returncode == 0
    with db.session() as session:
        assert accounts.verify_login(session, "bob", "changed it again") is not None
    assert _run(cli_env, "user", "remove", "bob").returncode == 0
    assert "bob" not in _run(cli_env, "user", "list").stdout


def test_user_mistakes_are_one_sentence(cli_env: dict[str, str]) -> None:
    for args, sentence in (((("user", "add", "ann", "--role", "owner", "--password", "long enough now"),
                             "choose viewer, contributor or admin")),
                           (("user", "add", "ann", "--password", "short"), "at least 12 characters"),
                           (("user", "add", "ann", "--password", " " * 12), "not only spaces"),
                           (("user", "add", "ann", "--password", "Password1234"), "common"),
                           (("user", "add", "ann\u202e", "--password", "long enough now"),
                            "reverse or reorder text"),
                           (("user", "remove", "nobody"), "There is no user 'nobody'")):
        answer = _run(cli_env, *args)
        assert answer.returncode == 1 and sentence in answer.stderr, answer.stderr
        assert "Traceback" not in answer.stderr
    assert _run(cli_env, "user", "add", "ann", "--role", "admin", "--password",
                "long enough now").returncode == 0
    weak = _run(cli_env, "user", "passwd", "ann", "--password", "letmein12345")
    assert weak.returncode == 1 and "common" in weak.stderr and "Traceback" not in weak.stderr
    last = _run(cli_env, "user", "remove", "ann")
    assert last.returncode == 1 and "only admin" in last.stderr


def test_a_token_is_printed_once_listed_and_revoked(cli_env: dict[str, str], db: Database) -> None:
    _run(cli_env, "user", "add", "ann", "--password", "long enough now")
    hidden = _run(cli_env, "token", "create", "--name", "\u200b\ufeff", "--user", "ann")
    assert hidden.returncode == 1 and "only of invisible characters" in hidden.stderr, hidden.stderr
    made = _run(cli_env, "token", "create", "--name", "laptop", "--user", "ann")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith(accounts.TOKEN_PREFIX) and "not shown again" in made.stderr
    listed = _run(cli_env, "token", "list").stdout
    assert "\tann\tlaptop\t" in listed and "live" in listed and secret not in listed
    token_id = listed.split("\t")[0]
    assert _run(cli_env, "token", "revoke", token_id).returncode == 0
    assert "revoked" in _run(cli_env, "token", "list", "--user", "ann").stdout
    with db.session() as session:
        assert accounts.user_of_token(session, secret) is None


def test_up_on_every_address_refuses_to_start_without_an_account(cli_env: dict[str, str]) -> None:
    answer = subprocess.run(["clipseek", "up", "--host", "0.0.0.0", "--port", "0", "--no-samples",
                             "--no-worker"], env=cli_env, capture_output=True, text=True, timeout=300)
    assert answer.returncode == 1, answer.stdout + answer.stderr
    assert "create the first with `clipseek user add NAME --role admin`" in answer.stderr
    assert "Traceback" not in answer.stderr and "Stopped." in answer.stdout
