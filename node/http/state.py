"""What the app keeps on ``app.state``, and the small dependencies that read it.

Routes take the node, the model queue and the rest as ``Depends(get_node)`` and so on, never
from a closure, so a test can swap one with ``app.dependency_overrides``. `create_app`
(node.http.app) is the only writer of ``app.state``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated

from fastapi import Depends, Request

from agent.answer import Conversation
from agent.queue import ModelQueue
from node.node import Node
from node.owner import LocalOwner

MAX_CONVERSATIONS = 64


class LiveConversations:
    """Conversations continued over the API, per caller; the oldest are forgotten first
    (they stay sealed in the vault, only the model's working copy goes)."""

    def __init__(self, limit: int = MAX_CONVERSATIONS) -> None:
        self._live: OrderedDict[str, tuple[str, Conversation]] = OrderedDict()
        self._limit = limit

    def caller_of(self, conversation_id: str) -> str | None:
        return self._live.get(conversation_id, (None,))[0]

    def get(self, conversation_id: str) -> Conversation:
        return self._live[conversation_id][1]

    def register(self, conversation_id: str, caller: str, conversation: Conversation) -> None:
        self._live[conversation_id] = (caller, conversation)
        self._live.move_to_end(conversation_id)
        while len(self._live) > self._limit:
            self._live.popitem(last=False)

    def forget(self, conversation_id: str) -> None:
        self._live.pop(conversation_id, None)


def get_node(request: Request) -> Node:
    return request.app.state.node


def get_queue(request: Request) -> ModelQueue:
    return request.app.state.model_queue


def get_owner(request: Request) -> LocalOwner:
    return request.app.state.owner


def get_conversations(request: Request) -> LiveConversations:
    return request.app.state.conversations


# What a route's parameters say to be handed these.
NodeDep = Annotated[Node, Depends(get_node)]
QueueDep = Annotated[ModelQueue, Depends(get_queue)]
OwnerDep = Annotated[LocalOwner, Depends(get_owner)]
LiveDep = Annotated[LiveConversations, Depends(get_conversations)]
