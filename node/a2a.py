"""A2A, the peer side of the API: other agents ask this node questions as A2A v1.0 tasks.

The a2a-sdk speaks the protocol (JSON-RPC methods, tasks, streaming, cancel); this module
adds what it cannot know. Before a request reaches the SDK, the one auth path of the API
has run (node.http.a2a, the routes): an unsigned or badly signed call gets 401, a send without an "ask" grant 403 (or 429 past its quota), and a send the
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
import logging
import uuid
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from a2a.auth.user import User
from a2a.helpers import new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.routes import DefaultServerCallContextBuilder
from a2a.server.tasks import TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityScheme,
)
from fastapi import Request
from google.protobuf.json_format import MessageToDict

from agent.queue import Job, JobCancelled
from identity.did_key import verification_method_id
from identity.jws import sign_json
from node.a2a_tasks import Caller
from node.contracts_wire import card_extension as contract_extension
from node.infer import answer_metadata
from node.node import Node
from node.nostr_peers import card_extension
from node.peer_owner import card_extension as owner_extension
from node.peering import carried_receipt_metadata
from node.rotation import card_extension as rotation_extension

AGENT_MADE_METADATA = "flurry.agent_made"  # on every answer artifact: the node's agent wrote it
DEFAULT_ORIGIN = "http://127.0.0.1:8765"  # `flurry serve`'s own default address
RPC_PATH = "/a2a"
PROTOCOL_VERSION = "1.0"
ASK_SKILL = "ask"
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
            AgentInterface(
                url=f"{origin}{RPC_PATH}",
                protocol_binding="JSONRPC",
                protocol_version=PROTOCOL_VERSION,
            )
            for origin in origins
        ],
        capabilities=AgentCapabilities(
            streaming=True,
            extensions=[
                AgentExtension(**extension)
                for extension in (
                    card_extension(node.keys),
                    rotation_extension(node.keys),
                    owner_extension(node.keys),
                    contract_extension(),
                )
                if extension is not None
            ],
        ),
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
    card["signatures"] = [
        sign_json(card, node.keys.node_key, kid=verification_method_id(node.keys.node_did))
    ]
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
            assert context.message is not None  # execute runs for a sent message, which is there
            await event_queue.enqueue_event(new_task_from_user_message(context.message))
        updater = TaskUpdater(event_queue, task_id, context.context_id or "")
        job: Job | None = (
            context.call_context.state.pop(_JOB, None) if context.call_context else None
        )
        if job is None:
            await updater.failed(
                updater.new_agent_message(
                    [
                        new_text_part(
                            "send one question as a text part, in a new task (this node does not continue tasks)"
                        )
                    ]
                )
            )
            return
        self._jobs[task_id] = job
        try:
            position = job.position  # as /api/ask reports it: > 0 while other work goes first
            await updater.start_work(
                updater.new_agent_message([new_text_part(f"queued at position {position}")])
                if position > 0
                else None
            )
            artifact_id = str(uuid.uuid4())
            pieces: list[str] = []
            while (piece := await asyncio.to_thread(job.next_piece)) is not None:
                await updater.add_artifact(
                    [new_text_part(piece)],
                    artifact_id=artifact_id,
                    name="answer",
                    append=bool(pieces),
                )
                pieces.append(piece)
            # The stored task keeps the answer as one part, however many pieces streamed: clients
            # that join parts with newlines (the SDK's get_artifact_text does) read it as written.
            await updater.add_artifact(
                [new_text_part("".join(pieces).strip())],
                artifact_id=artifact_id,
                name="answer",
                append=False,
                last_chunk=True,
                # An infer job's usage and receipt (node.infer), or a data answer's receipt;
                # and always that an agent wrote it (agent.incoming: every channel says so).
                metadata={
                    **(answer_metadata(job) or carried_receipt_metadata(job) or {}),
                    AGENT_MADE_METADATA: True,
                },
            )
            await updater.complete()
        except JobCancelled:
            if task_id not in self._cancelled:  # the streaming client went away (see node.http.a2a)
                await updater.cancel(
                    updater.new_agent_message([new_text_part("the client disconnected")])
                )
        except (
            Exception
        ) as error:  # the model or the vault: the details stay in the node's log (stderr)
            _log.exception(
                "a2a task %s for %s: the answer failed",
                task_id,
                context.call_context.user.user_name,
            )
            await updater.failed(
                updater.new_agent_message(
                    [
                        new_text_part(
                            f"the node could not answer ({type(error).__name__}); its owner can see why in the node's log"
                        )
                    ]
                )
            )
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
