"""Public discovery: the node's DID document and its health. No signature needed.

The other public documents belong to their families: the signed agent card to
node.http.a2a, the WebID profile and the storage description to node.http.pod.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from identity.did_key import did_document
from node.http.state import NodeDep, QueueDep

router = APIRouter()


@router.get("/.well-known/did.json")
def node_did_document(node: NodeDep) -> JSONResponse:
    # alsoKnownAs (DID Core §5.1.3: a set of URIs) names the node's Nostr key as a NIP-21 URI.
    document = {**did_document(node.keys.node_did), "alsoKnownAs": [node.keys.nostr_key.uri]}
    return JSONResponse(document, media_type="application/did+json")


@router.get("/healthz")
def health(node: NodeDep, queue: QueueDep) -> dict:
    return {"ok": True, "node_did": node.keys.node_did, "queue": queue.waiting}
