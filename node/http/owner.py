"""The owner's management over the signed API, for the command line while a server holds
the home: grants, tokens, peers, sending to a peer, the audit log, pending approvals, and
who this node is. Owner only (declared where the router is included).

Each route reads its body (node.http.calls.owner_body) and calls one operation of the
node's LocalOwner (node.owner), which the command line calls directly when no server runs.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from node.http.calls import BodyDep, owner_call, required
from node.http.state import NodeDep, OwnerDep
from node.peers import CARD_PATH

router = APIRouter()


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


@router.get("/api/owner/grants")
async def owner_grants(body: BodyDep, owner: OwnerDep) -> list:
    return await owner_call(owner.list_grants)


@router.put("/api/owner/grants")
async def owner_add_grant(body: BodyDep, owner: OwnerDep) -> dict:
    await owner_call(owner.add_grant, body)
    return {"ok": True}


@router.post("/api/owner/grants/remove")
async def owner_remove_grant(body: BodyDep, owner: OwnerDep) -> dict:
    return {"removed": await owner_call(owner.remove_grant, body.get("did", ""))}


@router.get("/api/owner/tokens")
async def owner_tokens(body: BodyDep, owner: OwnerDep) -> list:
    return await owner_call(owner.list_tokens)


@router.post("/api/owner/tokens")
async def owner_create_token(body: BodyDep, owner: OwnerDep) -> dict:
    return {
        "token": await owner_call(
            owner.create_token, required(body, "name"), list(body.get("allow", ["chat"]))
        )
    }


@router.post("/api/owner/tokens/revoke")
async def owner_revoke_token(body: BodyDep, owner: OwnerDep) -> dict:
    return {"revoked": await owner_call(owner.revoke_token, body.get("name", ""))}


@router.get("/api/owner/peers")
async def owner_peers(body: BodyDep, owner: OwnerDep) -> list:
    return await owner_call(owner.list_peers)


@router.post("/api/owner/peers")
async def owner_add_peer(body: BodyDep, owner: OwnerDep) -> dict:
    return await owner_call(owner.add_peer, required(body, "url"), body.get("name", ""))


@router.post("/api/owner/send")
async def owner_send(body: BodyDep, owner: OwnerDep) -> dict:
    return await owner_call(owner.send, required(body, "peer"), required(body, "text"))


@router.get("/api/owner/audit")
async def owner_audit(body: BodyDep, owner: OwnerDep) -> dict:
    return await owner_call(owner.verify_audit)


@router.get("/api/owner/approvals")
async def owner_approvals(body: BodyDep, owner: OwnerDep) -> list:
    return await owner_call(owner.list_approvals)


@router.post("/api/owner/approvals/decide")
async def owner_decide(body: BodyDep, owner: OwnerDep) -> dict:
    return await owner_call(owner.decide_approval, required(body, "id"), required(body, "decision"))
