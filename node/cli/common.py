"""What every command shares: the consoles, the settings, opening the home or reaching the node serving it."""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

import click
from rich.console import Console

from agent.tools import AskOwner
from identity.did_key import verification_method_id
from identity.keyring import Keyring, UnlockedKeyring
from identity.signing_client import signed_client
from node import keyagent
from node.home import Home
from node.node import Node
from node.owner import LocalOwner, Owner, RemoteOwner

# No emoji codes (":key:" in "did:key:" would become 🔑), no highlighting, no wrapping of paths.
err = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)
out = Console(highlight=False, emoji=False, soft_wrap=True)


class Settings:
    def __init__(self, home: Home, passphrase_file: str | None) -> None:
        self.home = home
        self.passphrase_file = passphrase_file


def _passphrase(settings: Settings, *, confirm: bool = False) -> str:
    if settings.passphrase_file:
        try:
            with open(settings.passphrase_file, encoding="utf-8") as f:
                return f.read().rstrip("\r\n")
        except OSError as e:
            raise click.ClickException(f"cannot read the passphrase file: {e.strerror}") from None
    if os.environ.get("FLURRY_PASSPHRASE") is not None:
        return os.environ["FLURRY_PASSPHRASE"]
    if not sys.stdin.isatty():
        raise click.ClickException("no passphrase: set FLURRY_PASSPHRASE or pass --passphrase-file")
    return click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm, err=True)


def _passphrase_given(settings: Settings) -> bool:
    """Whether a script handed the passphrase over (a file, FLURRY_PASSPHRASE): then it is used."""
    return bool(settings.passphrase_file) or os.environ.get("FLURRY_PASSPHRASE") is not None


def _keys(settings: Settings) -> UnlockedKeyring:
    """The home's unlocked keys: with the passphrase a script gave, else from the key agent
    (`flurry unlock`, `flurry serve`, the app), else with the passphrase asked at the terminal."""
    settings.home.require()
    if not _passphrase_given(settings):
        try:
            keys = keyagent.keys(settings.home)
        except keyagent.KeyAgentError as e:  # stale, locked or unsafe: said, never trusted
            err.print(str(e), markup=False)
            keys = None
        if keys is not None:
            return keys
    return Keyring.unlock(settings.home.keyring, _passphrase(settings))


@contextmanager
def _open_node(
    settings: Settings,
    *,
    terminal_prompt: AskOwner | None = None,
    say: Callable[[str], None] | None = None,
) -> Iterator[Node]:
    settings.home.require()
    node = Node.open(
        settings.home,
        keys=_keys(settings),
        say=say or (lambda line: err.print(line)),
        terminal_prompt=terminal_prompt,
    )
    try:
        yield node
    finally:
        node.close()


def _on_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


@contextmanager
def _owner(settings: Settings) -> Iterator[Owner]:
    """The owner's management calls: on the home itself, or through the node serving it."""
    url = settings.home.running_node()
    if url is None:
        with _open_node(settings) as node:
            yield LocalOwner(node)
        return
    keys = _keys(settings)  # from `flurry serve` itself, which is the key agent while it runs
    keyid = verification_method_id(keys.owner_did)
    with signed_client(keys.owner_key, keyid, base_url=url, timeout=600) as http:
        # Its methods are made from the table at import (owner.make_remote) and checked against
        # the protocol there (check_table); a type checker cannot see methods made so.
        yield cast(Owner, RemoteOwner(http))


def _done(result):
    """A result, awaited when the local owner answered with a coroutine (network calls)."""
    return asyncio.run(result) if inspect.iscoroutine(result) else result
