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
from identity.keyring import Keyring
from identity.signing_client import signed_client
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
        _passphrase(settings),
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
    settings.home.require()
    keys = Keyring.unlock(settings.home.keyring, _passphrase(settings))
    keyid = verification_method_id(keys.owner_did)
    with signed_client(keys.owner_key, keyid, base_url=url, timeout=600) as http:
        # Its methods are made from the table at import (owner.make_remote) and checked against
        # the protocol there (check_table); a type checker cannot see methods made so.
        yield cast(Owner, RemoteOwner(http))


def _done(result):
    """A result, awaited when the local owner answered with a coroutine (network calls)."""
    return asyncio.run(result) if inspect.iscoroutine(result) else result
