"""The owner's Nostr over the signed API: the node's Nostr identity, its relays, sending a
private message to a peer, and the inbox of messages from strangers. Owner only (declared
where the router is included). The wire itself (node.nostr_wire) is made by create_app and
kept as ``app.state.nostr``; these routes act through ``app.state.nostr_owner``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from node.http.calls import BodyDep, owner_call
from node.nostr_owner import LocalNostrOwner

router = APIRouter()


def get_nostr_owner(request: Request) -> LocalNostrOwner:
    return request.app.state.nostr_owner


NostrOwnerDep = Annotated[LocalNostrOwner, Depends(get_nostr_owner)]


@router.get("/api/owner/nostr")
async def nostr_whoami(body: BodyDep, owner: NostrOwnerDep) -> dict:
    return await owner_call(owner.whoami)


@router.get("/api/owner/nostr/relays")
async def nostr_relays(body: BodyDep, owner: NostrOwnerDep) -> list:
    return await owner_call(owner.list_relays)


@router.post("/api/owner/nostr/relays")
async def nostr_add_relay(body: BodyDep, owner: NostrOwnerDep) -> dict:
    return {"url": await owner_call(lambda: owner.add_relay(str(body["url"])))}


@router.post("/api/owner/nostr/relays/remove")
async def nostr_remove_relay(body: BodyDep, owner: NostrOwnerDep) -> dict:
    return {"removed": await owner_call(lambda: owner.remove_relay(str(body["url"])))}


@router.post("/api/owner/nostr/send")
async def nostr_send(body: BodyDep, owner: NostrOwnerDep) -> dict:
    return await owner_call(lambda: owner.send(str(body["peer"]), str(body["text"])))


@router.get("/api/owner/inbox")
async def owner_inbox(body: BodyDep, owner: NostrOwnerDep) -> list:
    return await owner_call(owner.inbox)


@router.post("/api/owner/inbox/remove")
async def owner_inbox_remove(body: BodyDep, owner: NostrOwnerDep) -> dict:
    return {"removed": await owner_call(lambda: owner.remove_from_inbox(str(body["id"])))}
