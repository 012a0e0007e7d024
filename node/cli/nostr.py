"""Nostr: the key, relays, private messages and the inbox."""

from __future__ import annotations

import json
import time
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


@contextmanager
def _nostr_owner(settings: Settings) -> Iterator[NostrOwner]:
    """The owner's Nostr calls: on the home itself, or through the node serving it."""

    with _owner(settings) as owner:
        if isinstance(owner, LocalOwner):
            yield LocalNostrOwner(owner.node)
        else:
            assert isinstance(owner, RemoteOwner)  # _owner makes one of the two
            # Its methods are made from the table at import (owner.make_remote), checked against
            # the protocol there (check_table); a type checker cannot see methods made so.
            yield cast(NostrOwner, RemoteNostrOwner(owner))


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


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the messages as one JSON list.")
@click.pass_context
def inbox(ctx: click.Context, as_json: bool) -> None:
    """Messages waiting for you: from strangers, from peers without a grant, and peers' replies."""
    if ctx.invoked_subcommand:
        return
    with _nostr_owner(ctx.obj) as owner:
        messages = owner.inbox()
    if as_json:
        click.echo(json.dumps(messages))
        return
    if not messages:
        out.print("the inbox is empty")
    for m in messages:
        sender = m["peer_did"] or m["npub"]
        sent = time.strftime("%Y-%m-%d %H:%M", time.localtime(m["sent_at"]))
        out.print(f"{m['message_id'][:12]}  {sent}  from {sender}  ({m['why']})", markup=False)
        out.print(f"  {m['text']}", markup=False)


@inbox.command("remove")
@click.argument("message_id")
@click.pass_obj
def inbox_remove(settings: Settings, message_id: str) -> None:
    """Delete a message from the inbox (by the id `flurry inbox` shows, or its full id)."""
    with _nostr_owner(settings) as owner:
        matches = [
            m
            for m in owner.inbox()
            if m["message_id"].startswith(message_id) or m["id"] == message_id
        ]
        if len(matches) != 1:
            raise click.ClickException(
                f"{'no' if not matches else 'more than one'} message {message_id!r} in the inbox"
            )
        owner.remove_from_inbox(matches[0]["message_id"])
    out.print(f"removed {matches[0]['message_id']}")


COMMANDS = (nostr, inbox)
