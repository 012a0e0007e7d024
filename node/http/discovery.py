"""Public discovery: the node's DID document and its health. No signature needed.

The other public documents belong to their families: the signed agent card to
node.http.a2a, the WebID profile and the storage description to node.http.pod.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from identity.did_key import did_document
from node.http.state import NodeDep, QueueDep
from node.rotation import CHAIN_PATH, previous_node_dids

router = APIRouter()


@router.get("/.well-known/did.json")
def node_did_document(request: Request, node: NodeDep) -> JSONResponse:
    # alsoKnownAs (DID Core §5.1.3: a set of URIs) names the node's Nostr key as a NIP-21 URI,
    # and the node DIDs it rotated away from, newest first; the service says where the signed
    # statements that prove those links are.
    keys = node.keys
    earlier = previous_node_dids(keys)[::-1]
    document = {**did_document(keys.node_did), "alsoKnownAs": [keys.nostr_key.uri, *earlier]}
    if earlier:
        document["service"] = [
            {
                "id": f"{keys.node_did}#key-rotations",
                "type": "FlurryKeyRotations",
                "serviceEndpoint": str(request.base_url).rstrip("/") + CHAIN_PATH,
            }
        ]
    return JSONResponse(document, media_type="application/did+json")


@router.get("/healthz")
def health(node: NodeDep, queue: QueueDep) -> dict:
    return {"ok": True, "node_did": node.keys.node_did, "queue": queue.waiting}
