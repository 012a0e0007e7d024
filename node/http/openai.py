"""OpenAI-compatible /v1, for the owner's local apps: /v1/models and /v1/chat/completions.

These apps cannot sign, so /v1 takes owner-made bearer tokens. A peer may use it too, under
its "infer" grant: signed (RFC 9421) or with a token the owner bound to it, it runs the model
alone, metered in tokens (node.infer, `peer_completion`). Two models: "flurry", the model alone (no data), and "flurry-data", the last user
message answered from the owner's data by the one grounded answer path. Refusals answer in
OpenAI's error shape (node.http.problems).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from agent.answer import with_quotes_text
from agent.grants import INFER
from agent.queue import Job, ModelQueue
from node import infer
from node.http.auth import TokenDep, authorize, bearer_grant, signed_caller
from node.http.jobs import pieces
from node.http.problems import Problem, openai_error_body
from node.http.state import NodeDep, QueueDep
from node.limits import parse_json
from node.node import Node

RAW_MODEL = "flurry"  # the model alone, for the owner's apps (no data)
DATA_MODEL = "flurry-data"  # the last user message answered from the owner's data, grounded
_OPENAI_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
_log = logging.getLogger(__name__)

router = APIRouter()


@router.get("/v1/models")
def models(allow: TokenDep) -> dict:
    return {
        "object": "list",
        "data": [
            {"id": RAW_MODEL, "object": "model", "created": 0, "owned_by": "owner"},
            {"id": DATA_MODEL, "object": "model", "created": 0, "owned_by": "owner"},
        ],
    }


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, node: NodeDep, queue: QueueDep) -> Response:
    # A peer signs (RFC 9421) and runs the model alone under its "infer" grant (node.infer);
    # the owner's apps send a bearer token.
    if "signature" in request.headers:
        caller = await signed_caller(request)
        if caller != node.keys.owner_did:
            return await peer_completion(request, caller, node, queue)
        allow = {"chat"}
    else:
        token = bearer_grant(request, node)
        if token.peer is not None:  # a token the owner bound to a peer: metered as that peer
            return await peer_completion(request, token.peer, node, queue)
        allow = set(token.allow)
    if "chat" not in allow:
        raise Problem(403, "not granted", "this token may not use chat")
    chat = chat_request(await request.body())
    model_id = DATA_MODEL if chat.model == DATA_MODEL else RAW_MODEL  # apps name models freely
    question = next(
        (m["content"] for m in reversed(chat.messages) if m["role"] == "user"), ""
    ).strip()
    if model_id == DATA_MODEL and not question:
        raise OpenAIRequestError(
            f"{DATA_MODEL!r} answers the last user message: send one", param="messages"
        )
    outcome: dict = {}

    def work() -> Iterator[str]:
        # On the queue's thread, like all model work (the first call also loads the model).
        # Why it ended and what it cost are read here, before the next job can use the model.
        model = node.chat_model
        if model_id == RAW_MODEL:
            yield from model.stream(
                chat.messages, max_tokens=chat.max_tokens, temperature=chat.temperature
            )
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
        rest = with_quotes_text(answer)[len(answer.text) :]
        if rest:
            yield rest

    job = queue.submit(work, lane="owner")  # /v1 tokens are owner-made
    completion_id = "chatcmpl-" + uuid.uuid4().hex
    created = int(time.time())
    if chat.stream:
        events = _openai_events(
            job, completion_id, created, outcome, model_id, include_usage=chat.include_usage
        )
        return StreamingResponse(events, media_type="text/event-stream")
    text = "".join([piece async for piece in pieces(job)]).strip()
    return JSONResponse(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model_id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": outcome["finish_reason"],
                }
            ],
            "usage": outcome["usage"],
        }
    )


async def _openai_events(
    job: Job,
    completion_id: str,
    created: int,
    outcome: dict,
    model_id: str,
    *,
    include_usage: bool = False,
) -> AsyncIterator[bytes]:
    """The chunks OpenAI's streaming API sends: the role, the pieces, the finish reason and,
    when stream_options.include_usage asked for it, a last chunk with no choices and the usage."""

    def event(choices: list[dict], **extra) -> bytes:
        chunk = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_id,
            "choices": choices,
        }
        if include_usage:
            chunk["usage"] = None  # as OpenAI does: null on every chunk but the last
        chunk.update(extra)
        return f"data: {json.dumps(chunk)}\n\n".encode()

    def delta(content: dict, finish: str | None = None) -> bytes:
        return event([{"index": 0, "delta": content, "finish_reason": finish}])

    yield delta({"role": "assistant", "content": ""})
    try:
        async for piece in pieces(job):
            yield delta({"content": piece})
    except (
        Exception
    ) as error:  # the stream has started: report in-band, as OpenAI does, rather than cut it
        _log.exception(
            "/v1 %s: the model failed while answering", completion_id
        )  # the details stay in the node's log
        body = openai_error_body(500, "the model failed while answering", code=type(error).__name__)
        yield f"data: {json.dumps(body)}\n\n".encode()
        return
    yield delta({}, outcome["finish_reason"])
    if include_usage:
        yield event([], usage=outcome["usage"])
    yield b"data: [DONE]\n\n"


# --- a peer's metered use of the model (node.infer) ----------------------------------------------

_TOOL_FIELDS = ("tools", "tool_choice", "functions", "function_call")


async def peer_completion(request: Request, caller: str, node: Node, queue: ModelQueue) -> Response:
    """A peer's chat completion under its "infer" grant: its messages go to the model as they
    are, with no retrieval (only the "flurry" model), no tools, metered in tokens. Every
    refusal comes before anything is charged; ``usage`` is what the ledger records."""
    grant = await asyncio.to_thread(authorize, node, caller, INFER)  # 403 / 429
    raw = await request.body()
    chat = chat_request(raw)
    body = parse_json(raw)
    if chat.model == DATA_MODEL:
        raise Problem(
            403,
            "not granted",
            f"{DATA_MODEL!r} answers from the owner's data, which an infer grant does not "
            f"reach: use {RAW_MODEL!r}, the model alone",
        )
    if any(body.get(name) for name in _TOOL_FIELDS):
        raise OpenAIRequestError("infer runs the model alone: no tools", param="tools")
    named = body.get("max_completion_tokens", body.get("max_tokens")) is not None
    max_tokens = chat.max_tokens if named else None  # None: a default within the grant's cap
    wanted = infer.InferRequest(chat.messages, max_tokens, chat.temperature)
    work = await asyncio.to_thread(infer.prepare, node, caller, grant, wanted, channel="v1")
    outcome: dict = {}

    def run() -> Iterator[str]:
        yield from work()
        usage = work.usage
        assert usage is not None  # set when the work ends
        outcome["finish_reason"] = usage.finish_reason
        outcome["usage"] = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }

    job = infer.submit(queue, work, run)
    completion_id = "chatcmpl-" + uuid.uuid4().hex
    created = int(time.time())
    if chat.stream:
        events = _openai_events(
            job, completion_id, created, outcome, RAW_MODEL, include_usage=chat.include_usage
        )
        return StreamingResponse(events, media_type="text/event-stream")
    try:
        text = "".join([piece async for piece in pieces(job)]).strip()
    finally:
        work.release()  # a no-op once it ran; gives the reservation back if it never did
    assert work.usage is not None
    return JSONResponse(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": RAW_MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": outcome["finish_reason"],
                }
            ],
            "usage": outcome["usage"],
            # --- RECEIPT HOOK (issue 15, receipts): the signed receipt of this answer.
            "flurry_receipt": work.usage.receipt,
        }
    )


# --- OpenAI's request shape ----------------------------------------------------------------------


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


def chat_request(raw: bytes) -> ChatRequest:
    """An OpenAI chat completion request, read into what the model takes: each message's
    content as text (a string, or an array of text parts, joined), or a clear 400 naming the
    part it cannot read."""
    try:
        body = parse_json(raw)
    except ValueError:  # not JSON, nested too deep, or a number that is not finite
        raise OpenAIRequestError(
            "the body is not JSON: send an OpenAI chat completion request"
        ) from None
    if not isinstance(body, dict):
        raise OpenAIRequestError(
            "the body must be a JSON object: send an OpenAI chat completion request"
        )
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise OpenAIRequestError("messages must be a non-empty array", param="messages")
    messages = [_chat_message(m, f"messages[{i}]") for i, m in enumerate(raw_messages)]
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = 256 if max_tokens is None else max_tokens
    if (
        isinstance(max_tokens, bool)
        or not isinstance(max_tokens, int)
        or not 1 <= max_tokens <= 4096
    ):
        raise OpenAIRequestError(
            "max_tokens must be an integer between 1 and 4096", param="max_tokens"
        )
    temperature = body.get("temperature")
    temperature = 0.7 if temperature is None else temperature
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature <= 2
    ):
        raise OpenAIRequestError(
            "temperature must be a number between 0 and 2", param="temperature"
        )
    stream = body.get("stream") or False
    options = body.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise OpenAIRequestError(
            "stream must be true or false, stream_options an object", param="stream"
        )
    model = body.get("model", "flurry")
    if not isinstance(model, str):
        raise OpenAIRequestError("model must be a string", param="model")
    return ChatRequest(
        model, messages, max_tokens, float(temperature), stream, bool(options.get("include_usage"))
    )


def _chat_message(message: object, where: str) -> dict:
    if not isinstance(message, dict):
        raise OpenAIRequestError(f"{where} must be an object with role and content", param=where)
    role = _OPENAI_ROLES.get(message.get("role"))  # type: ignore[arg-type]
    if role is None:
        roles = ", ".join(_OPENAI_ROLES)
        raise OpenAIRequestError(
            f"{where}.role must be one of {roles} (this endpoint runs no tools)",
            param=f"{where}.role",
        )
    content = message.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise OpenAIRequestError(
            f"{where}.content must be a string or an array of text parts", param=f"{where}.content"
        )
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
