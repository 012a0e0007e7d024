"""httpx clients that sign every request (RFC 9421, `identity.http_signatures`).

The owner's CLI and TUI sign with the owner's key; the node signs what it does for the
owner with its own key and says so in a signed header:

    Flurry-Agent: agent-made;on-behalf-of="did:key:z6Mk…"

an RFC 8941 Item (token ``agent-made`` with the owner's DID as a parameter), covered by the
signature so that no one on the way can strip or forge it. A request without the header was
made by the key holder in person.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import http_sf
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity.did_key import InvalidDID, verification_method_id
from identity.http_signatures import sign_request

AGENT_HEADER = "Flurry-Agent"


def agent_label(owner_did: str) -> str:
    """The Flurry-Agent value for a request an agent makes on ``owner_did``'s behalf."""
    params: dict[str, Any] = {"on-behalf-of": owner_did}  # http_sf's parameter type is a union
    return http_sf.ser((http_sf.Token("agent-made"), params))


class SigningAuth(httpx.Auth):
    """Signs each request with ``key`` under ``keyid`` (a did:key DID URL) just before it is sent."""

    requires_request_body = True  # the body's digest is signed

    def __init__(self, key: Ed25519PrivateKey, keyid: str, owner_did: str | None = None) -> None:
        if verification_method_id(keyid) != keyid:
            raise InvalidDID(
                f"keyid must be a did:key DID URL 'did:key:z6Mk…#z6Mk…', not {keyid!r}"
            )
        self.key = key
        self.keyid = keyid
        self.label = agent_label(owner_did) if owner_did else None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        cover: tuple[str, ...] = ()
        if self.label:
            request.headers[AGENT_HEADER] = self.label
            cover = (AGENT_HEADER,)
        signed = sign_request(
            request.method,
            _target_uri(request),
            request.headers,
            request.content,
            self.key,
            self.keyid,
            cover_fields=cover,
        )
        request.headers.update(signed)
        yield request


def _target_uri(request: httpx.Request) -> str:
    # Exactly what the server rebuilds (target_uri_from_scope): the Host header as sent, the
    # path and query as encoded on the wire, and no bare '?' that ASGI could not see.
    target = request.url.raw_path.decode("ascii")
    if not request.url.query:
        target = target.partition("?")[0]
    return f"{request.url.scheme}://{request.headers['Host']}{target}"


def signed_client(
    key: Ed25519PrivateKey, keyid: str, owner_did: str | None = None, **httpx_kwargs: Any
) -> httpx.Client:
    """An httpx.Client whose every request is signed; ``owner_did`` marks them agent-made."""
    return httpx.Client(auth=SigningAuth(key, keyid, owner_did), **httpx_kwargs)


def async_signed_client(
    key: Ed25519PrivateKey, keyid: str, owner_did: str | None = None, **httpx_kwargs: Any
) -> httpx.AsyncClient:
    """The httpx.AsyncClient twin of `signed_client`."""
    return httpx.AsyncClient(auth=SigningAuth(key, keyid, owner_did), **httpx_kwargs)
