"""`flurry keys`: who this node is, and rotating its keys (node.rotation says how)."""

from __future__ import annotations

import asyncio
import json

import click

from identity.keyring import Keyring
from identity.recovery_code import RecoveryCode
from node import keyagent
from node.cli.common import Settings, _passphrase, err, out
from node.cli.recovery import print_recovery_code
from node.node import Node
from node.rotation import announce, rotate_home


@click.group()
def keys() -> None:
    """The owner's and the node's keys: show them, rotate them, tell the peers."""


@keys.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def keys_show(settings: Settings, as_json: bool) -> None:
    """The DIDs and the rotations so far; needs no passphrase (they are public)."""
    settings.home.require()
    public = Keyring.read_public(settings.home.keyring)
    if as_json:
        click.echo(json.dumps(public))
        return
    out.print(f"owner DID  {public['owner_did']}", markup=False)
    out.print(f"node DID   {public['node_did']}", markup=False)
    for number, statement in enumerate(public["rotations"], start=1):
        out.print(
            f"rotation {number}, {statement['issued']}: owner {statement['previous']['owner']}"
            f" → {statement['next']['owner']}, node {statement['previous']['node']}"
            f" → {statement['next']['node']}",
            markup=False,
        )


@keys.command("rotate")
@click.option(
    "--no-announce", is_flag=True, help="Do not push the new keys to the pinned peers now."
)
@click.pass_obj
def keys_rotate(settings: Settings, no_announce: bool) -> None:
    """New owner and node keys (new DIDs), the data key kept; signed over by the old keys.

    The statement is served with the node's DID document, WebID and agent card, and pushed
    to every pinned peer. Peers that pinned the old DIDs move to the new ones only with it."""
    passphrase = _passphrase(settings)
    before = Keyring.read_public(settings.home.keyring) if settings.home.exists() else None
    # The old recovery code's section holds the retired keys: a rotation makes a new code.
    code = RecoveryCode.generate() if before and before["recovery_code_created"] else None
    keys = rotate_home(settings.home, passphrase, code)
    keyagent.lock(settings.home)  # its cached keys are the retired ones
    assert before is not None  # rotate_home refused a home without a keyring
    out.print(f"owner DID  {before['owner_did']} → {keys.owner_did}", markup=False)
    out.print(f"node DID   {before['node_did']} → {keys.node_did}", markup=False)
    out.print(f"Nostr key  now {keys.nostr_public_key_hex} (it follows the node key)", markup=False)
    if code:
        print_recovery_code(code, replacing=True)
    _announce(settings, passphrase, record_only=no_announce)


@keys.command("announce")
@click.pass_obj
def keys_announce(settings: Settings) -> None:
    """Push this node's rotation chain to every pinned peer again (say, one that was down)."""
    _announce(settings, _passphrase(settings), record_only=False)


def _announce(settings: Settings, passphrase: str, *, record_only: bool) -> None:
    # Opening the node is what records the rotation in the audit log (node.rotation).
    with Node.open(settings.home, passphrase, say=lambda line: err.print(line)) as node:
        if record_only or not node.keys.rotations:
            return
        results = asyncio.run(announce(node.keys, node.vault, node.audit))
    if not results:
        out.print(
            "no pinned peers to tell; others learn the new keys from the agent card "
            "the next time they send here"
        )
    for result in results:
        mark = "told" if result["ok"] else "NOT told"
        out.print(f"{mark} {result['peer']} ({result['url']}): {result['detail']}", markup=False)
    if not all(result["ok"] for result in results):
        err.print(
            "peers not told now learn the new keys from the agent card the next time they send "
            "here; `flurry keys announce` tries again"
        )


COMMANDS = (keys,)
