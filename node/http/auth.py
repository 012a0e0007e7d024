"""Who is calling: the one auth path of the API, as FastAPI dependencies.

`signed_caller` checks the RFC 9421 signature (or a pinned Nostr peer's NIP-98 header) and
answers the caller's DID; the grants then decide what that DID may do (`authorize`), and
`owner_caller` refuses anyone but the owner. Routers declare them once, when they are
included (node.http.app). /v1 takes owner-made bearer tokens instead (`bearer_token`),
because the apps that speak that API cannot sign.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request

from agent.grants import Grant
from agent.tokens import InvalidToken, TokenGrant
from identity.errors import SignatureRejected
from identity.http_signatures import target_uri_from_scope, verify_request
from node.http.problems import Problem
from node.http.state import NodeDep
from node.limits import claimed_did, retry_after, source_of
from node.node import Node
from node.nostr_peers import is_nostr_http_auth, nostr_http_caller


async def signed_caller(request: Request) -> str:
    """The DID that signed this request; 401 (problem+json, with the reason) otherwise."""
    state = request.app.state
    body = await request.body()
    # Strangers (by the DID they claim) draw on a budget per source address, and only a few of
    # their signatures are checked at once, so they cannot crowd out the owner and its peers.
    stranger = state.known.tier(claimed_did(request.headers)) == "stranger"
    if stranger:
        if (wait := state.strangers.take(source_of(request.scope))) is not None:
            raise Problem(
                429,
                "too many requests",
                "too many requests from strangers at this address",
                headers={"Retry-After": retry_after(wait)},
            )
        if not state.strangers.begin_check():
            raise Problem(
                503, "busy", "too many strangers' requests at once", headers={"Retry-After": "1"}
            )

    def check() -> str:
        # request.headers, not a dict of it: a repeated header must stay visible to the check.
        target = target_uri_from_scope(request.scope, allowed_hosts=state.allowed_hosts)
        if is_nostr_http_auth(request.headers):  # NIP-98, for peers whose Nostr key is pinned
            return nostr_http_caller(
                state.node.vault, state.replay_cache, request.method, target, request.headers, body
            )
        return verify_request(
            request.method, target, request.headers, body, replay_cache=state.replay_cache
        )

    try:
        # Parsing structured fields and checking the signature: off the event loop.
        return await asyncio.to_thread(check)
    except SignatureRejected:
        if not stranger:
            state.strangers.take(
                source_of(request.scope)
            )  # a false claim to be someone known costs a token too
        raise
    finally:
        if stranger:
            state.strangers.end_check()


CallerDep = Annotated[str, Depends(signed_caller)]


def is_owner(node: Node, caller: str) -> bool:
    return caller == node.keys.owner_did


def require_owner(node: Node, caller: str) -> None:
    if not is_owner(node, caller):
        raise Problem(403, "owner only", "only the node's owner may do this")


async def owner_caller(caller: CallerDep, node: NodeDep) -> str:
    """The owner's DID, for the routes only the owner may call; 403 for anyone else who signed."""
    require_owner(node, caller)
    return caller


def authorize(node: Node, did: str, operation: str) -> Grant:
    """The grant that lets ``did`` do ``operation``, its quota used; NotGranted or QuotaExceeded
    otherwise (403 / 429 by node.http.problems). A sealed write: call it off the event loop."""
    return node.grants.authorize(did, operation, owner_did=node.keys.owner_did)


def bearer_token(request: Request, node: NodeDep) -> set[str]:
    """What the owner-made token in ``Authorization: Bearer`` allows (/v1)."""
    return set(bearer_grant(request, node).allow)


def bearer_grant(request: Request, node: Node) -> TokenGrant:
    """The owner-made token in ``Authorization: Bearer``: what it allows, and the peer it is
    bound to, if any (/v1)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Problem(
            401, "token required", "send an owner-made token: Authorization: Bearer flurry_…"
        )
    try:
        return node.tokens.verify(token.strip())
    except InvalidToken as e:
        raise Problem(401, "token rejected", str(e)) from None


TokenDep = Annotated[set[str], Depends(bearer_token)]
