"""A2A over HTTP: the signed agent card (public) and the JSON-RPC endpoint (signed).

The a2a-sdk speaks the protocol (JSON-RPC methods, tasks, streaming, cancel); node.a2a holds
the card and the executor that relays a queued answer as a task. Before a request reaches
the SDK, the one auth path has run: an unsigned or badly signed call gets 401, a send
without an "ask" grant 403 (or 429 past its quota), and a send the model queue cannot take
503 with Retry-After. All as problem+json, never as a task that fails later.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from typing import Annotated

from a2a.helpers import get_message_text
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.types import SendMessageRequest
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from google.protobuf.json_format import ParseDict, ParseError
from sse_starlette.sse import EventSourceResponse
from starlette.types import Message

from agent.contract_net import ContractRefused
from agent.grants import INFER
from agent.queue import Job, lane_for
from node import contracts_seller, contracts_wire, infer
from node.a2a import (
    RPC_PATH,
    AnswerExecutor,
    _CallContextBuilder,
    agent_card,
    signed_card,
)
from node.a2a_tasks import SealedTaskStore
from node.http.auth import CallerDep, authorize, is_owner
from node.http.problems import Problem
from node.http.state import NodeDep, QueueDep
from node.limits import UnsafeJSON, parse_json
from node.node import Node
from node.peering import answer_work
from node.peers import CARD_PATH

_SEND_METHODS = frozenset({"SendMessage", "SendStreamingMessage"})

card_router = APIRouter()  # public
rpc_router = APIRouter()  # signed (declared where it is included)


class A2AService:
    """The SDK's request handler and dispatcher for one app, and its card, signed once.
    Kept as ``app.state.a2a``: await ``aclose()`` at shutdown so no task is left running."""

    def __init__(self, node: Node, public_origins: Sequence[str]) -> None:
        self.handler = DefaultRequestHandler(
            agent_executor=AnswerExecutor(),
            task_store=SealedTaskStore(
                node.vault
            ),  # sealed in the vault, bounded per caller and in all
            agent_card=agent_card(node, public_origins),
        )
        self.dispatcher = JsonRpcDispatcher(self.handler, context_builder=_CallContextBuilder())
        self._node, self._origins = node, public_origins
        self._card: tuple[bytes, str] | None = None

    def card(self) -> tuple[bytes, str]:
        """The card's bytes and ETag. Signed once and then served as the same bytes: the Nostr
        proof and its BIP-340 signature differ every time they are made, and a card that
        changes on every fetch cannot be cached or compared. It names the node's public
        origins and nothing else: not the Host a request carries, or anyone could have it
        signed for their own URL and serve it as this node."""
        if self._card is None:
            body = json.dumps(
                signed_card(self._node, self._origins), separators=(",", ":")
            ).encode()
            self._card = (body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
        return self._card

    async def aclose(self) -> None:
        await self.handler.aclose()


def get_a2a(request: Request) -> A2AService:
    return request.app.state.a2a


A2ADep = Annotated[A2AService, Depends(get_a2a)]


# Public, and revalidated after an hour: the card changes only when the node restarts or its
# owner changes its public URLs, and the ETag makes revalidation cheap.
CARD_CACHE_CONTROL = "public, max-age=3600"


@card_router.get(CARD_PATH)
def card(request: Request, a2a: A2ADep) -> Response:
    body, etag = a2a.card()
    headers = {"ETag": etag, "Cache-Control": CARD_CACHE_CONTROL}
    if {etag, "*"} & _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@rpc_router.post(RPC_PATH)
@rpc_router.post(
    RPC_PATH + "/"
)  # clients that join "/" to the card's URL (the A2A TCK does) get no redirect to follow
async def rpc(
    request: Request, caller: CallerDep, node: NodeDep, queue: QueueDep, a2a: A2ADep
) -> Response:
    request.state.caller_did = caller
    method, params = _rpc_call(await request.body())
    job: Job | None = None
    if method in _SEND_METHODS and (wanted := infer.a2a_request(params)) is not None:
        # "flurry.operation": "infer": the model alone, metered (node.infer); refusals here.
        grant = await asyncio.to_thread(authorize, node, caller, INFER)
        work = await asyncio.to_thread(infer.prepare, node, caller, grant, wanted, channel="a2a")
        job = infer.submit(queue, work)
    elif method in _SEND_METHODS and (contract := _contract_text(params)) is not None:
        # "flurry.operation": "contract": a Contract Net message (node.contracts_wire); every
        # message is checked and taken into its conversation before anything is done with it.
        try:
            answering = await asyncio.to_thread(contracts_seller.receive, node, caller, contract)
        except ContractRefused as refused:
            raise Problem(
                422, "contract message refused", f"{refused.code}: {refused}", reason=refused.code
            ) from None
        job = queue.submit(answering, lane=lane_for(False))
    elif method in _SEND_METHODS:
        grant = await asyncio.to_thread(
            authorize, node, caller, "ask"
        )  # 403 / 429 here, before the SDK makes a task
        question = _question(params)
        if question is not None:
            job = queue.submit(
                answer_work(node, caller, grant, question), lane=lane_for(is_owner(node, caller))
            )  # 503 + Retry-After when full
    # Reading and writing tasks needs no grant: the store shows a caller only its own tasks.
    request.state.a2a_job = job
    response = await a2a.dispatcher.handle_requests(request)
    if job is not None:
        _bind_job(job, response)
    return response


def _bind_job(job: Job, response: Response) -> None:
    """Tie the queued job's life to the response the SDK gave."""
    if isinstance(response, EventSourceResponse):
        # The SDK lets a task run on when its streaming client goes away; a node with one
        # model has better use for it, so a disconnect cancels the job (the task ends CANCELED).
        async def on_disconnect(message: Message) -> None:
            job.cancel()

        response.client_close_handler_callable = on_disconnect
    elif isinstance(response, JSONResponse) and "error" in json.loads(bytes(response.body)):
        job.cancel()  # the SDK refused the request (version, params, task id): no executor will read it


def _rpc_call(body: bytes) -> tuple[str | None, dict]:
    """(method, params) of a JSON-RPC request, or (None, {}): the SDK answers malformed ones,
    except JSON nested too deep or with numbers that are not finite, which it cannot parse."""
    try:
        call = parse_json(body)
    except UnsafeJSON:
        raise  # 400 by node.http.problems: the SDK could not parse it either
    except ValueError:
        return None, {}
    if not isinstance(call, dict):
        return None, {}
    method, params = call.get("method"), call.get("params")
    return (method if isinstance(method, str) else None), (
        params if isinstance(params, dict) else {}
    )


def _contract_text(params: dict) -> str | None:
    try:
        return contracts_wire.contract_text(params)
    except ContractRefused as refused:
        raise Problem(
            422, "contract message refused", f"{refused.code}: {refused}", reason=refused.code
        ) from None


def _etags(value: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in value.split(",") if tag.strip()}


def _question(params: dict) -> str | None:
    """The text of a new question, or None (then the SDK refuses it, or the executor fails the task)."""
    try:
        request = ParseDict(params, SendMessageRequest(), ignore_unknown_fields=True)
    except (ParseError, TypeError, ValueError):
        return None
    if request.message.task_id:  # a follow-up to an earlier task: each question is a new task here
        return None
    return get_message_text(request.message, delimiter="\n").strip() or None
