"""The owner's data over the signed API: documents, conversations and the node's identity.

The terminal app (tui/) is a client of the node like any peer, so what it shows the owner
comes from here: list, search, add (streaming progress), forget and read documents; list,
create, reopen, rename and delete conversations; who this node is. Every route is
owner-only and signed (RFC 9421), like /api/owner/grants.

Anything that touches the model or the indexes (adding embeds, searching embeds, forgetting
edits the indexes) runs as a job on the node's one model queue: llama.cpp and the embedded
chromadb are not safe across threads, and the event loop must never wait on them.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator

from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse

from agent.answer import Conversation, Source
from node.a2a import CARD_PATH
from node.node import Node
from store.ingest import absolute


def mount_owner_data(
    app: FastAPI,
    node: Node,
    *,
    signed_caller: Callable,
    submit: Callable,
    conversations: OrderedDict,
    max_conversations: int,
) -> None:
    """Add the /api/owner/documents, /api/owner/conversations and /api/owner/identity routes.

    ``conversations`` is the API's table of live conversations (id → (caller, Conversation)):
    a conversation made or reopened here is registered under its vault id, so /api/ask can
    continue it, even one stored before the node restarted."""
    from node.api import Problem, _ndjson  # here, not at the top: node.api imports this module

    async def owner_body(request: Request, caller: str = Depends(signed_caller)) -> dict:
        if caller != node.keys.owner_did:
            raise Problem(403, "owner only", "only the node's owner may do this")
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            raise Problem(400, "bad request", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise Problem(400, "bad request", "the body must be a JSON object")
        return body

    def text_field(body: dict, name: str) -> str:
        value = body.get(name)
        if not isinstance(value, str) or not value.strip():
            raise Problem(400, "bad request", f'send a non-empty string "{name}"')
        return value.strip()

    async def on_queue(work: Callable[[], object]) -> object:
        """Run ``work`` as one model-queue job and return what it returns."""
        def job_work() -> Iterator[object]:
            yield work()

        job = submit(job_work)
        try:
            return await asyncio.to_thread(job.next_piece)
        except Problem:
            raise
        except Exception as error:  # the model or the indexes failed: say why, as a problem
            raise Problem(500, "failed", str(error) or type(error).__name__) from None
        finally:
            job.cancel()

    # --- who this node is -------------------------------------------------------------------

    @app.get("/api/owner/identity")
    async def identity(request: Request, body: dict = Depends(owner_body)) -> dict:
        base = str(request.base_url).rstrip("/")
        return {
            "owner_did": node.keys.owner_did,
            "node_did": node.keys.node_did,
            "agent_card": base + CARD_PATH,
            "api": base,
            "home": str(node.home.root),
        }

    # --- documents --------------------------------------------------------------------------

    def document_json(d) -> dict:
        return {"id": d.id, "path": d.path, "abs_path": d.abs_path, "size": d.size, "mtime": d.mtime, "chunks": d.chunk_count, "tags": list(d.tags)}

    @app.get("/api/owner/documents")
    async def documents(body: dict = Depends(owner_body)) -> list:
        return [document_json(d) for d in await asyncio.to_thread(node.vault.documents)]

    @app.post("/api/owner/documents/search")
    async def search(body: dict = Depends(owner_body)) -> list:
        query = text_field(body, "query")
        try:
            k = int(body.get("k", 10))
        except (TypeError, ValueError):
            raise Problem(400, "bad request", "k must be a number") from None
        if not 1 <= k <= 50:
            raise Problem(400, "bad request", "k must be between 1 and 50")
        found = await on_queue(lambda: node.retrieve(query, k))
        return [s.to_json() for s in found]

    @app.post("/api/owner/documents/chunk")
    async def chunk(body: dict = Depends(owner_body)) -> dict:
        """One chunk in full: what a numbered citation points at."""
        path = text_field(body, "path")
        try:
            seq = int(body.get("chunk"))
        except (TypeError, ValueError):
            raise Problem(400, "bad request", 'send {"path": "…", "chunk": N}') from None

        def find() -> str | None:
            for doc in node.vault.documents():
                if doc.path == path:
                    return node.vault.chunk_text(doc.id, seq)
            return None

        text = await asyncio.to_thread(find)
        if text is None:
            raise Problem(404, "no such chunk", f"no chunk {seq} of {path} in the vault (forgotten or changed since?)")
        return {"path": path, "chunk": seq, "text": text}

    @app.post("/api/owner/documents/add")
    async def add(body: dict = Depends(owner_body)) -> StreamingResponse:
        """Add a file or folder of the owner's own box. NDJSON: one "progress" event per file
        (done, total, path, outcome), then one "summary" with the skipped files' reasons."""
        path = text_field(body, "path")
        tags = body.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
            raise Problem(400, "bad request", '"tags" must be a list of non-empty strings')
        if not os.path.exists(absolute(path)):
            raise Problem(400, "bad request", f"{path}: no such file or folder on the node's machine")

        def work() -> Iterator[dict]:
            # node.add reports through a callback; a helper thread turns that into a stream. The
            # queue's worker waits here for it to end (even when the client leaves), so no other
            # model job runs beside it.
            events: queue.Queue = queue.Queue()
            outcome: dict = {}

            def run() -> None:
                try:
                    outcome["report"] = node.add(path, events.put, tags=tuple(t.strip() for t in tags))
                except BaseException as error:
                    outcome["error"] = error
                finally:
                    events.put(None)

            worker = threading.Thread(target=run, name="flurry-add", daemon=True)
            worker.start()
            try:
                while (p := events.get()) is not None:
                    yield {"type": "progress", "done": p.done, "total": p.total, "path": p.path, "outcome": p.outcome}
            finally:
                worker.join()
            if "error" in outcome:
                raise outcome["error"]
            report = outcome["report"]
            yield {
                "type": "summary",
                "added": len(report.added),
                "updated": len(report.updated),
                "unchanged": len(report.unchanged),
                "chunks": report.chunks,
                "skipped": [{"path": s.path, "reason": s.reason} for s in report.skipped],
            }

        return StreamingResponse(_ndjson(submit(work)), media_type="application/x-ndjson")

    @app.post("/api/owner/documents/forget")
    async def forget(body: dict = Depends(owner_body)) -> dict:
        path = text_field(body, "path")
        gone = await on_queue(lambda: node.forget(path))
        if not gone:
            raise Problem(404, "nothing there", f"nothing in the vault at {path}")
        return {"forgotten": [{"path": d.path, "chunks": d.chunk_count} for d in gone]}

    # --- conversations ----------------------------------------------------------------------

    def live(conv_id: str, turns: list[tuple[str, list[Source], str]]) -> Conversation:
        conversation = Conversation(
            _ModelOnFirstUse(node),
            lambda question, k: node.retrieve(question, k),
            record=lambda message: node.vault.append_message(conv_id, message),
            embed=lambda texts: node.embedder.embed(texts),   # on the model queue, like the answer
        )
        conversation.turns = turns
        return conversation

    def register(conv_id: str, conversation: Conversation) -> None:
        conversations[conv_id] = (node.keys.owner_did, conversation)
        conversations.move_to_end(conv_id)
        while len(conversations) > max_conversations:
            conversations.popitem(last=False)

    def find_conversation(conv_id: str) -> dict | None:
        return next((c for c in node.vault.conversations() if c["id"] == conv_id), None)

    @app.get("/api/owner/conversations")
    async def list_conversations(body: dict = Depends(owner_body)) -> list:
        return await asyncio.to_thread(node.vault.conversations)

    @app.post("/api/owner/conversations")
    async def new_conversation(body: dict = Depends(owner_body)) -> dict:
        title = str(body.get("title") or "chat").strip()[:80] or "chat"

        conv_id = await asyncio.to_thread(node.vault.create_conversation, title)
        register(conv_id, live(conv_id, []))
        return {"id": conv_id, "title": title}

    @app.post("/api/owner/conversations/open")
    async def open_conversation(body: dict = Depends(owner_body)) -> dict:
        """A stored conversation's messages; it becomes live again, so /api/ask continues it."""
        conv_id = text_field(body, "id")
        found = await asyncio.to_thread(find_conversation, conv_id)
        if found is None:
            raise Problem(404, "no such conversation", "that conversation is not in the vault")
        messages = await asyncio.to_thread(node.vault.messages, conv_id)
        if conversations.get(conv_id, ("",))[0] != node.keys.owner_did:
            register(conv_id, live(conv_id, _turns(messages)))
        return {**found, "messages": messages}

    @app.post("/api/owner/conversations/rename")
    async def rename_conversation(body: dict = Depends(owner_body)) -> dict:
        conv_id, title = text_field(body, "id"), text_field(body, "title")[:80]
        if not await asyncio.to_thread(node.vault.rename_conversation, conv_id, title):
            raise Problem(404, "no such conversation", "that conversation is not in the vault")
        return {"id": conv_id, "title": title}

    @app.post("/api/owner/conversations/delete")
    async def delete_conversation(body: dict = Depends(owner_body)) -> dict:
        conv_id = text_field(body, "id")
        conversations.pop(conv_id, None)
        if not await asyncio.to_thread(node.vault.delete_conversation, conv_id):
            raise Problem(404, "no such conversation", "that conversation is not in the vault")
        return {"deleted": True}


class _ModelOnFirstUse:
    """The node's chat model, loaded when the conversation first needs it: that is on the
    model queue, when it answers, so making or reopening a conversation never waits there."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def __getattr__(self, name: str):
        return getattr(self._node.chat_model, name)


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
                Source(n, s.get("path", ""), int(s.get("chunk", 0)), float(s.get("score", 0.0)), s.get("snippet", ""),
                       quote=str(s.get("quote", "")))
                for n, s in enumerate(message.get("sources", []), start=1)
            ]
            turns.append((question, sources, message.get("content", "")))
            question = None
    return turns
