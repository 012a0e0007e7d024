"""Nostr: the key, relays, private messages and the inbox."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import click

from node.cli.common import (
    Settings,
    _owner,
    err,
    out,
)
from node.nostr_owner import LocalNostrOwner, NostrOwner, RemoteNostrOwner
from node.owner import LocalOwner, RemoteOwner


def nostr_owner_of(owner: LocalOwner | RemoteOwner) -> NostrOwner:
    """The owner's Nostr calls beside its other ones: on the home itself, or through the node."""
    if isinstance(owner, LocalOwner):
        return LocalNostrOwner(owner.node)
    # Its methods are made from the table at import (owner.make_remote), checked against the
    # protocol there (check_table); a type checker cannot see methods made so.
    return cast(NostrOwner, RemoteNostrOwner(owner))


@contextmanager
def _nostr_owner(settings: Settings) -> Iterator[NostrOwner]:
    """The owner's Nostr calls: on the home itself, or through the node serving it."""

    with _owner(settings) as owner:
        assert isinstance(owner, LocalOwner | RemoteOwner)  # _owner makes one of the two
        yield nostr_owner_of(owner)


@click.group(invoke_without_command=True)
@click.pass_context
def nostr(ctx: click.Context) -> None:
    """Private messages over Nostr (NIP-17 gift wraps) through the relays you configure."""
    if ctx.invoked_subcommand:
        return
    with _nostr_owner(ctx.obj) as owner:
        info = owner.whoami()
    out.print(f"Nostr key  {info['npub']}  ({info['pubkey']})", markup=False)
    out.print(
        f"relays     {', '.join(info['relays']) or '(none: flurry nostr relays add wss://…)'}",
        markup=False,
    )
    if info["running"]:
        out.print(
            f"listening  received {info['received']}, answered {info['answered']}, to the inbox {info['to_inbox']}, refused {info['rejected']}, dropped {info['dropped']}, sent {info['sent']}"
        )


@nostr.group("relays", invoke_without_command=True)
@click.pass_context
def nostr_relays(ctx: click.Context) -> None:
    """The relays the node reads and writes messages through (it connects to no others)."""
    if ctx.invoked_subcommand:
        return
    ctx.invoke(nostr_relays_list)


@nostr_relays.command("list")
@click.pass_obj
def nostr_relays_list(settings: Settings) -> None:
    with _nostr_owner(settings) as owner:
        found = owner.list_relays()
    if not found:
        out.print("no relays; add one with `flurry nostr relays add wss://…`")
    for url in found:
        out.print(url, markup=False)


@nostr_relays.command("add")
@click.argument("url")
@click.pass_obj
def nostr_relays_add(settings: Settings, url: str) -> None:
    with _nostr_owner(settings) as owner:
        url = owner.add_relay(url)
    out.print(f"added {url}", markup=False)


@nostr_relays.command("remove")
@click.argument("url")
@click.pass_obj
def nostr_relays_remove(settings: Settings, url: str) -> None:
    with _nostr_owner(settings) as owner:
        if not owner.remove_relay(url):
            raise click.ClickException(f"no relay {url}")
    out.print(f"removed {url}", markup=False)


@nostr.command("send")
@click.argument("peer")
@click.argument("text")
@click.pass_obj
def nostr_send(settings: Settings, peer: str, text: str) -> None:
    """Send a private message to a pinned peer or an npub; signed by this node, recorded in the audit log."""
    with _nostr_owner(settings) as owner:
        sent = owner.send(peer, text)
    out.print(
        f"sent {sent['event_id']} to {sent['to']} via {', '.join(sent['relays'])}", markup=False
    )
    for url, why in sent["failed"].items():
        err.print(f"  {url} refused it: {why}", markup=False)


COMMANDS = (nostr,)  # `flurry inbox` lives in node.cli.inbox
