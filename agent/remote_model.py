"""A chat model on another box: any OpenAI-compatible server (llama-server, vLLM, Ollama,
LM Studio, ``llama_cpp.server``), and the failover that keeps the node answering when that box
is down.

What leaves the node: the prompt. For an answer from the owner's data that is the question
and the evidence lines retrieval chose, sent to the server the owner named; nothing else (no
keys, no vault, no file paths). Plain http only to this machine (loopback): anywhere else the
owner's data would cross the network in clear, so it must be https.

What a remote answer cannot be: token-exact. The node cannot see the server's tokens or
sampler, so a remote model streams text and nothing more (``generation`` is None: no
receipt); metered inference for peers and receipts stay on the local model (node.node says
which model each path uses).

``FailoverChatModel`` is what the node holds when its chat model is remote: the remote while it
answers; the local model when a call cannot reach it (connection refused, timeout, a 5xx), at
once, for that very call when nothing was streamed yet; then every call goes local until a
probe (``GET /v1/models``, at most every ``probe_seconds``) finds the server back. ``last_used``
says which one wrote the last reply, and why, for the answer's metadata.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from agent.errors import AgentError
from agent.model_sources import is_loopback

_log = logging.getLogger(__name__)

CONNECT_SECONDS = 2.0  # a box on the home network answers a connect in far less
READ_SECONDS = 120.0  # between two streamed pieces: a big model's prompt read may take this
PROBE_SECONDS = 5.0  # how often a node whose remote is down asks whether it is back
BYTES_PER_TOKEN = 3  # for counting without the server's tokenizer: fewer than any real one


class RemoteError(AgentError):
    """The remote server refused the request (a 4xx): not a reason to fail over."""


class RemoteUnavailable(AgentError):
    """The remote server could not be reached, timed out or failed (a 5xx)."""


@dataclass(frozen=True)
class Remote:
    """An OpenAI-compatible server the owner named: ``url`` is its base (``…/v1`` is added
    when missing), ``model`` the name the server knows the model by ("" lets it choose),
    ``key`` the API key (kept sealed in the vault by node.remote_models)."""

    name: str
    url: str
    model: str = ""
    key: str | None = None

    @property
    def api(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/v1") else base + "/v1"


def check_url(url: str) -> str:
    """``url`` if it may carry the owner's data: https anywhere, http only to this machine."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError(f"{url!r} is not an http(s) URL of an OpenAI-compatible server")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise RemoteError(
            f"{url} is plain http to another machine: the prompt (your question and the notes "
            "it draws on) would cross the network in clear; use https"
        )
    return url


class ChatBackend(Protocol):
    """What the owner's answer paths ask of a chat model (agent.answer.AnswerModel, the tool
    chooser, the /v1 API): the in-process ``agent.runtime.ChatModel``, a ``RemoteChatModel``,
    or the ``FailoverChatModel`` between the two."""

    n_ctx: int
    last_finish_reason: str | None
    last_prompt_tokens_read: int
    last_tokens_generated: int

    def count_tokens(self, text: str) -> int: ...

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        repeat_penalty: float = 1.1,
    ) -> Iterator[str]: ...

    def complete(self, messages: list[dict], *, schema: dict, max_tokens: int) -> str: ...


class RemoteChatModel:
    def __init__(self, remote: Remote, *, n_ctx: int = 4096) -> None:
        check_url(remote.url)
        self.remote, self.n_ctx = remote, n_ctx
        headers = {"Authorization": f"Bearer {remote.key}"} if remote.key else {}
        self._http = httpx.Client(
            base_url=remote.api,
            headers=headers,
            timeout=httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS),
            follow_redirects=False,  # a redirect could take the prompt elsewhere
        )
        self.last_finish_reason: str | None = None
        self.last_prompt_tokens_read = 0
        self.last_tokens_generated = 0
        # What the server says identifies its build and settings (OpenAI's field; servers
        # that have none leave it out), and the model it answered with.
        self.system_fingerprint: str | None = None
        self.served_model: str | None = None
        self._schema_style = "json_schema"  # the OpenAI form first; llama_cpp.server's after
        self._llama_fields = True  # until a server refuses them (stream)

    @property
    def name(self) -> str:
        return f"remote:{self.remote.name}"

    def close(self) -> None:
        self._http.close()

    def health(self, timeout: float = 1.0) -> str | None:
        """None when the server answers ``GET /v1/models``; else why not."""
        try:
            response = self._http.get("/models", timeout=timeout)
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}"
        return None if response.status_code < 400 else f"HTTP {response.status_code}"

    def count_tokens(self, text: str) -> int:
        # No tokenizer here: a count no real tokenizer goes below, so the context budget
        # (agent.answer) holds whatever the server's model is.
        return math.ceil(len(text.encode()) / BYTES_PER_TOKEN)

    def _body(self, messages: list[dict], max_tokens: int, temperature: float) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if self.remote.model:
            body["model"] = self.remote.model
        return body

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        repeat_penalty: float = 1.1,
    ) -> Iterator[str]:
        """The reply, piece by piece as the server streams it (server-sent events). Closing
        the iterator closes the connection: the server stops generating."""
        body = {
            **self._body(messages, max_tokens, temperature),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self._llama_fields:
            # llama.cpp's servers read these (the same repetition penalty as in process, and
            # the KV cache kept for the next turn's shared prefix); a strict server refuses
            # unknown fields: then they are left out from then on.
            body |= {"repeat_penalty": repeat_penalty, "cache_prompt": True}
        self.last_finish_reason = None
        usage: dict[str, Any] = {}
        pieces = 0
        try:
            with self._http.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code in (400, 422) and self._llama_fields:
                    self._llama_fields = False
                    response.close()
                    yield from self.stream(
                        messages,
                        max_tokens=max_tokens,
                        temperature=temperature,
                        repeat_penalty=repeat_penalty,
                    )
                    return
                _raise_for(response, read=True)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = _json(data)
                    self._note(chunk)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        self.last_finish_reason = (
                            choice.get("finish_reason") or self.last_finish_reason
                        )
                        piece = (choice.get("delta") or {}).get("content")
                        if isinstance(piece, str) and piece:
                            pieces += 1
                            yield piece
        except httpx.HTTPError as error:
            raise RemoteUnavailable(f"{self.name}: {type(error).__name__}: {error}") from error
        self.last_prompt_tokens_read = int(usage.get("prompt_tokens") or 0)
        self.last_tokens_generated = int(usage.get("completion_tokens") or pieces)

    def complete(self, messages: list[dict], *, schema: dict, max_tokens: int) -> str:
        """The whole reply, constrained to JSON of ``schema`` by the server: OpenAI's
        ``json_schema`` response format, or, where the server knows only ``json_object`` with a
        schema (llama_cpp.server), that. Whatever comes back is still checked by the caller
        (agent.tools.validate_call): the server's grammar is trusted for nothing."""
        for style in dict.fromkeys([self._schema_style, "json_schema", "json_object"]):
            body = {
                **self._body(messages, max_tokens, 0.0),
                "response_format": _format(style, schema),
            }
            try:
                response = self._http.post("/chat/completions", json=body)
            except httpx.HTTPError as error:
                raise RemoteUnavailable(f"{self.name}: {type(error).__name__}: {error}") from error
            refused_form = response.status_code in (400, 422) or (
                # llama_cpp.server answers a request it cannot validate with a 500
                response.status_code >= 500 and "response_format" in response.text
            )
            if refused_form and style == "json_schema":
                continue  # this server does not know the OpenAI form: try the other
            _raise_for(response)
            self._schema_style = style
            reply = _json(response.text)
            self._note(reply)
            choice = (reply.get("choices") or [{}])[0]
            self.last_finish_reason = choice.get("finish_reason")
            content = (choice.get("message") or {}).get("content")
            return content if isinstance(content, str) else ""
        raise RemoteError(f"{self.name} takes no JSON schema for its replies")

    def _note(self, reply: dict[str, Any]) -> None:
        self.system_fingerprint = reply.get("system_fingerprint") or self.system_fingerprint
        self.served_model = reply.get("model") or self.served_model


def _format(style: str, schema: dict) -> dict[str, Any]:
    if style == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
    return {"type": "json_object", "schema": schema}


def _raise_for(response: httpx.Response, read: bool = False) -> None:
    if response.status_code < 400:
        return
    if read:
        response.read()
    detail = response.text[:300]
    if response.status_code >= 500:
        raise RemoteUnavailable(f"the remote server failed (HTTP {response.status_code}): {detail}")
    raise RemoteError(
        f"the remote server refused the request (HTTP {response.status_code}): {detail}"
    )


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise RemoteUnavailable(
            f"the remote server sent something that is not JSON: {text[:100]!r}"
        ) from None
    if not isinstance(value, dict):
        raise RemoteUnavailable("the remote server sent JSON that is not an object")
    return value


class FailoverChatModel:
    """The remote while it answers, the local model while it does not (module docstring)."""

    def __init__(
        self,
        remote: RemoteChatModel,
        local: Callable[[], Any],
        *,
        local_n_ctx: int,
        probe_seconds: float = PROBE_SECONDS,
    ) -> None:
        self.remote, self._local = remote, local
        self.n_ctx = min(remote.n_ctx, local_n_ctx)  # the prompt must fit either of them
        self.probe_seconds = probe_seconds
        self.down: str | None = None  # why the remote is not used now; None: it is
        self._probed_at = 0.0
        self._lock = threading.Lock()
        self.last_used = remote.name
        self.last_finish_reason: str | None = None
        self.last_prompt_tokens_read = 0
        self.last_tokens_generated = 0

    @property
    def name(self) -> str:
        return self.remote.name

    def count_tokens(self, text: str) -> int:
        return self.remote.count_tokens(text)

    def check(self) -> str | None:
        """Ask the remote now (at start, and on errors): None when it answers, else why not."""
        why = self.remote.health()
        with self._lock:
            self._probed_at = time.monotonic()
            if why is None and self.down is not None:
                _log.info("the remote model %s is back", self.remote.name)
            self.down = None if why is None else why
        return why

    def _use_remote(self) -> bool:
        with self._lock:
            if self.down is None:
                return True
            due = time.monotonic() - self._probed_at >= self.probe_seconds
        return due and self.check() is None

    def _failed(self, error: RemoteUnavailable) -> None:
        with self._lock:
            self.down, self._probed_at = str(error), time.monotonic()
        _log.warning("the remote model is unavailable, the local model answers: %s", error)

    def _local_used(self) -> Any:
        self.last_used = f"local (the remote {self.remote.name} is down: {self.down})"
        return self._local()

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        repeat_penalty: float = 1.1,
    ) -> Iterator[str]:
        if self._use_remote():
            self.last_used = self.remote.name
            started = False
            try:
                for piece in self.remote.stream(
                    messages,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    repeat_penalty=repeat_penalty,
                ):
                    started = True
                    yield piece
                self._copy(self.remote)
                return
            except RemoteUnavailable as error:
                self._failed(error)
                if started:  # half an answer cannot be finished by another model
                    raise RemoteUnavailable(
                        f"{error}; the answer stopped there, the next one goes to the local model"
                    ) from error
        local = self._local_used()
        yield from local.stream(
            messages, max_tokens=max_tokens, temperature=temperature, repeat_penalty=repeat_penalty
        )
        self._copy(local)

    def complete(self, messages: list[dict], *, schema: dict, max_tokens: int) -> str:
        if self._use_remote():
            self.last_used = self.remote.name
            try:
                return self.remote.complete(messages, schema=schema, max_tokens=max_tokens)
            except RemoteUnavailable as error:
                self._failed(error)
        return self._local_used().complete(messages, schema=schema, max_tokens=max_tokens)

    def _copy(self, model: Any) -> None:
        self.last_finish_reason = model.last_finish_reason
        self.last_prompt_tokens_read = model.last_prompt_tokens_read
        self.last_tokens_generated = model.last_tokens_generated
