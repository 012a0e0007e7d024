"""The owner's Nostr over the signed API: the node's Nostr identity, its relays, sending a
private message to a peer, and the inbox of messages from strangers. Owner only (declared
where the router is included). The wire itself (node.nostr_wire) is made by create_app and
kept as ``app.state.nostr``; these routes, made from node.nostr_owner.NOSTR_OPERATIONS,
act through ``app.state.nostr_owner``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from node.http.calls import serve_operations
from node.nostr_owner import NOSTR_OPERATIONS, LocalNostrOwner
from node.owner import Operation

router = APIRouter()


def get_nostr_owner(request: Request) -> LocalNostrOwner:
    return request.app.state.nostr_owner


def text_of_each_field(operation: Operation, body: dict) -> tuple:
    """Every field is required and taken as text (a missing one is 400, "missing or malformed")."""
    return tuple(str(body[name]) for name in operation.fields)


serve_operations(router, NOSTR_OPERATIONS, get_nostr_owner, text_of_each_field)
