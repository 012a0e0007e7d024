"""The owner's conversations over the signed API: list, create, reopen, rename and delete.
Owner only (declared where the router is included).

A conversation made or reopened here is registered live under its vault id
(node.http.state.LiveConversations), so /api/ask can continue it, even one stored before
the node restarted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from fastapi import APIRouter

from agent.answer import Conversation, Source
from node.http.calls import BodyDep, text_field
from node.http.problems import Problem
from node.http.state import (
    LiveDep,
    NodeDep,
)
from node.node import Node

router = APIRouter()


def live(node: Node, conv_id: str, turns: list[tuple[str, list[Source], str]]) -> Conversation:
    conversation = Conversation(
        _ModelOnFirstUse(node),
        lambda question, k: node.retrieve(question, k),
        record=lambda message: node.vault.append_message(conv_id, message),
        embed=lambda texts: node.embedder.embed(texts),  # on the model queue, like the answer
    )
    conversation.turns = turns
    return conversation


def find_conversation(node: Node, conv_id: str) -> dict | None:
    return next((c for c in node.vault.conversations() if c["id"] == conv_id), None)


@router.get("/api/owner/conversations")
async def list_conversations(body: BodyDep, node: NodeDep) -> list:
    return await asyncio.to_thread(node.vault.conversations)


@router.post("/api/owner/conversations")
async def new_conversation(body: BodyDep, node: NodeDep, live_ones: LiveDep) -> dict:
    title = str(body.get("title") or "chat").strip()[:80] or "chat"
    conv_id = await asyncio.to_thread(node.vault.create_conversation, title)
    live_ones.register(conv_id, node.keys.owner_did, live(node, conv_id, []))
    return {"id": conv_id, "title": title}


@router.post("/api/owner/conversations/open")
async def open_conversation(body: BodyDep, node: NodeDep, live_ones: LiveDep) -> dict:
    """A stored conversation's messages; it becomes live again, so /api/ask continues it."""
    conv_id = text_field(body, "id")
    found = await asyncio.to_thread(find_conversation, node, conv_id)
    if found is None:
        raise Problem(404, "no such conversation", "that conversation is not in the vault")
    messages = await asyncio.to_thread(node.vault.messages, conv_id)
    if live_ones.caller_of(conv_id) != node.keys.owner_did:
        live_ones.register(conv_id, node.keys.owner_did, live(node, conv_id, _turns(messages)))
    return {**found, "messages": messages}


@router.post("/api/owner/conversations/rename")
async def rename_conversation(body: BodyDep, node: NodeDep) -> dict:
    conv_id, title = text_field(body, "id"), text_field(body, "title")[:80]
    if not await asyncio.to_thread(node.vault.rename_conversation, conv_id, title):
        raise Problem(404, "no such conversation", "that conversation is not in the vault")
    return {"id": conv_id, "title": title}


@router.post("/api/owner/conversations/delete")
async def delete_conversation(body: BodyDep, node: NodeDep, live_ones: LiveDep) -> dict:
    conv_id = text_field(body, "id")
    live_ones.forget(conv_id)
    if not await asyncio.to_thread(node.vault.delete_conversation, conv_id):
        raise Problem(404, "no such conversation", "that conversation is not in the vault")
    return {"deleted": True}


class _ModelOnFirstUse:
    """The node's chat model, loaded when the conversation first needs it: that is on the
    model queue, when it answers, so making or reopening a conversation never waits there."""

    def __init__(self, node: Node) -> None:
        self._node = node

    @property
    def n_ctx(self) -> int:
        return self._node.chat_model.n_ctx

    def count_tokens(self, text: str) -> int:
        return self._node.chat_model.count_tokens(text)

    def stream(self, messages: list[dict], *, max_tokens: int = 256) -> Iterator[str]:
        return self._node.chat_model.stream(messages, max_tokens=max_tokens)


def _turns(messages: list[dict]) -> list[tuple[str, list[Source], str]]:
    """A stored conversation's turns, for the model's history. The vault keeps each answer's
    sources as snippets, so a reopened conversation remembers its notes by their snippets."""
    turns = []
    question = None
    for message in messages:
        if message.get("role") == "user":
            question = message.get("content", "")
        elif message.get("role") == "assistant" and question is not None:
            sources = [
                Source(
                    n,
                    s.get("path", ""),
                    int(s.get("chunk", 0)),
                    float(s.get("score", 0.0)),
                    s.get("snippet", ""),
                    quote=str(s.get("quote", "")),
                )
                for n, s in enumerate(message.get("sources", []), start=1)
            ]
            turns.append((question, sources, message.get("content", "")))
            question = None
    return turns
