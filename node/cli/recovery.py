"""The passphrase and the recovery code: `passphrase change`, `recovery-code new`, `recover`.

Each re-wraps the keyring's few keys and writes it in one rename (identity.keyring says how);
the vault and everything in it are never re-encrypted. None of them opens the home, so each
works while `flurry serve` runs: the server read the keyring once, at unlock, and holds the
same keys; the next unlock reads the new file.

Without a prompt (scripts, tests): the current passphrase comes as for every command
(FLURRY_PASSPHRASE or --passphrase-file), the new one from FLURRY_NEW_PASSPHRASE or
--new-passphrase-file, the recovery code's words from FLURRY_RECOVERY_CODE or --code-file.
"""

from __future__ import annotations

import os
import sys

import click

from identity.keyring import Keyring
from identity.recovery_code import WORD_COUNT, RecoveryCode
from node import keyagent
from node.cli.common import Settings, _passphrase, err, out
from node.home import Home

NEW_PASSPHRASE_ENV = "FLURRY_NEW_PASSPHRASE"
RECOVERY_CODE_ENV = "FLURRY_RECOVERY_CODE"


def _read_secret_file(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().rstrip("\r\n")
    except OSError as e:
        raise click.ClickException(f"cannot read the {what} file: {e.strerror}") from None


def _current_passphrase(settings: Settings) -> str:
    if settings.passphrase_file or os.environ.get("FLURRY_PASSPHRASE") is not None:
        return _passphrase(settings)
    if not sys.stdin.isatty():
        return _passphrase(settings)  # says how to give it without a prompt
    return str(click.prompt("Current passphrase", hide_input=True, err=True))


def _new_passphrase(new_passphrase_file: str | None) -> str:
    if new_passphrase_file:
        return _read_secret_file(new_passphrase_file, "new passphrase")
    if os.environ.get(NEW_PASSPHRASE_ENV) is not None:
        return os.environ[NEW_PASSPHRASE_ENV]
    if not sys.stdin.isatty():
        raise click.ClickException(
            f"no new passphrase: set {NEW_PASSPHRASE_ENV} or pass --new-passphrase-file"
        )
    # click asks again on an empty answer; the keyring refuses an all-blank one.
    return str(click.prompt("New passphrase", hide_input=True, confirmation_prompt=True, err=True))


def _recovery_words(code_file: str | None) -> str:
    if code_file:
        return _read_secret_file(code_file, "recovery code")
    if os.environ.get(RECOVERY_CODE_ENV) is not None:
        return os.environ[RECOVERY_CODE_ENV]
    if not sys.stdin.isatty():
        raise click.ClickException(f"no recovery code: set {RECOVERY_CODE_ENV} or pass --code-file")
    # Shown as typed, unlike a passphrase: 24 words typed blind are hard to get right, and a
    # misspelt word is named so it can be found. Any number of lines, with or without the
    # numbers printed before each word, until there are 24 words or an empty line.
    err.print(
        f"Type the {WORD_COUNT} words of your recovery code, in order "
        "(the numbers are optional; end with an empty line):"
    )
    lines: list[str] = []
    while True:
        line = sys.stdin.readline()
        if not line.strip():
            break
        lines.append(line)
        words = [t for t in " ".join(lines).split() if not t.rstrip(".):").isdigit()]
        if len(words) >= WORD_COUNT:
            break
    return " ".join(lines)


def _end_unlocked_sessions(home: Home) -> None:
    """After the keyring changes, keys unlocked from the old file should not linger: the key
    agent is ended, so the next command asks the new passphrase. (A running `flurry serve` keeps
    the keys it unlocked; commands see its keyring changed and ask, until it restarts.)"""
    keyagent.lock(home)


def print_recovery_code(code: RecoveryCode, *, replacing: bool = False) -> None:
    """Print the words, once, with what they are for. Nothing to type back: the README's first
    command asks the passphrase twice and nothing more."""
    out.print()
    out.print("Recovery code" + (" (new: the old one no longer works)" if replacing else "") + ":")
    out.print(
        "  the way back in if you forget your passphrase: `flurry recover` asks for these words\n"
        "  and sets a new one. Write them down in order and keep them away from this box.\n"
        "  Anyone who has them can open this node. flurry keeps no copy and will not show them again."
    )
    out.print()
    words = code.words
    for row in range(0, len(words), 4):
        out.print(
            "  "
            + "".join(
                f"{n:>3} {word:<10}" for n, word in enumerate(words[row : row + 4], row + 1)
            ).rstrip()
        )
    out.print()


@click.group("passphrase")
def passphrase() -> None:
    """The passphrase that unlocks the node."""


@passphrase.command("change")
@click.option(
    "--new-passphrase-file",
    type=click.Path(dir_okay=False),
    help=f"Read the new passphrase from this file (or set {NEW_PASSPHRASE_ENV}).",
)
@click.pass_obj
def passphrase_change(settings: Settings, new_passphrase_file: str | None) -> None:
    """Set a new passphrase: the keys are re-wrapped, no data is re-encrypted.

    Safe to interrupt at any moment: the old passphrase or the new one works, never neither.
    A running `flurry serve` keeps running; the next unlock asks the new passphrase."""
    settings.home.require()
    old = _current_passphrase(settings)
    Keyring.unlock(settings.home.keyring, old)  # a wrong one is said before asking the new one
    keys = Keyring.change_passphrase(
        settings.home.keyring, old, _new_passphrase(new_passphrase_file)
    )
    _end_unlocked_sessions(settings.home)
    out.print(f"Passphrase changed for {keys.owner_did}.")
    out.print(
        "Backups made before now still open with the old passphrase; "
        "the recovery code, if you have one, still works."
    )


@click.group("recovery-code")
def recovery_code() -> None:
    """The 24 words that set a new passphrase when the old one is forgotten."""


@recovery_code.command("new")
@click.pass_obj
def recovery_code_new(settings: Settings) -> None:
    """Make a new recovery code (asks the passphrase); the old code stops working."""
    settings.home.require()
    code = RecoveryCode.generate()
    Keyring.set_recovery_code(settings.home.keyring, _current_passphrase(settings), code)
    _end_unlocked_sessions(settings.home)
    print_recovery_code(code, replacing=True)


@click.command()
@click.option(
    "--code-file",
    type=click.Path(dir_okay=False),
    help=f"Read the recovery code's words from this file (or set {RECOVERY_CODE_ENV}).",
)
@click.option(
    "--new-passphrase-file",
    type=click.Path(dir_okay=False),
    help=f"Read the new passphrase from this file (or set {NEW_PASSPHRASE_ENV}).",
)
@click.pass_obj
def recover(settings: Settings, code_file: str | None, new_passphrase_file: str | None) -> None:
    """Forgot the passphrase? Set a new one with the recovery code's 24 words."""
    settings.home.require()
    # The checksum is checked here, before any key is derived: a typo is named as one.
    code = RecoveryCode.from_words(_recovery_words(code_file))
    Keyring.unlock_with_recovery_code(settings.home.keyring, code)  # before asking a passphrase
    keys = Keyring.recover(settings.home.keyring, code, _new_passphrase(new_passphrase_file))
    _end_unlocked_sessions(settings.home)
    out.print(f"New passphrase set for {keys.owner_did}; the same recovery code still works.")


COMMANDS = (passphrase, recovery_code, recover)
