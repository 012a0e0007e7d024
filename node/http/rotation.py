"""Key rotation over HTTP: this node's chain, public; a peer's chain, pushed and signed.

GET /.well-known/flurry-rotations is public and read-only, like the DID document: the
statements are signed, so anyone may read and check them. POST /api/peer/rotations takes a
peer's chain (node.rotation.follow decides); the request must be signed by the chain's latest
key, which is a stranger's here until the chain is followed, so it draws on the strangers'
budget like any unknown caller. The body is bounded before it is parsed.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from identity.rotation import MAX_CHAIN_BYTES, RotationRejected, chain_document, parse_chain
from node.http.auth import CallerDep
from node.http.problems import Problem
from node.http.state import NodeDep
from node.rotation import CHAIN_PATH, PUSH_PATH, RotationRefused, follow

public_router = APIRouter()
peer_router = APIRouter()  # signed (declared where it is included)


@public_router.get(CHAIN_PATH)
def rotations(node: NodeDep) -> JSONResponse:
    keys = node.keys
    document = {**chain_document(keys.rotations), "owner": keys.owner_did, "node": keys.node_did}
    return JSONResponse(document)


@peer_router.post(PUSH_PATH)
async def follow_rotation(request: Request, caller: CallerDep, node: NodeDep) -> dict:
    body = (
        await request.body()
    )  # already bounded by the guard (1 MiB); the chain's own bound is lower
    if len(body) > MAX_CHAIN_BYTES:
        raise Problem(413, "too large", f"a rotation chain is at most {MAX_CHAIN_BYTES} bytes")
    try:
        # Four Ed25519 checks and a Nostr proof per link: off the event loop.
        chain = await asyncio.to_thread(parse_chain, body)
        moved = await asyncio.to_thread(follow, node.vault, node.grants, chain, signer=caller)
    except RotationRejected as rejected:
        raise Problem(400, "rotation rejected", str(rejected), reason=rejected.reason) from None
    except RotationRefused as refused:
        raise Problem(403, "rotation refused", str(refused)) from None
    if moved:
        await asyncio.to_thread(
            node.audit.append,
            "peer.rotated",
            target=chain.node,
            details={"moved": moved, "rotations": len(chain.links), "via": "push"},
        )
    return {"moved": moved, "node": chain.node, "owner": chain.owner}
