"""Asking the node, for the owner and its granted peers: /api/ask, /api/whoami, /api/status.

Every route here is signed (the router's `signed_caller`); the grant decides whether a
peer may ask, and only the owner's questions may run tools. An answer streams as NDJSON
from a job on the model queue.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from agent.answer import answer_events
from agent.queue import lane_for
from node.http.auth import CallerDep, authorize, is_owner, require_owner
from node.http.jobs import PLANNED, ndjson, tool_turn
from node.http.problems import Problem
from node.http.state import (
    LiveDep,
    NodeDep,
    QueueDep,
)
from node.limits import parse_json

router = APIRouter()


@router.post("/api/ask")
async def ask(
    request: Request, caller: CallerDep, node: NodeDep, queue: QueueDep, conversations: LiveDep
) -> StreamingResponse:
    try:
        body = parse_json(await request.body() or b"{}")
        question = str(body["question"]).strip()
        k = int(body.get("k", 3))
        conversation_id = body.get("conversation")
        tools = body.get("tools", False)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise Problem(400, "bad request", 'send JSON {"question": "…", "k": 3}') from None
    if not question or not 1 <= k <= 20 or not isinstance(tools, bool):
        raise Problem(
            400,
            "bad request",
            "the question is empty, k is not between 1 and 20, or tools is not true/false",
        )
    if tools:
        require_owner(node, caller)  # skills act for the owner; peers get answers, never tool calls
    # The grant is checked (and its quota used) here; its tags are read again at every turn.
    await asyncio.to_thread(
        authorize, node, caller, "ask"
    )  # a sealed quota write: off the event loop
    if conversation_id is not None and conversations.caller_of(conversation_id) != caller:
        raise Problem(
            404,
            "no such conversation",
            "that conversation is unknown or was forgotten; start a new one",
        )

    owner = is_owner(node, caller)

    def work() -> Iterator[dict]:
        nonlocal conversation_id
        if conversation_id is None:
            conversation_id = uuid.uuid4().hex
            # A peer's conversation reads its grant at every turn (node.peer_tags), not the
            # grant it was opened under: narrowing a grant reaches open conversations.
            conversations.register(
                conversation_id,
                caller,
                node.conversation(title=question[:80], peer=None if owner else caller),
            )
        conversation = conversations.get(conversation_id)
        conversation.k = k
        yield {"type": "conversation", "id": conversation_id}
        planned = node.plan_tool_call(question) if tools else None
        if planned is not None:
            yield {"type": PLANNED, "planned": planned}  # the rest runs off the model queue
            return
        answer = conversation.ask(question)
        if owner:  # the owner sees the evidence first, then the verified sentences
            yield {"type": "sources", "sources": [s.to_json() for s in answer.sources]}
        if owner:  # the model's unchecked words too, for the owner's screen to show dimmed
            for kind, text in answer.events():
                yield {"type": "token" if kind == "text" else "draft", "text": text}
        else:
            for piece in answer:  # only sentences the verifier passed: safe for peers as they come
                yield {"type": "token", "text": piece}
        yield from answer_events(answer, owner=owner)

    return StreamingResponse(
        ndjson(
            queue.submit(work, lane=lane_for(owner)),
            follow_up=lambda planned: tool_turn(node, planned, caller),
        ),
        media_type="application/x-ndjson",
    )


@router.get("/api/whoami")
async def whoami(caller: CallerDep, node: NodeDep) -> dict:
    """The DID the node sees: lets a peer check its signing set-up without any grant."""
    return {"did": caller, "owner": is_owner(node, caller)}


@router.get("/api/status")
async def status(caller: CallerDep, node: NodeDep, queue: QueueDep) -> dict:
    require_owner(node, caller)
    return {
        **await asyncio.to_thread(node.status),
        "queue": {"waiting": queue.waiting, "max_waiting": queue.max_waiting},
    }
