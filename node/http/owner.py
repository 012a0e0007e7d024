"""The owner's management over the signed API, for the command line while a server holds
the home: grants, tokens, peers, sending to a peer, the audit log, pending approvals, and
who this node is. Owner only (declared where the router is included).

The routes are made from node.owner.OPERATIONS (node.http.calls.serve_operations): each
reads its body and calls one operation of the node's LocalOwner, which the command line
calls directly when no server runs.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from node.http.calls import BodyDep, fields_or_defaults, serve_operations
from node.http.state import NodeDep, get_owner
from node.owner import OPERATIONS
from node.peers import CARD_PATH

router = APIRouter()

# The routes of the skills and of pod access live with their own (node.http.skills, node.http.pod).
SERVED_HERE = (
    "/grants",
    "/tokens",
    "/peers",
    "/send",
    "/audit",
    "/approvals",
    "/inbox/",
    "/contracts",  # Contract Net (node.contracts_*)
    "/models/remote",  # remote chat models (node.remote_models)
)

# Fields a hand-made request may leave out (the command line sends every field), and their value then.
OPTIONAL = {
    ("remove_grant", "did"): "",
    ("create_token", "allow"): ["chat"],
    ("revoke_token", "name"): "",
    ("add_peer", "name"): "",
    ("approve_draft", "body"): None,  # the draft as the agent wrote it
    ("inbox_digest", "since"): 24 * 3600,
    ("award_delegation", "did"): None,  # award nobody
    ("start_delegation", "kind"): "answer",
    ("add_remote_model", "model"): "",
    ("add_remote_model", "key"): None,
    ("add_remote_model", "allow_peers"): False,
}


# Not an operation of the table: it answers from the request (this server's own URL).
@router.get("/api/owner/identity")
async def identity(request: Request, body: BodyDep, node: NodeDep) -> dict:
    base = str(request.base_url).rstrip("/")
    return {
        "owner_did": node.keys.owner_did,
        "node_did": node.keys.node_did,
        "agent_card": base + CARD_PATH,
        "api": base,
        "home": str(node.home.root),
    }


serve_operations(
    router,
    tuple(o for o in OPERATIONS if o.path.startswith(SERVED_HERE)),
    get_owner,
    fields_or_defaults(OPTIONAL, convert={"allow": list}),
)
