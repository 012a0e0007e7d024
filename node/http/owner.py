"""The owner's management over the signed API, for the command line while a server holds
the home: grants, tokens, peers, sending to a peer, the audit log, pending approvals, and
who this node is. Owner only (declared where the router is included).

Each route reads its body (node.http.calls.owner_body) and calls one operation of the
node's LocalOwner (node.owner), which the command line calls directly when no server runs.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from node.a2a import CARD_PATH
from node.http.calls import owner_body, owner_call, required
from node.http.state import get_node, get_owner
from node.node import Node
from node.owner import LocalOwner

router = APIRouter()


@router.get("/api/owner/identity")
async def identity(request: Request, body: dict = Depends(owner_body), node: Node = Depends(get_node)) -> dict:
    base = str(request.base_url).rstrip("/")
    return {
        "owner_did": node.keys.owner_did,
        "node_did": node.keys.node_did,
        "agent_card": base + CARD_PATH,
        "api": base,
        "home": str(node.home.root),
    }


@router.get("/api/owner/grants")
async def owner_grants(body: dict = Depends(owner_body), owner: LocalOwner = Depends(get_owner)) -> list:
    return await owner_call(owner.list_grants)


@router.put("/api/owner/grants")
async def owner_add_grant(body: dict = Depends(owner_body), owner: LocalOwner = Depends(get_owner)) -> dict:
    await owner_call(owner.add_grant, body)
    return {"ok": True}


@router.post("/api/owner/grants/remove")
async def owner_remove_grant(body: dict = Depends(owner_body), owner: LocalOwner = Depends(get_owner)) -> dict:
    return {"removed": await owner_call(owner.remove_grant, body.get("did", ""))}


@router.get("/api/owner/tokens")
async def owner_tokens(body: dict = Depends(owner_body), owner: LocalOwner = Depends(get_owner)) -> list:
    return await owner_call(owner.list_tokens)


@router.post("/api/owner/tokens")
async def owner_create_token(body: dict = Depends(owner_body), owner: LocalOwner = Depends(get_owner)) -> dict:
    return {"token": await owner_call(owner.create_token, required(body, "name"), list(body.get("allow", ["chat"])))}


@router.post("/api/owner/tokens/revoke")
async def owner_revoke_token(body: dict = Depends(owner_body), owner: LocalOwner = Depends(get_owner)) -> dict:
    return {"revoked": await owner_call(owner.revoke_token, body.get("name", ""))}


@router.get("/api/owner/peers")
async def owner_peers(body: dict = Depends(owner_body), owner: LocalOwner = Depends(get_owner)) -> list:
    return await owner_call(owner.list_peers)


@router.post("/api/owner/peers")
async def owner_add_peer(body: dict = Depends(owner_body), owner: LocalOwner = Depends(get_owner)) -> dict:
    return await owner_call(owner.add_peer, required(body, "url"), body.get("name", ""))


@router.post("/api/owner/send")
async def owner_send(body: dict = Depends(owner_body), owner: LocalOwner = Depends(get_owner)) -> dict:
    return await owner_call(owner.send, required(body, "peer"), required(body, "text"))


@router.get("/api/owner/audit")
async def owner_audit(body: dict = Depends(owner_body), owner: LocalOwner = Depends(get_owner)) -> dict:
    return await owner_call(owner.verify_audit)


@router.get("/api/owner/approvals")
async def owner_approvals(body: dict = Depends(owner_body), owner: LocalOwner = Depends(get_owner)) -> list:
    return await owner_call(owner.list_approvals)


@router.post("/api/owner/approvals/decide")
async def owner_decide(body: dict = Depends(owner_body), owner: LocalOwner = Depends(get_owner)) -> dict:
    return await owner_call(owner.decide_approval, required(body, "id"), required(body, "decision"))
