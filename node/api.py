"""The node's HTTP API: one FastAPI app for the owner's own clients, other agents and local apps.

Every request under /api and /a2a is signed (RFC 9421, identity.http_signatures): the
signature names the caller's DID, and the grants decide what that DID may do; the owner's
DID holds every grant. The discovery documents under /.well-known are public. The
OpenAI-compatible /v1 endpoints take owner-made bearer tokens instead, because the apps
that speak that API cannot sign.

Model work goes through one bounded queue (agent.queue): a full queue answers 503 with
Retry-After, and a client that disconnects cancels its job.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.answer import Conversation, answer_events, with_quotes_text
from agent.grants import (
    Grant,
    InvalidGrant,
    InvalidToken,
    NotGranted,
    QuotaExceeded,
    TokenError,
)
from agent.queue import Job, ModelQueue, QueueFull
from identity.did_key import InvalidDID, did_document
from identity.http_signatures import (
    ReplayCache,
    SignatureRejected,
    target_uri_from_scope,
    verify_request,
)
from node.a2a import DEFAULT_ORIGIN, mount_a2a
from node.limits import (
    KnownCallers,
    Limits,
    StrangerGate,
    claimed_did,
    parse_json,
    retry_after,
    source_of,
)
from node.node import Node, PlannedCall
from node.nostr_owner import mount_nostr
from node.nostr_peers import is_nostr_http_auth, nostr_http_caller
from node.owner import LocalOwner, NotFound, OwnerError
from node.owner_data_api import mount_owner_data
from node.pod import mount_pod
from skills.host import SkillError
from skills.registry import SkillInstallError

MAX_CONVERSATIONS = 64
RAW_MODEL = "flurry"        # /v1: the model alone, for the owner's apps (no data)
DATA_MODEL = "flurry-data"  # /v1: the last user message answered from the owner's data, grounded
PLANNED = "planned"  # an internal event: the model chose a tool call; never sent to the client
_log = logging.getLogger(__name__)


class Problem(Exception):
    """An RFC 9457 problem: the client's fault or a refusal, never a crash."""

    def __init__(self, status: int, title: str, detail: str, *, reason: str | None = None, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.title, self.detail, self.reason = status, title, detail, reason
        self.headers = headers or {}


def _problem_response(problem: Problem) -> JSONResponse:
    body = {"type": "about:blank", "title": problem.title, "status": problem.status, "detail": problem.detail}
    if problem.reason:
        body["reason"] = problem.reason
    return JSONResponse(body, status_code=problem.status, headers=problem.headers, media_type="application/problem+json")


def create_app(
    node: Node,
    *,
    max_waiting: int = 8,
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
    allowed_hosts: Collection[str] | None = None,
    public_origins: Sequence[str] = (DEFAULT_ORIGIN,),
    limits: Limits = Limits(),
) -> FastAPI:
    """The app for ``node``. ``allowed_hosts`` are the authorities this node answers to
    ("127.0.0.1:8765"): a request signed for another server is refused even if its nonce is
    new here. None accepts any Host (tests, or a node behind a proxy with many names).
    ``public_origins`` are the URLs ("https://node.example") its signed agent card names,
    whatever Host a request for the card carries. Serve it with node.limits.server_config,
    which puts the header and body limits in front of it."""
    known = KnownCallers(node)  # owner / granted or pinned / stranger: separate budgets
    strangers = StrangerGate(limits.stranger_rate, limits.stranger_burst, checks=limits.stranger_checks)
    replay_cache = ReplayCache(classify=known.replay_tier, stranger_entries=limits.stranger_nonces)
    model_queue = ModelQueue(max_waiting=max_waiting)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if on_start:
            on_start()
        await asyncio.to_thread(app.state.nostr.start)  # connects only to relays the owner configured
        yield
        await asyncio.to_thread(app.state.nostr.stop)
        await app.state.a2a.aclose()  # stops the peers' running tasks and their model jobs
        model_queue.close()
        if on_stop:
            on_stop()

    app = FastAPI(title="flurry node", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.node = node
    app.state.model_queue = model_queue
    app.state.replay_cache = replay_cache

    @app.exception_handler(Problem)
    async def on_problem(request: Request, problem: Problem) -> JSONResponse:
        if _is_openai_path(request):
            return _openai_error_response(problem)
        return _problem_response(problem)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, error: StarletteHTTPException) -> Response:
        # Unknown paths and methods under /v1 answer as OpenAI does too; elsewhere, FastAPI's own.
        if _is_openai_path(request):
            return _openai_error_response(Problem(error.status_code, "error", str(error.detail), headers=error.headers))
        return await http_exception_handler(request, error)

    # --- who is calling -------------------------------------------------------------------

    async def signed_caller(request: Request) -> str:
        body = await request.body()
        # Strangers (by the DID they claim) draw on a budget per source address, and only a few of
        # their signatures are checked at once, so they cannot crowd out the owner and its peers.
        stranger = known.tier(claimed_did(request.headers)) == "stranger"
        if stranger:
            if (wait := strangers.take(source_of(request.scope))) is not None:
                raise Problem(429, "too many requests", "too many requests from strangers at this address",
                              headers={"Retry-After": retry_after(wait)})
            if not strangers.begin_check():
                raise Problem(503, "busy", "too many strangers' requests at once", headers={"Retry-After": "1"})

        def check() -> str:
            # request.headers, not a dict of it: a repeated header must stay visible to the check.
            target = target_uri_from_scope(request.scope, allowed_hosts=allowed_hosts)
            if is_nostr_http_auth(request.headers):  # NIP-98, for peers whose Nostr key is pinned
                return nostr_http_caller(node.vault, replay_cache, request.method, target, request.headers, body)
            return verify_request(request.method, target, request.headers, body, replay_cache=replay_cache)

        try:
            # Parsing structured fields and checking the signature: off the event loop.
            return await asyncio.to_thread(check)
        except SignatureRejected as rejected:
            if not stranger:
                strangers.take(source_of(request.scope))  # a false claim to be someone known costs a token too
            raise Problem(401, "signature rejected", str(rejected), reason=rejected.reason) from None
        finally:
            if stranger:
                strangers.end_check()

    app.state.signed_caller = signed_caller   # benchmarks swap it out to time the endpoint unsigned

    def authorize(did: str, operation: str) -> Grant:
        try:
            return node.grants.authorize(did, operation, owner_did=node.keys.owner_did)
        except NotGranted as e:
            raise Problem(403, "not granted", str(e)) from None
        except QuotaExceeded as e:
            # Retry-After is whole seconds (RFC 9110 delay-seconds)
            raise Problem(429, "quota exceeded", str(e), headers={"Retry-After": str(math.ceil(e.retry_after))}) from None

    def owner_only(did: str) -> None:
        if did != node.keys.owner_did:
            raise Problem(403, "owner only", "only the node's owner may do this")

    def bearer_token(request: Request) -> set[str]:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Problem(401, "token required", "send an owner-made token: Authorization: Bearer flurry_…")
        try:
            return set(node.tokens.verify(token.strip()).allow)
        except InvalidToken as e:
            raise Problem(401, "token rejected", str(e)) from None

    def submit(work) -> Job:
        try:
            return model_queue.submit(work)
        except QueueFull as full:
            raise Problem(503, "busy", str(full), headers={"Retry-After": str(full.retry_after)}) from None

    # --- discovery (public) ---------------------------------------------------------------

    @app.get("/.well-known/did.json")
    def node_did_document() -> JSONResponse:
        # alsoKnownAs (DID Core §5.1.3: a set of URIs) names the node's Nostr key as a NIP-21 URI.
        document = {**did_document(node.keys.node_did), "alsoKnownAs": [node.keys.nostr_key.uri]}
        return JSONResponse(document, media_type="application/did+json")

    @app.get("/healthz")
    def health() -> dict:
        return {"ok": True, "node_did": node.keys.node_did, "queue": model_queue.waiting}

    # --- other agents: the signed agent card and A2A tasks (node.a2a) ---------------------

    mount_a2a(app, node, signed_caller=signed_caller, authorize=authorize, submit=submit, public_origins=public_origins)
    mount_pod(app, node, signed_caller=signed_caller, owner_only=owner_only, model_queue=model_queue,  # /pod/, /profile/card
              nostr_pubkey=lambda: node.keys.nostr_public_key_hex)

    # --- asking the node ------------------------------------------------------------------

    # Conversations continued over the API, per caller; the oldest are forgotten first
    # (they stay sealed in the vault, only the model's working copy goes).
    conversations: OrderedDict[str, tuple[str, Conversation]] = OrderedDict()

    @app.post("/api/ask")
    async def ask(request: Request, caller: str = Depends(signed_caller)) -> StreamingResponse:
        try:
            body = parse_json(await request.body() or b"{}")
            question = str(body["question"]).strip()
            k = int(body.get("k", 3))
            conversation_id = body.get("conversation")
            tools = body.get("tools", False)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Problem(400, "bad request", 'send JSON {"question": "…", "k": 3}') from None
        if not question or not 1 <= k <= 20 or not isinstance(tools, bool):
            raise Problem(400, "bad request", "the question is empty, k is not between 1 and 20, or tools is not true/false")
        if tools:
            owner_only(caller)  # skills act for the owner; peers get answers, never tool calls
        # The grant is checked (and its quota used) here; its tags are read again at every turn.
        await asyncio.to_thread(authorize, caller, "ask")  # a sealed quota write: off the event loop
        if conversation_id is not None and conversations.get(conversation_id, ("",))[0] != caller:
            raise Problem(404, "no such conversation", "that conversation is unknown or was forgotten; start a new one")

        is_owner = caller == node.keys.owner_did

        def work() -> Iterator[dict]:
            nonlocal conversation_id
            if conversation_id is None:
                conversation_id = uuid.uuid4().hex
                # A peer's conversation reads its grant at every turn (node.peer_tags), not the
                # grant it was opened under: narrowing a grant reaches open conversations.
                conversations[conversation_id] = (caller, node.conversation(title=question[:80], peer=None if is_owner else caller))
                while len(conversations) > MAX_CONVERSATIONS:
                    conversations.popitem(last=False)
            conversation = conversations[conversation_id][1]
            conversation.k = k
            yield {"type": "conversation", "id": conversation_id}
            planned = node.plan_tool_call(question) if tools else None
            if planned is not None:
                yield {"type": PLANNED, "planned": planned}  # the rest runs off the model queue
                return
            answer = conversation.ask(question)
            if is_owner:  # the owner sees the evidence first, then the verified sentences
                yield {"type": "sources", "sources": [s.to_json() for s in answer.sources]}
            if is_owner:   # the model's unchecked words too, for the owner's screen to show dimmed
                for kind, text in answer.events():
                    yield {"type": "token" if kind == "text" else "draft", "text": text}
            else:
                for piece in answer:   # only sentences the verifier passed: safe for peers as they come
                    yield {"type": "token", "text": piece}
            yield from answer_events(answer, owner=is_owner)

        return StreamingResponse(
            _ndjson(submit(work), follow_up=lambda planned: _tool_turn(node, planned, caller)),
            media_type="application/x-ndjson",
        )

    mount_owner_data(app, node, signed_caller=signed_caller, submit=submit, conversations=conversations, max_conversations=MAX_CONVERSATIONS)

    @app.get("/api/whoami")
    async def whoami(caller: str = Depends(signed_caller)) -> dict:
        """The DID the node sees: lets a peer check its signing set-up without any grant."""
        return {"did": caller, "owner": caller == node.keys.owner_did}

    @app.get("/api/status")
    async def status(caller: str = Depends(signed_caller)) -> dict:
        owner_only(caller)
        return {**await asyncio.to_thread(node.status), "queue": {"waiting": model_queue.waiting, "max_waiting": model_queue.max_waiting}}

    # --- the owner's management, for the command line while this server holds the home --

    owner = LocalOwner(node)

    async def owner_body(request: Request, caller: str = Depends(signed_caller)) -> dict:
        owner_only(caller)
        raw = await request.body()
        if not raw:
            return {}
        try:
            body = parse_json(raw)
        except ValueError:
            raise Problem(400, "bad request", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise Problem(400, "bad request", "the body must be a JSON object")
        return body

    def required(body: dict, key: str):
        if key not in body:
            raise Problem(400, "bad request", f"missing field: {key}")
        return body[key]

    async def owner_call(call, *args):
        try:
            if inspect.iscoroutinefunction(call):
                return await call(*args)
            return await asyncio.to_thread(call, *args)  # vault reads and writes: off the event loop
        except NotFound as e:
            raise Problem(404, "not found", str(e)) from None
        except (OwnerError, InvalidGrant, TokenError, InvalidDID, SkillInstallError, SkillError) as e:
            raise Problem(400, "refused", str(e)) from None
        except (KeyError, TypeError, ValueError) as e:
            raise Problem(400, "bad request", f"missing or malformed field: {e}") from None

    @app.get("/api/owner/grants")
    async def owner_grants(body: dict = Depends(owner_body)) -> list:
        return await owner_call(owner.list_grants)

    @app.put("/api/owner/grants")
    async def owner_add_grant(body: dict = Depends(owner_body)) -> dict:
        await owner_call(owner.add_grant, body)
        return {"ok": True}

    @app.post("/api/owner/grants/remove")
    async def owner_remove_grant(body: dict = Depends(owner_body)) -> dict:
        return {"removed": await owner_call(owner.remove_grant, body.get("did", ""))}

    @app.get("/api/owner/tokens")
    async def owner_tokens(body: dict = Depends(owner_body)) -> list:
        return await owner_call(owner.list_tokens)

    @app.post("/api/owner/tokens")
    async def owner_create_token(body: dict = Depends(owner_body)) -> dict:
        return {"token": await owner_call(owner.create_token, required(body, "name"), list(body.get("allow", ["chat"])))}

    @app.post("/api/owner/tokens/revoke")
    async def owner_revoke_token(body: dict = Depends(owner_body)) -> dict:
        return {"revoked": await owner_call(owner.revoke_token, body.get("name", ""))}

    @app.get("/api/owner/peers")
    async def owner_peers(body: dict = Depends(owner_body)) -> list:
        return await owner_call(owner.list_peers)

    @app.post("/api/owner/peers")
    async def owner_add_peer(body: dict = Depends(owner_body)) -> dict:
        return await owner_call(owner.add_peer, required(body, "url"), body.get("name", ""))

    @app.post("/api/owner/send")
    async def owner_send(body: dict = Depends(owner_body)) -> dict:
        return await owner_call(owner.send, required(body, "peer"), required(body, "text"))

    @app.get("/api/owner/audit")
    async def owner_audit(body: dict = Depends(owner_body)) -> dict:
        return await owner_call(owner.verify_audit)

    @app.get("/api/owner/skills")
    async def owner_skills(body: dict = Depends(owner_body)) -> list:
        return await owner_call(owner.list_skills)

    @app.get("/api/owner/skills/info")
    async def owner_skill(name: str, body: dict = Depends(owner_body)) -> dict:
        return await owner_call(owner.skill, name)

    @app.post("/api/owner/skills/install")
    async def owner_install_skill(body: dict = Depends(owner_body)) -> dict:
        return await owner_call(owner.install_skill, str(required(body, "source")))

    @app.post("/api/owner/skills/install-mcp")
    async def owner_install_mcp(body: dict = Depends(owner_body)) -> dict:
        return await owner_call(owner.install_mcp, str(required(body, "name")), list(required(body, "argv")))

    @app.post("/api/owner/skills/approve")
    async def owner_approve_skill(body: dict = Depends(owner_body)) -> dict:
        return await owner_call(owner.approve_skill, str(required(body, "name")), list(body.get("permissions", [])))

    @app.post("/api/owner/skills/enable")
    async def owner_enable_skill(body: dict = Depends(owner_body)) -> dict:
        return await owner_call(owner.enable_skill, str(required(body, "name")))

    @app.post("/api/owner/skills/disable")
    async def owner_disable_skill(body: dict = Depends(owner_body)) -> dict:
        return await owner_call(owner.disable_skill, str(required(body, "name")))

    @app.post("/api/owner/skills/remove")
    async def owner_remove_skill(body: dict = Depends(owner_body)) -> dict:
        return await owner_call(owner.remove_skill, str(required(body, "name")))

    @app.put("/api/owner/skills/policy")
    async def owner_tool_policy(body: dict = Depends(owner_body)) -> dict:
        return await owner_call(owner.set_tool_policy, required(body, "tool"), required(body, "decision"))

    @app.get("/api/owner/approvals")
    async def owner_approvals(body: dict = Depends(owner_body)) -> list:
        return await owner_call(owner.list_approvals)

    @app.post("/api/owner/approvals/decide")
    async def owner_decide(body: dict = Depends(owner_body)) -> dict:
        return await owner_call(owner.decide_approval, required(body, "id"), required(body, "decision"))

    mount_nostr(app, node, model_queue=model_queue, owner_body=owner_body, owner_call=owner_call)

    # --- OpenAI-compatible, for the owner's local apps -----------------------------------

    @app.get("/v1/models")
    def models(allow: set[str] = Depends(bearer_token)) -> dict:
        return {"object": "list", "data": [
            {"id": RAW_MODEL, "object": "model", "created": 0, "owned_by": "owner"},
            {"id": DATA_MODEL, "object": "model", "created": 0, "owned_by": "owner"},
        ]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request, allow: set[str] = Depends(bearer_token)) -> Response:
        if "chat" not in allow:
            raise Problem(403, "not granted", "this token may not use chat")
        chat = _chat_request(await request.body())
        model_id = DATA_MODEL if chat.model == DATA_MODEL else RAW_MODEL  # apps name models freely
        question = next((m["content"] for m in reversed(chat.messages) if m["role"] == "user"), "").strip()
        if model_id == DATA_MODEL and not question:
            raise OpenAIRequestError(f"{DATA_MODEL!r} answers the last user message: send one", param="messages")
        outcome: dict = {}

        def work() -> Iterator[str]:
            # On the queue's thread, like all model work (the first call also loads the model).
            # Why it ended and what it cost are read here, before the next job can use the model.
            model = node.chat_model
            if model_id == RAW_MODEL:
                yield from model.stream(chat.messages, max_tokens=chat.max_tokens, temperature=chat.temperature)
            else:
                yield from data_answer()
            outcome["finish_reason"] = "length" if model.last_finish_reason == "length" else "stop"
            outcome["usage"] = {
                "prompt_tokens": model.last_prompt_tokens_read,
                "completion_tokens": model.last_tokens_generated,
                "total_tokens": model.last_prompt_tokens_read + model.last_tokens_generated,
            }

        def data_answer() -> Iterator[str]:
            # The one answer path (grounded, verified) over all of the owner's data: the token is
            # the owner's. Verified sentences stream; the quotes they rest on come last.
            answer = node.conversation(title=f"v1: {question[:70]}").ask(question)
            yield from answer
            rest = with_quotes_text(answer)[len(answer.text):]
            if rest:
                yield rest

        job = submit(work)
        completion_id = "chatcmpl-" + uuid.uuid4().hex
        created = int(time.time())
        if chat.stream:
            events = _openai_events(job, completion_id, created, outcome, model_id, include_usage=chat.include_usage)
            return StreamingResponse(events, media_type="text/event-stream")
        text = "".join([piece async for piece in _pieces(job)]).strip()
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model_id,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": outcome["finish_reason"]}
                ],
                "usage": outcome["usage"],
            }
        )

    return app


async def _pieces(job: Job) -> AsyncIterator:
    """The job's pieces as they come; cancels the job when the reader goes away."""
    try:
        while True:
            piece = await asyncio.to_thread(job.next_piece)
            if piece is None:
                return
            yield piece
    finally:
        job.cancel()  # a no-op once the job has finished; stops it when the client disconnected


async def _ndjson(job: Job, follow_up: Callable[[PlannedCall], AsyncIterator[dict]] | None = None) -> AsyncIterator[bytes]:
    ahead = job.position - 1   # position 1 is next in line
    if ahead > 0:
        yield (json.dumps({"type": "queued", "ahead": ahead}) + "\n").encode()
    try:
        async for event in _pieces(job):
            if event["type"] == PLANNED and follow_up is not None:
                async for more in follow_up(event["planned"]):
                    yield (json.dumps(more) + "\n").encode()
                continue
            yield (json.dumps(event) + "\n").encode()
    except Exception as error:  # the stream has started: report in-band rather than cut it
        yield (json.dumps({"type": "error", "detail": str(error)}) + "\n").encode()


async def _tool_turn(node: Node, planned: PlannedCall, requester: str) -> AsyncIterator[dict]:
    """The policy and the tool, off the model queue. A call the policy says to ask about is
    announced in the stream and waits for the owner's decision through /api/owner/approvals."""
    loop = asyncio.get_running_loop()
    announced: asyncio.Queue[dict] = asyncio.Queue()
    waiting = []

    def ask_owner(call) -> bool:  # on the worker thread
        pending = node.approvals.open(call, planned.skill, requester)
        waiting.append(pending)
        event = {"type": "approval", "id": pending.id, "tool": call.tool, "skill": planned.skill, "arguments": call.arguments}
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
            node.approvals.withdraw(pending)  # a no-op once decided; frees the thread if the client left
    call, decision = turn.call, turn.decision
    text = turn.result if turn.ran else f"(not run: {decision.reason})"
    yield {"type": "tool", "tool": call.tool, "skill": planned.skill, "arguments": call.arguments, "ran": turn.ran,
           "reason": decision.reason, **({"result": turn.result} if turn.ran else {})}
    yield {"type": "sources", "sources": []}
    yield {"type": "token", "text": text}
    yield {"type": "done", "answer": text}


async def _openai_events(
    job: Job, completion_id: str, created: int, outcome: dict, model_id: str, *, include_usage: bool = False
) -> AsyncIterator[bytes]:
    """The chunks OpenAI's streaming API sends: the role, the pieces, the finish reason and,
    when stream_options.include_usage asked for it, a last chunk with no choices and the usage."""

    def event(choices: list[dict], **extra) -> bytes:
        chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model_id, "choices": choices}
        if include_usage:
            chunk["usage"] = None  # as OpenAI does: null on every chunk but the last
        chunk.update(extra)
        return f"data: {json.dumps(chunk)}\n\n".encode()

    def delta(content: dict, finish: str | None = None) -> bytes:
        return event([{"index": 0, "delta": content, "finish_reason": finish}])

    yield delta({"role": "assistant", "content": ""})
    try:
        async for piece in _pieces(job):
            yield delta({"content": piece})
    except Exception as error:  # the stream has started: report in-band, as OpenAI does, rather than cut it
        _log.exception("/v1 %s: the model failed while answering", completion_id)  # the details stay in the node's log
        body = _openai_error_body(500, "the model failed while answering", code=type(error).__name__)
        yield f"data: {json.dumps(body)}\n\n".encode()
        return
    yield delta({}, outcome["finish_reason"])
    if include_usage:
        yield event([], usage=outcome["usage"])
    yield b"data: [DONE]\n\n"


# --- OpenAI's request and error shapes, for /v1 -----------------------------------------------

OPENAI_PATH = "/v1/"
_OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# OpenAI's error types by status; the client raises its typed exception from the status alone.
_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class OpenAIRequestError(Problem):
    """A refused /v1 request, naming the field at fault as OpenAI's ``param`` does."""

    def __init__(self, detail: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(400, "bad request", detail, reason=code)
        self.param = param


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict]
    max_tokens: int
    temperature: float
    stream: bool
    include_usage: bool


def _chat_request(raw: bytes) -> ChatRequest:
    """An OpenAI chat completion request, read into what the model takes: each message's
    content as text (a string, or an array of text parts, joined), or a clear 400 naming the
    part it cannot read."""
    try:
        body = parse_json(raw)
    except ValueError:  # not JSON, nested too deep, or a number that is not finite
        raise OpenAIRequestError("the body is not JSON: send an OpenAI chat completion request") from None
    if not isinstance(body, dict):
        raise OpenAIRequestError("the body must be a JSON object: send an OpenAI chat completion request")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise OpenAIRequestError("messages must be a non-empty array", param="messages")
    messages = [_chat_message(m, f"messages[{i}]") for i, m in enumerate(raw_messages)]
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = 256 if max_tokens is None else max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= 4096:
        raise OpenAIRequestError("max_tokens must be an integer between 1 and 4096", param="max_tokens")
    temperature = body.get("temperature")
    temperature = 0.7 if temperature is None else temperature
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise OpenAIRequestError("temperature must be a number between 0 and 2", param="temperature")
    stream = body.get("stream") or False
    options = body.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise OpenAIRequestError("stream must be true or false, stream_options an object", param="stream")
    model = body.get("model", "flurry")
    if not isinstance(model, str):
        raise OpenAIRequestError("model must be a string", param="model")
    return ChatRequest(model, messages, max_tokens, float(temperature), stream, bool(options.get("include_usage")))


def _chat_message(message: object, where: str) -> dict:
    if not isinstance(message, dict):
        raise OpenAIRequestError(f"{where} must be an object with role and content", param=where)
    role = _OPENAI_ROLES.get(message.get("role"))  # type: ignore[arg-type]
    if role is None:
        roles = ", ".join(_OPENAI_ROLES)
        raise OpenAIRequestError(f"{where}.role must be one of {roles} (this endpoint runs no tools)", param=f"{where}.role")
    content = message.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise OpenAIRequestError(f"{where}.content must be a string or an array of text parts", param=f"{where}.content")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            raise OpenAIRequestError(
                f"{where}.content[{j}] is a {kind or 'malformed'!s} part: this model reads text only "
                '(parts of {"type": "text", "text": "…"})',
                param=f"{where}.content[{j}].type",
                code="unsupported_content_type",
            )
        texts.append(part["text"])
    return {"role": role, "content": "\n".join(texts)}


def _is_openai_path(request: Request) -> bool:
    return request.url.path.startswith(OPENAI_PATH)


def _openai_error_body(status: int, message: str, *, code: str | None = None, param: str | None = None) -> dict:
    kind = _OPENAI_ERROR_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _openai_error_response(problem: Problem) -> JSONResponse:
    """A refusal on /v1 in OpenAI's error shape, which its clients read (the rest of the API
    answers problem+json). The status and headers (Retry-After) are the problem's own."""
    code = problem.reason or {401: "invalid_api_key"}.get(problem.status)
    body = _openai_error_body(problem.status, problem.detail, code=code, param=getattr(problem, "param", None))
    return JSONResponse(body, status_code=problem.status, headers=problem.headers)
