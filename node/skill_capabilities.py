"""What the node does for a skill once the broker (skills.broker) has checked its grant.

Kept apart from the broker: the broker decides *whether*, this decides *how*, with the same
paths the owner's own commands use, so a skill's message to a peer is signed, labelled as
agent-made and audited exactly like `flurry send`, and its HTTP call is too.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import httpx

from agent.answer import Source
from identity.did_key import verification_method_id
from identity.signing_client import signed_client
from node.errors import OwnerError
from node.nostr_wire import NostrError, WireNode, run_briefly
from node.peering import send_to_peer
from skills.broker import CapabilityFailed


class NostrPort(Protocol):
    """The server's connection to the Nostr relays, as a skill's capabilities use it
    (node.nostr_wire.NostrWire is one; node.node holds it once the server connects it)."""

    @property
    def running(self) -> bool: ...

    def publish(self, text: str, *, skill: str | None = None) -> dict: ...


class CapabilityNode(WireNode, Protocol):
    """The node as a skill's capabilities use it (node.node.Node is one). A protocol rather
    than an import: node.node builds the broker on this module."""

    @property
    def nostr(self) -> NostrPort | None: ...

    def retrieve(
        self, question: str, k: int, tags: frozenset[str] | None = ...
    ) -> list[Source]: ...

    def remember(self, title: str, text: str, by: str = ...) -> str: ...

    def ask_owner(self, skill: str, question: str) -> bool: ...


MAX_HTTP_BODY = 1024 * 1024


class SkillCapabilities:
    def __init__(self, node: CapabilityNode) -> None:
        self._node = node

    def search(self, query: str, k: int, tags: frozenset[str] | None) -> list[dict]:
        return [s.to_json() for s in self._node.retrieve(query, k, tags)]

    def write_note(self, skill: str, title: str, text: str) -> dict:
        return {"path": self._node.remember(title, text, by=skill)}

    def send_to_peer(self, skill: str, peer: str, text: str) -> str:
        try:
            # The broker's threads have no event loop of their own.
            return asyncio.run(send_to_peer(self._node, peer, text, by=skill))["text"]
        except OwnerError as e:
            raise CapabilityFailed(str(e)) from None

    def http_request(
        self, skill: str, method: str, url: str, body: str | None, address: str
    ) -> dict:
        keys = self._node.keys
        details = {"skill": skill, "method": method, "url": url}
        target = httpx.URL(url)
        # To the address the broker checked, and no other: the URL's host goes in the Host header
        # (which the signature covers) and, for https, in SNI and the certificate check.
        pinned = target.copy_with(host=address)
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            # Signed by the node and labelled agent-made (RFC 9421); redirects are not followed,
            # because the grant names one origin and a redirect could leave it. No proxy from
            # the environment: it would connect to addresses the broker never checked.
            with signed_client(
                keys.node_key,
                verification_method_id(keys.node_did),
                owner_did=keys.owner_did,
                timeout=30,
                follow_redirects=False,
                trust_env=False,
            ) as http:
                response = http.request(
                    method,
                    pinned,
                    content=body.encode() if body is not None else None,
                    headers={"Host": target.netloc.decode("ascii")},
                    extensions=extensions,
                )
        except httpx.HTTPError as e:
            self._node.audit.append(
                "skill.http", target=url, details={**details, "error": str(e) or type(e).__name__}
            )
            raise CapabilityFailed(f"{method} {url} failed: {e}") from None
        self._node.audit.append(
            "skill.http", target=url, details={**details, "status": response.status_code}
        )
        return {
            "status": response.status_code,
            "content_type": response.headers.get("content-type", ""),
            "body": response.text[:MAX_HTTP_BODY],
        }

    def ask_owner(self, skill: str, question: str) -> bool:
        return self._node.ask_owner(skill, question)

    def publish_nostr(self, skill: str, text: str) -> dict:
        wire = self._node.nostr
        try:
            if wire is not None and wire.running:
                return wire.publish(text, skill=skill)
            return run_briefly(self._node, lambda brief: brief.publish(text, skill=skill))
        except NostrError as e:
            raise CapabilityFailed(str(e)) from None
