"""The owner's documents over the signed API: list, search, read a chunk, add (streaming
progress) and forget. Owner only (declared where the router is included).

The terminal app (tui/) is a client of the node like any peer, so what it shows the owner
comes from here. Adding embeds, searching embeds and forgetting edits the indexes, so those
run as jobs on the node's one model queue (node.http.jobs).
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from node.http.calls import BodyDep, text_field
from node.http.jobs import ndjson, on_queue
from node.http.problems import Problem
from node.http.state import NodeDep, QueueDep
from store.ingest import absolute

router = APIRouter()


def document_json(d) -> dict:
    return {
        "id": d.id,
        "path": d.path,
        "abs_path": d.abs_path,
        "size": d.size,
        "mtime": d.mtime,
        "chunks": d.chunk_count,
        "tags": list(d.tags),
    }


@router.get("/api/owner/documents")
async def documents(body: BodyDep, node: NodeDep) -> list:
    return [document_json(d) for d in await asyncio.to_thread(node.vault.documents)]


@router.post("/api/owner/documents/search")
async def search(body: BodyDep, node: NodeDep, jobs: QueueDep) -> list:
    query = text_field(body, "query")
    try:
        k = int(body.get("k", 10))
    except (TypeError, ValueError):
        raise Problem(400, "bad request", "k must be a number") from None
    if not 1 <= k <= 50:
        raise Problem(400, "bad request", "k must be between 1 and 50")
    found = await on_queue(jobs, lambda: node.retrieve(query, k), lane="owner")
    return [s.to_json() for s in found]


@router.post("/api/owner/documents/chunk")
async def chunk(body: BodyDep, node: NodeDep) -> dict:
    """One chunk in full: what a numbered citation points at."""
    path = text_field(body, "path")
    try:
        seq = int(body.get("chunk", ""))  # missing: "" is refused like any other non-number
    except (TypeError, ValueError):
        raise Problem(400, "bad request", 'send {"path": "…", "chunk": N}') from None

    def find() -> str | None:
        for doc in node.vault.documents():
            if doc.path == path:
                return node.vault.chunk_text(doc.id, seq)
        return None

    text = await asyncio.to_thread(find)
    if text is None:
        raise Problem(
            404,
            "no such chunk",
            f"no chunk {seq} of {path} in the vault (forgotten or changed since?)",
        )
    return {"path": path, "chunk": seq, "text": text}


@router.post("/api/owner/documents/add")
async def add(body: BodyDep, node: NodeDep, jobs: QueueDep) -> StreamingResponse:
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
                yield {
                    "type": "progress",
                    "done": p.done,
                    "total": p.total,
                    "path": p.path,
                    "outcome": p.outcome,
                }
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

    return StreamingResponse(
        ndjson(jobs.submit(work, lane="owner")), media_type="application/x-ndjson"
    )


@router.post("/api/owner/documents/forget")
async def forget(body: BodyDep, node: NodeDep, jobs: QueueDep) -> dict:
    path = text_field(body, "path")
    gone = await on_queue(jobs, lambda: node.forget(path), lane="owner")
    if not gone:
        raise Problem(404, "nothing there", f"nothing in the vault at {path}")
    return {"forgotten": [{"path": d.path, "chunks": d.chunk_count} for d in gone]}
