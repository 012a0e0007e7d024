"""A2A, the peer side of the API: other agents ask this node questions as A2A v1.0 tasks.

The a2a-sdk speaks the protocol (JSON-RPC methods, tasks, streaming, cancel); this module
adds what it cannot know. Before a request reaches the SDK, the one auth path of the API
(`signed_caller`, `authorize`, `submit` from node.api) has run: an unsigned or badly signed
call gets 401, a send without an "ask" grant 403 (or 429 past its quota), and a send the
model queue cannot take 503 with Retry-After. All as problem+json, never as a task that
fails later. The answer is then a job on the same model queue /api/ask uses, whose pieces
the executor relays as the task's "answer" artifact.

Tasks are scoped to the caller's DID (a peer sees and cancels only its own) and kept sealed
in the vault with a bound (node.a2a_tasks), so a finished answer can still be read after the
node restarts.
The agent card at /.well-known/agent-card.json is public and signed with the node's key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from a2a.auth.user import User
from a2a.helpers import get_message_text, new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import DefaultServerCallContextBuilder
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.server.tasks import TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityScheme,
    SendMessageRequest,
)
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from sse_starlette.sse import EventSourceResponse
from starlette.types import Message

from agent.grants import Grant
from agent.queue import Job, JobCancelled, Work
from identity.did_key import verification_method_id
from identity.jws import sign_json
from node.a2a_tasks import Caller, SealedTaskStore
from node.limits import UnsafeJSON, parse_json
from node.node import Node
from node.peering import answer_work
from node.peers import CARD_PATH
from node.nostr_peers import card_extension

DEFAULT_ORIGIN = "http://127.0.0.1:8765"  # `flurry serve`'s own default address
# Public, and revalidated after an hour: the card changes only when the node restarts or its
# owner changes its public URLs, and the ETag makes revalidation cheap.
CARD_CACHE_CONTROL = "public, max-age=3600"
RPC_PATH = "/a2a"
PROTOCOL_VERSION = "1.0"
ASK_SKILL = "ask"
_SEND_METHODS = frozenset({"SendMessage", "SendStreamingMessage"})
_JOB = "flurry.job"  # where the route hands its queued job to the executor, in the SDK's call-context state
_log = logging.getLogger(__name__)

try:
    _VERSION = version("flurry-node")
except PackageNotFoundError:  # running from a checkout that was never installed
    _VERSION = "0.0.0"


# --- the agent card -------------------------------------------------------------------------


def short_did(did: str) -> str:
    """``did:key:z6MkhaXg…2doK``: enough to tell nodes apart in a list."""
    return did if len(did) <= 24 else f"{did[:16]}…{did[-4:]}"


def agent_card(node: Node, origins: Sequence[str]) -> AgentCard:
    """The node's A2A card, its JSON-RPC endpoint under each of ``origins`` (scheme://host[:port])."""
    # Optional fields are left unset rather than empty: A2A §8.4.1 signs the card without
    # default values, and an empty value would be dropped by a verifier that cleans first.
    return AgentCard(
        name=f"flurry node of {short_did(node.keys.owner_did)}",
        description=(
            "A personal AI node: a local model that answers from its owner's own notes. "
            "It answers the agents its owner granted, from the notes the grant covers; "
            "the answer leaves the node, the notes do not."
        ),
        version=_VERSION,
        supported_interfaces=[
            AgentInterface(url=f"{origin}{RPC_PATH}", protocol_binding="JSONRPC", protocol_version=PROTOCOL_VERSION)
            for origin in origins
        ],
        capabilities=AgentCapabilities(streaming=True, extensions=[AgentExtension(**card_extension(node.keys))]),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(
                id=ASK_SKILL,
                name="Ask",
                description="answers questions from its owner's data, within the grant you hold",
                tags=["question-answering", "personal-data"],
            )
        ],
        security_schemes={
            "httpMessageSignature": SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="Signature",
                    description=(
                        "RFC 9421 HTTP Message Signatures, Ed25519, keyid = your did:key DID URL "
                        "(did:key:z6Mk…#z6Mk…); cover @method, @target-uri, content-digest and "
                        "content-type, with created, expires (at most 300 s later) and a nonce. "
                        "Your DID is who you are here: the node's owner grants DIDs what they may ask."
                    ),
                )
            )
        },
    )


def signed_card(node: Node, origins: Sequence[str]) -> dict:
    """The card as JSON, with ``signatures``: one detached JWS by the node's key (its kid, the node's DID URL)."""
    card = MessageToDict(agent_card(node, origins))
    card["signatures"] = [sign_json(card, node.keys.node_key, kid=verification_method_id(node.keys.node_did))]
    return card


# --- the executor: a queued model job, relayed as a task ---------------------------------


class AnswerExecutor(AgentExecutor):
    """Relays the job that the route queued for a task as its "answer" artifact.

    The job exists before the SDK sees the request (so refusals are HTTP errors, not failed
    tasks); the executor only streams it, and stops it when the task is cancelled.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._cancelled: set[str] = set()  # tasks whose CANCELED state cancel() has written

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id = context.task_id or ""
        if context.current_task is None:  # a new task: publish it before anything else
            await event_queue.enqueue_event(new_task_from_user_message(context.message))
        updater = TaskUpdater(event_queue, task_id, context.context_id or "")
        job: Job | None = context.call_context.state.pop(_JOB, None) if context.call_context else None
        if job is None:
            await updater.failed(updater.new_agent_message([new_text_part(
                "send one question as a text part, in a new task (this node does not continue tasks)"
            )]))
            return
        self._jobs[task_id] = job
        try:
            position = job.position  # as /api/ask reports it: > 0 while other work goes first
            await updater.start_work(
                updater.new_agent_message([new_text_part(f"queued at position {position}")]) if position > 0 else None
            )
            artifact_id, pieces = str(uuid.uuid4()), []
            while (piece := await asyncio.to_thread(job.next_piece)) is not None:
                await updater.add_artifact([new_text_part(piece)], artifact_id=artifact_id, name="answer", append=bool(pieces))
                pieces.append(piece)
            # The stored task keeps the answer as one part, however many pieces streamed: clients
            # that join parts with newlines (the SDK's get_artifact_text does) read it as written.
            await updater.add_artifact(
                [new_text_part("".join(pieces).strip())], artifact_id=artifact_id, name="answer", append=False, last_chunk=True
            )
            await updater.complete()
        except JobCancelled:
            if task_id not in self._cancelled:  # the streaming client went away (see mount_a2a)
                await updater.cancel(updater.new_agent_message([new_text_part("the client disconnected")]))
        except Exception as error:  # the model or the vault: the details stay in the node's log (stderr)
            _log.exception("a2a task %s for %s: the answer failed", task_id, context.call_context.user.user_name)
            await updater.failed(updater.new_agent_message([new_text_part(
                f"the node could not answer ({type(error).__name__}); its owner can see why in the node's log"
            )]))
        finally:
            self._jobs.pop(task_id, None)
            self._cancelled.discard(task_id)
            job.cancel()  # a no-op once finished; stops the model when the SDK cancelled us (CancelTask, shutdown)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id = context.task_id or ""
        if (job := self._jobs.get(task_id)) is not None:
            self._cancelled.add(task_id)
            job.cancel()  # the model stops at its next piece, or never starts if the job still waits
        await TaskUpdater(event_queue, task_id, context.context_id or "").cancel()


class _CallContextBuilder(DefaultServerCallContextBuilder):
    # The default build() is kept: it copies the headers the SDK's A2A-Version check reads.
    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        context.state[_JOB] = request.state.a2a_job
        return context

    def build_user(self, request: Request) -> User:
        return Caller(request.state.caller_did)


# --- wiring ------------------------------------------------------------------------------------


def mount_a2a(
    app: FastAPI,
    node: Node,
    *,
    signed_caller: Callable,
    authorize: Callable[[str, str], Grant],
    submit: Callable[[Work], Job],
    public_origins: Sequence[str] = (DEFAULT_ORIGIN,),
) -> DefaultRequestHandler:
    """Add GET /.well-known/agent-card.json and POST /a2a to ``app``.

    The card names the node's ``public_origins`` and nothing else: not the Host a request for
    it carries, or anyone could have it signed for their own URL and serve it as this node.

    Returns the SDK's request handler, also kept as ``app.state.a2a``: await its ``aclose()``
    at shutdown so no task is left running.
    """
    handler = DefaultRequestHandler(
        agent_executor=AnswerExecutor(),
        task_store=SealedTaskStore(node.vault),  # sealed in the vault, bounded per caller and in all
        agent_card=agent_card(node, public_origins),
    )
    dispatcher = JsonRpcDispatcher(handler, context_builder=_CallContextBuilder())
    app.state.a2a = handler

    served: list[tuple[bytes, str]] = []  # the card's bytes and ETag, made once

    @app.get(CARD_PATH)
    def card(request: Request) -> Response:
        # Signed once and then served as the same bytes: the Nostr proof and its BIP-340
        # signature differ every time they are made, and a card that changes on every fetch
        # cannot be cached or compared.
        if not served:
            body = json.dumps(signed_card(node, public_origins), separators=(",", ":")).encode()
            served.append((body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'))
        body, etag = served[0]
        headers = {"ETag": etag, "Cache-Control": CARD_CACHE_CONTROL}
        if {etag, "*"} & _etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    @app.post(RPC_PATH)
    @app.post(RPC_PATH + "/")  # clients that join "/" to the card's URL (the A2A TCK does) get no redirect to follow
    async def rpc(request: Request, caller: str = Depends(signed_caller)) -> Response:
        request.state.caller_did = caller
        method, params = _rpc_call(await request.body())
        job: Job | None = None
        if method in _SEND_METHODS:
            grant = await asyncio.to_thread(authorize, caller, "ask")  # 403 / 429 here, before the SDK makes a task
            question = _question(params)
            if question is not None:
                job = submit(answer_work(node, caller, grant, question))  # 503 + Retry-After when full
        # Reading and writing tasks needs no grant: the store shows a caller only its own tasks.
        request.state.a2a_job = job
        response = await dispatcher.handle_requests(request)
        if job is not None:
            _bind_job(job, response)
        return response

    return handler


def _bind_job(job: Job, response: Response) -> None:
    """Tie the queued job's life to the response the SDK gave."""
    if isinstance(response, EventSourceResponse):
        # The SDK lets a task run on when its streaming client goes away; a node with one
        # model has better use for it, so a disconnect cancels the job (the task ends CANCELED).
        async def on_disconnect(message: Message) -> None:
            job.cancel()

        response.client_close_handler_callable = on_disconnect
    elif isinstance(response, JSONResponse) and "error" in json.loads(response.body):
        job.cancel()  # the SDK refused the request (version, params, task id): no executor will read it


def _rpc_call(body: bytes) -> tuple[str | None, dict]:
    """(method, params) of a JSON-RPC request, or (None, {}): the SDK answers malformed ones,
    except JSON nested too deep or with numbers that are not finite, which it cannot parse."""
    from node.api import Problem  # here, not at the top: node.api imports this module

    try:
        call = parse_json(body)
    except UnsafeJSON as error:
        raise Problem(400, "bad request", str(error)) from None
    except ValueError:
        return None, {}
    if not isinstance(call, dict):
        return None, {}
    method, params = call.get("method"), call.get("params")
    return (method if isinstance(method, str) else None), (params if isinstance(params, dict) else {})


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
