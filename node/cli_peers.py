"""`flurry peers` and `flurry send`: other nodes, pinned by the DID that signs their card.

node.cli registers these commands (`register(cli)`); they import node.cli only when they
run, because node.cli imports this module while it is still being defined.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import click

from agent.audit import AuditError
from identity.did_key import verification_method_id
from node.peers import (
    Peer,
    PeerError,
    PeerReply,
    add_peer,
    fetch_peer_card,
    find_peer,
    list_peers,
    send_message,
)

if TYPE_CHECKING:
    from node.cli import Settings
    from node.node import Node


def register(cli: click.Group) -> None:
    cli.add_command(peers)
    cli.add_command(send)


@click.group()
def peers() -> None:
    """Other flurry nodes (A2A agents) this node talks to, pinned by DID."""


@peers.command("add")
@click.argument("url")
@click.option("--name", default="", help="A short name to send to it by (default: its DID).")
@click.pass_obj
def peers_add(settings: Settings, url: str, name: str) -> None:
    """Fetch a node's agent card, check its signature and pin the DID that signed it."""
    from node.cli import _open_node, out

    try:
        card, did = asyncio.run(fetch_peer_card(url))
    except PeerError as e:
        raise click.ClickException(str(e)) from None
    with _open_node(settings) as node:
        peer = add_peer(node.vault, url, did, name)
    out.print(f"pinned {did} for {peer.url}" + (f" as {name}" if name else ""))
    out.print(f"  {card.get('name', '(no name)')}: {card.get('description', '')}", style="dim", markup=False)


@peers.command("list")
@click.pass_obj
def peers_list(settings: Settings) -> None:
    """The pinned peers: name, DID, URL."""
    from node.cli import _open_node, out

    with _open_node(settings) as node:
        found = list_peers(node.vault)
    if not found:
        out.print("no peers yet; add one with `flurry peers add URL --name NAME`")
    for peer in found:
        out.print(f"{peer.name or '-':<16} {peer.did}  {peer.url}", markup=False)


@click.command()
@click.argument("peer")
@click.argument("text")
@click.pass_obj
def send(settings: Settings, peer: str, text: str) -> None:
    """Ask a pinned peer (by name, DID or URL) a question; signed by this node, recorded in the audit log."""
    from node.cli import _open_node

    with _open_node(settings) as node:
        pinned = find_peer(node.vault, peer)
        if pinned is None:
            raise click.ClickException(f"no pinned peer {peer!r}; add it first: flurry peers add URL --name NAME")
        keys = node.keys
        failure: PeerError | None = None
        reply: PeerReply | None = None
        try:
            reply = asyncio.run(
                send_message(
                    pinned.url,
                    text,
                    key=keys.node_key,
                    keyid=verification_method_id(keys.node_did),
                    owner_did=keys.owner_did,
                    pinned_did=pinned.did,
                )
            )
        except PeerError as e:
            failure = e
        # Attempts are recorded too: a refusal, or a card signed by another DID, is worth an owner's look.
        try:
            _record(node, pinned, text, reply, failure)
        except AuditError as e:
            raise click.ClickException(f"{'sent' if reply else 'tried to send'}, but the audit log could not record it: {e}") from None
    if failure is not None:
        raise click.ClickException(str(failure))
    assert reply is not None
    if reply.state not in ("TASK_STATE_COMPLETED", "message"):
        raise click.ClickException(f"{pinned.label} did not answer: {reply.state}" + (f": {reply.note}" if reply.note else ""))
    click.echo(reply.text)


def _record(node: Node, peer: Peer, text: str, reply: PeerReply | None, failure: PeerError | None) -> None:
    details = {
        "peer_did": peer.did,
        "task_id": reply.task_id if reply else None,
        "state": reply.state if reply else "failed",
        "question": text,
    }
    if failure is not None:
        details["error"] = str(failure)
    node.audit.append("a2a.send", target=peer.url, details=details)
