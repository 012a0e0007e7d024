"""The command line's one translation of errors (node.cli.EXIT_STATUS): an error of a part (node.errors.PART_ERRORS) is one
line and status 1; anything else is a bug, shown with its traceback and a request to report it.

The real `flurry` group under click's CliRunner; the failing commands are added to it for the
test only, because what is tested is the translation, not a command."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from agent.errors import AgentError
from agent.grants import InvalidGrant
from identity.errors import IdentityError
from identity.keyring import WrongPassphrase
from node.cli import cli
from node.errors import PART_ERRORS, NodeError, OwnerError
from skills.errors import SkillError
from skills.registry import SkillInstallError
from store.errors import StoreError
from store.vault import VaultError


@pytest.fixture
def failing() -> Iterator[click.Command]:
    raised: list[BaseException] = []

    @click.command("fail-for-test")
    def fail() -> None:
        raise raised[0]

    cli.add_command(fail)
    fail.raising = raised  # type: ignore[attr-defined]
    yield fail
    del cli.commands["fail-for-test"]


def _run(failing, error: BaseException, tmp_path):
    failing.raising[:] = [error]
    return CliRunner().invoke(cli, ["--home", str(tmp_path), "fail-for-test"])


@pytest.mark.parametrize(
    "error",
    [
        OwnerError("no pinned peer 'x'"),
        InvalidGrant("bad quota"),
        StoreError("vault locked"),
        FileExistsError("already holds a flurry node"),
    ],
)
def test_a_known_error_is_one_line_and_status_1(failing, error, tmp_path):
    result = _run(failing, error, tmp_path)
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {error}"
    assert "Traceback" not in result.output


def test_every_part_error_is_known_to_the_translation():
    assert set(PART_ERRORS) == {IdentityError, StoreError, AgentError, SkillError, NodeError}
    for error in (WrongPassphrase, VaultError, InvalidGrant, SkillInstallError, OwnerError):
        assert issubclass(error, PART_ERRORS), error


@pytest.mark.parametrize(
    "error", [ValueError("a bug, not the user"), KeyError("missing"), RuntimeError("boom")]
)
def test_an_unexpected_error_shows_its_traceback_and_asks_for_a_report(failing, error, tmp_path):
    result = _run(failing, error, tmp_path)
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.output
    assert type(error).__name__ in result.output
    assert "This is a bug in flurry" in result.output and "please report it" in result.output
