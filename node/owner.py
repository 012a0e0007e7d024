"""What the owner manages: grants, tokens, peers, sends and the audit log — in one place.

`LocalOwner` does it on an open node; the API exposes the same object to the owner's
signed requests (/api/owner/...), and `RemoteOwner` is the command line's client of those
routes, used while `flurry serve` holds the home. Values cross as plain JSON-able dicts.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.audit import AuditError
from agent.grants import Grant
from identity.did_key import ed25519_public_from_did_key, verification_method_id
from node.node import Node
from node.nostr_peers import link_peer_from_card
from node.peers import (
    PeerError,
    PeerReply,
    add_peer,
    fetch_peer_card,
    find_peer,
    list_peers,
    send_message,
)


class OwnerError(Exception):
    """The owner's request cannot be done; the message says why."""


class Owner(Protocol):
    def add_grant(self, grant: dict) -> None: ...
    def list_grants(self) -> list[dict]: ...
    def remove_grant(self, did: str) -> bool: ...
    def create_token(self, name: str, allow: list[str]) -> str: ...
    def list_tokens(self) -> list[dict]: ...
    def revoke_token(self, name: str) -> bool: ...
    def add_peer(self, url: str, name: str) -> dict: ...
    def list_peers(self) -> list[dict]: ...
    def send(self, peer: str, text: str) -> dict: ...
    def verify_audit(self) -> dict: ...


class LocalOwner:
    def __init__(self, node: Node) -> None:
        self.node = node

    def add_grant(self, grant: dict) -> None:
        ed25519_public_from_did_key(grant["did"])  # refuse a malformed DID before storing anything
        self.node.grants.add(Grant.from_record(grant))

    def list_grants(self) -> list[dict]:
        return [g.to_record() for g in self.node.grants.list()]

    def remove_grant(self, did: str) -> bool:
        return self.node.grants.remove(did)

    def create_token(self, name: str, allow: list[str]) -> str:
        return self.node.tokens.create(name, set(allow))

    def list_tokens(self) -> list[dict]:
        return [{"name": t.name, "allow": sorted(t.allow), "created_at": t.created_at} for t in self.node.tokens.list()]

    def revoke_token(self, name: str) -> bool:
        return self.node.tokens.revoke(name)

    async def add_peer(self, url: str, name: str) -> dict:
        try:
            card, did = await fetch_peer_card(url)
        except PeerError as e:
            raise OwnerError(str(e)) from None
        peer = add_peer(self.node.vault, url, did, name)
        nostr = link_peer_from_card(self.node.vault, card, did)  # its Nostr key, when the card proves one
        return {**asdict(peer), "card_name": card.get("name", ""), "card_description": card.get("description", ""), "nostr": nostr}

    def list_peers(self) -> list[dict]:
        return [asdict(p) for p in list_peers(self.node.vault)]

    async def send(self, peer: str, text: str) -> dict:
        """Ask a pinned peer; signed by the node key, and every attempt lands in the audit log."""
        pinned = find_peer(self.node.vault, peer)
        if pinned is None:
            raise OwnerError(f"no pinned peer {peer!r}; add it first: flurry peers add URL --name NAME")
        keys = self.node.keys
        reply: PeerReply | None = None
        failure: PeerError | None = None
        try:
            reply = await send_message(
                pinned.url,
                text,
                key=keys.node_key,
                keyid=verification_method_id(keys.node_did),
                owner_did=keys.owner_did,
                pinned_did=pinned.did,
            )
        except PeerError as e:
            failure = e
        # Attempts are recorded too: a refusal, or a card signed by another DID, is worth an owner's look.
        details = {
            "peer_did": pinned.did,
            "task_id": reply.task_id if reply else None,
            "state": reply.state if reply else "failed",
            "question": text,
        }
        if failure is not None:
            details["error"] = str(failure)
        try:
            self.node.audit.append("a2a.send", target=pinned.url, details=details)
        except AuditError as e:
            raise OwnerError(f"{'sent' if reply else 'tried to send'}, but the audit log could not record it: {e}") from None
        if failure is not None:
            raise OwnerError(str(failure))
        assert reply is not None
        if reply.state not in ("TASK_STATE_COMPLETED", "message"):
            raise OwnerError(f"{pinned.label} did not answer: {reply.state}" + (f": {reply.note}" if reply.note else ""))
        return asdict(reply)

    def verify_audit(self) -> dict:
        report = self.node.audit.verify(lambda did: Ed25519PublicKey.from_public_bytes(ed25519_public_from_did_key(did)))
        return {"ok": report.ok, "count": report.count, "problems": [str(p) for p in report.problems]}


class RemoteOwner:
    """The same calls, sent to the running node over its signed API."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def _call(self, method: str, path: str, **kwargs) -> object:
        response = self._http.request(method, "/api/owner" + path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:200]
            raise OwnerError(f"the node answered {response.status_code}: {detail}")
        return response.json()

    def add_grant(self, grant: dict) -> None:
        self._call("PUT", "/grants", json=grant)

    def list_grants(self) -> list[dict]:
        return self._call("GET", "/grants")

    def remove_grant(self, did: str) -> bool:
        return self._call("POST", "/grants/remove", json={"did": did})["removed"]

    def create_token(self, name: str, allow: list[str]) -> str:
        return self._call("POST", "/tokens", json={"name": name, "allow": allow})["token"]

    def list_tokens(self) -> list[dict]:
        return self._call("GET", "/tokens")

    def revoke_token(self, name: str) -> bool:
        return self._call("POST", "/tokens/revoke", json={"name": name})["revoked"]

    def add_peer(self, url: str, name: str) -> dict:
        return self._call("POST", "/peers", json={"url": url, "name": name})

    def list_peers(self) -> list[dict]:
        return self._call("GET", "/peers")

    def send(self, peer: str, text: str) -> dict:
        return self._call("POST", "/send", json={"peer": peer, "text": text})

    def verify_audit(self) -> dict:
        return self._call("GET", "/audit")
