"""The owner's Nostr commands: relays, sending, the inbox — on the home itself or through the server.

`LocalNostrOwner` works on an open node: with the running server's wire when `flurry serve`
holds the home (the API routes below), or with a send-only wire for the length of one
command. `RemoteNostrOwner` is the command line's client of those routes, signed by the
owner like every /api/owner call. Errors are OwnerError, which the API turns into
problem+json and the command line into one line.
"""

from __future__ import annotations

from typing import Protocol

from agent.audit import AuditError
from identity.nostr_key import parse_public_key
from node.node import Node
from node.nostr_peers import peer_did_for, peer_key_for
from node.nostr_wire import (
    NostrError,
    NostrWire,
    add_relay,
    inbox,
    list_relays,
    remove_from_inbox,
    remove_relay,
    run_briefly,
)
from node.owner import Operation, OwnerError, RemoteOwner, check_table, make_remote
from node.peers import find_peer

MAX_TEXT = 16_000  # characters; NIP-44 carries 64 KiB, and the rumor's JSON and tags need room


# The owner's Nostr operations, declared once like node.owner.OPERATIONS (and checked the same way).
NOSTR_OPERATIONS: tuple[Operation, ...] = (
    Operation("whoami", "GET", "/nostr"),
    Operation("list_relays", "GET", "/nostr/relays"),
    Operation("add_relay", "POST", "/nostr/relays", ("url",), returns="url"),
    Operation("remove_relay", "POST", "/nostr/relays/remove", ("url",), returns="removed"),
    Operation("send", "POST", "/nostr/send", ("peer", "text")),
    Operation("inbox", "GET", "/inbox"),
    Operation("remove_from_inbox", "POST", "/inbox/remove", ("id",), returns="removed"),
)


class NostrOwner(Protocol):
    """What the command line may ask of either Nostr owner (all synchronous: the wire has its own loop)."""

    def whoami(self) -> dict: ...
    def list_relays(self) -> list[str]: ...
    def add_relay(self, url: str) -> str: ...
    def remove_relay(self, url: str) -> bool: ...
    def send(self, peer: str, text: str) -> dict: ...
    def inbox(self) -> list[dict]: ...
    def remove_from_inbox(self, message_id: str) -> bool: ...


class LocalNostrOwner:
    def __init__(self, node: Node, wire: NostrWire | None = None) -> None:
        self.node = node
        self.wire = wire

    def whoami(self) -> dict:
        if self.wire is not None:
            return self.wire.status()
        key = self.node.keys.nostr_key
        return {
            "npub": key.npub,
            "pubkey": key.public_key_hex,
            "running": False,
            "relays": list_relays(self.node.vault),
        }

    def list_relays(self) -> list[str]:
        return list_relays(self.node.vault)

    def add_relay(self, url: str) -> str:
        try:
            url = add_relay(self.node.vault, url)
        except NostrError as e:
            raise OwnerError(str(e)) from None
        self._reload()
        return url

    def remove_relay(self, url: str) -> bool:
        removed = remove_relay(self.node.vault, url)
        if removed:
            self._reload()
        return removed

    def _reload(self) -> None:
        if self.wire is not None:
            self.wire.reload()

    def send(self, peer: str, text: str) -> dict:
        """Gift-wrap ``text`` to a pinned peer (name, DID or URL) or to a Nostr key (npub or hex)."""
        text = text.strip()
        if not text:
            raise OwnerError("the message is empty")
        if len(text) > MAX_TEXT:
            raise OwnerError(
                f"the message is {len(text)} characters; Nostr messages from this node are at most {MAX_TEXT}"
            )
        recipient, peer_did = self._recipient(peer)
        try:
            if self.wire is not None and self.wire.running:
                sent = self.wire.send(recipient, text, peer_did=peer_did)
            else:
                sent = run_briefly(
                    self.node, lambda wire: wire.send(recipient, text, peer_did=peer_did)
                )
        except NostrError as e:
            raise OwnerError(str(e)) from None
        except AuditError as e:  # recorded before it leaves, so nothing left
            raise OwnerError(f"not sent: the audit log could not record it: {e}") from None
        # The owner wrote to them: the inbox agent's loop guard may auto-reply to them again.
        self.node.inbox.owner_wrote("nostr", recipient.hex())
        return sent

    def _recipient(self, ref: str) -> tuple[bytes, str | None]:
        vault = self.node.vault
        pinned = find_peer(vault, ref)
        if pinned is not None:
            key = peer_key_for(vault, pinned.did)
            if key is None:
                raise OwnerError(
                    f"{pinned.label} has no Nostr key on record (its agent card named none when it was added); "
                    f"add it again (flurry peers add {pinned.url}) or send to its npub"
                )
            return bytes.fromhex(key), pinned.did
        try:
            public_key = parse_public_key(ref)
        except ValueError:
            raise OwnerError(
                f"{ref!r} is neither a pinned peer (flurry peers list) nor a Nostr public key (npub1… or 64 hex digits)"
            ) from None
        return public_key, peer_did_for(vault, public_key.hex())

    def inbox(self) -> list[dict]:
        return inbox(self.node.vault)

    def remove_from_inbox(self, message_id: str) -> bool:
        return remove_from_inbox(self.node.vault, message_id)


class RemoteNostrOwner:
    """The same calls over the running node's signed owner API (RemoteOwner's client and
    errors); one method per row of `NOSTR_OPERATIONS`, made below."""

    def __init__(self, remote: RemoteOwner) -> None:
        self._call, self._operate = remote._call, remote._operate


check_table(NOSTR_OPERATIONS, LocalNostrOwner, NostrOwner)
make_remote(RemoteNostrOwner, LocalNostrOwner, NOSTR_OPERATIONS)
