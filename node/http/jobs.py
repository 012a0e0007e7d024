"""Model work from HTTP: jobs on the node's one model queue (agent.queue), and their streams.

llama.cpp and the embedded chromadb are not safe across threads, and the event loop must
never wait on them, so anything that touches the model or the indexes is a queue job. A
full queue raises QueueFull (503 + Retry-After by node.http.problems); a client that goes
away cancels its job.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

from agent.queue import Job, Lane, ModelQueue
from node.http.problems import Problem
from node.node import Node, PlannedCall

T = TypeVar("T")

PLANNED = "planned"  # an internal event: the model chose a tool call; never sent to the client


async def on_queue(queue: ModelQueue, work: Callable[[], T], *, lane: Lane) -> T:
    """Run ``work`` as one model-queue job in ``lane`` and return what it returns."""

    def job_work() -> Iterator[tuple[T]]:  # in a tuple: a None result is not the jobs' end
        yield (work(),)

    job = queue.submit(job_work, lane=lane)
    try:
        piece = await asyncio.to_thread(job.next_piece)
        assert piece is not None  # job_work yields once, or next_piece raises what it raised
        return piece[0]
    except Problem:
        raise
    except Exception as error:  # the model or the indexes failed: say why, as a problem
        raise Problem(500, "failed", str(error) or type(error).__name__) from None
    finally:
        job.cancel()


def in_background(queue: ModelQueue, call: Callable[[], T]) -> T:
    """``call`` as a background job on the model queue; what it returned (or raised)."""
    result: list[T] = []

    def work() -> Iterator[object]:
        result.append(call())
        return iter(())

    job = queue.submit(work, background=True)
    for _ in job:  # re-raises what the call raised, or JobCancelled when the node stops
        pass
    return result[0]


async def pieces(job: Job) -> AsyncIterator:
    """The job's pieces as they come; cancels the job when the reader goes away."""
    try:
        while True:
            piece = await asyncio.to_thread(job.next_piece)
            if piece is None:
                return
            yield piece
    finally:
        job.cancel()  # a no-op once the job has finished; stops it when the client disconnected


async def ndjson(
    job: Job, follow_up: Callable[[PlannedCall], AsyncIterator[dict]] | None = None
) -> AsyncIterator[bytes]:
    """The job's events as NDJSON, after a "queued" event when other work goes first."""
    ahead = job.position - 1  # position 1 is next in line
    if ahead > 0:
        yield (json.dumps({"type": "queued", "ahead": ahead}) + "\n").encode()
    try:
        async for event in pieces(job):
            if event["type"] == PLANNED and follow_up is not None:
                async for more in follow_up(event["planned"]):
                    yield (json.dumps(more) + "\n").encode()
                continue
            yield (json.dumps(event) + "\n").encode()
    except Exception as error:  # the stream has started: report in-band rather than cut it
        yield (json.dumps({"type": "error", "detail": str(error)}) + "\n").encode()


async def tool_turn(node: Node, planned: PlannedCall, requester: str) -> AsyncIterator[dict]:
    """The policy and the tool, off the model queue. A call the policy says to ask about is
    announced in the stream and waits for the owner's decision through /api/owner/approvals."""
    loop = asyncio.get_running_loop()
    announced: asyncio.Queue[dict] = asyncio.Queue()
    waiting = []

    def ask_owner(call) -> bool:  # on the worker thread
        pending = node.approvals.open(call, planned.skill, requester)
        waiting.append(pending)
        event = {
            "type": "approval",
            "id": pending.id,
            "tool": call.tool,
            "skill": planned.skill,
            "arguments": call.arguments,
        }
        loop.call_soon_threadsafe(announced.put_nowait, event)
        return node.approvals.wait(pending)

    turn_task = asyncio.ensure_future(asyncio.to_thread(node.run_planned, planned, ask_owner))
    try:
        while True:
            next_event = asyncio.ensure_future(announced.get())
            await asyncio.wait({turn_task, next_event}, return_when=asyncio.FIRST_COMPLETED)
            if next_event.done():
                yield next_event.result()
                continue
            next_event.cancel()
            if announced.empty():
                break
        turn = turn_task.result()
    finally:
        for pending in waiting:
            node.approvals.withdraw(
                pending
            )  # a no-op once decided; frees the thread if the client left
    call, decision = planned.call, turn.decision  # turn.call is the planned call
    assert decision is not None  # decide_and_run always decides a planned call
    text = turn.result if turn.ran else f"(not run: {decision.reason})"
    yield {
        "type": "tool",
        "tool": call.tool,
        "skill": planned.skill,
        "arguments": call.arguments,
        "ran": turn.ran,
        "reason": decision.reason,
        **({"result": turn.result} if turn.ran else {}),
    }
    yield {"type": "sources", "sources": []}
    yield {"type": "token", "text": text}
    yield {"type": "done", "answer": text}
