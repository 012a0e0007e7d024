"""Metered inference: a granted peer runs prompts on this node's model, with no retrieval
and no tools, counted in tokens against its grant (issue 15).

The ``infer`` operation of a grant (agent.grants) lets a peer DID send chat messages that go
to the model as they are: not the owner's notes, not a tool, no system prompt of the node's.
Every request is checked in this order, each refusal a clear error with nothing charged:

1. the grant allows ``infer`` (its call quota counted, as for every operation);
2. the messages are well formed and at most ``MAX_PROMPT_CHARS`` characters in all, checked
   before the tokenizer sees them (PromptTooLarge, 413);
3. max_tokens is within the grant's cap, or the node's ``DEFAULT_MAX_TOKENS`` when the grant
   sets none (InferRefused, 400);
4. the prompt, tokenized by the model's own tokenizer and chat template, plus max_tokens fits
   the model's context (InferRefused, 400);
5. that worst case (prompt tokens + max_tokens) is reserved against the grant's token quotas
   (TokenQuotaExceeded, 429, saying what is left and when enough frees).

The job then runs on the one model queue; when it ends (finished, cut at max_tokens, or
cancelled) the reservation is settled to the tokens really read and generated, the same count
is written to the ledger (node.ledger) and reported to the peer as its usage. A job that never
ran (refused by the queue, cancelled while waiting) gives the whole reservation back. So no
token is served past a quota, and what the peer is told equals what the ledger holds.

How an A2A message says "infer, not ask": message metadata ``{"flurry.operation": "infer"}``,
the prompt as the message's text (one user message), and ``"flurry.max_tokens"`` /
``"flurry.temperature"`` in the same metadata. Without the key, a message is a question
answered from the owner's data, as before. The answer artifact's metadata carries
``"flurry.usage"`` ({prompt_tokens, completion_tokens, model, model_sha256}) and, once
receipts are wired, ``"flurry.receipt"``.
"""

from __future__ import annotations

import codecs
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import llama_cpp

from agent import receipts
from agent.errors import AgentError
from agent.generation import Generation, Sampler
from agent.grants import INFER, Grant, Grants
from agent.queue import Job, ModelQueue
from agent.runtime import ChatModel, runtime_build, step_aside
from identity.keyring import UnlockedKeyring
from node.ledger import Entry, Ledger
from store.vault import Vault

OPERATION_KEY = "flurry.operation"  # A2A message metadata: "infer" runs the model alone
MAX_TOKENS_KEY = "flurry.max_tokens"
TEMPERATURE_KEY = "flurry.temperature"
USAGE_KEY = "flurry.usage"  # answer artifact metadata: what the job cost, as the ledger holds it
# The sampler chain every infer job runs (with the request's temperature): named in its receipt.
SAMPLER = Sampler(top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1)
RECEIPT_KEY = "flurry.receipt"  # answer artifact metadata: the signed receipt (receipts engineer)

MAX_PROMPT_CHARS = 32_000  # all messages' text, checked before tokenizing
MAX_MESSAGES = 64
DEFAULT_MAX_TOKENS = 512  # the cap for a grant that sets none
DEFAULT_REQUEST_TOKENS = 256  # max_tokens when a request names none (as /v1 has it)
DEFAULT_TEMPERATURE = 0.7
ROLES = frozenset({"system", "user", "assistant"})


class InferRefused(AgentError, ValueError):
    """A malformed infer request, or one over a cap (HTTP 400); nothing was charged."""


class PromptTooLarge(InferRefused):
    """The prompt is over MAX_PROMPT_CHARS (HTTP 413); it was not tokenized."""


class InferNode(Protocol):
    vault: Vault
    grants: Grants
    keys: UnlockedKeyring

    @property
    def local_chat_model(self) -> ChatModel: ...


@dataclass(frozen=True)
class InferRequest:
    messages: list[dict]
    max_tokens: int | None  # None: DEFAULT_REQUEST_TOKENS, or the grant's cap if lower
    temperature: float = DEFAULT_TEMPERATURE


def check_messages(messages: object) -> list[dict]:
    """``messages`` as the model takes them, or InferRefused / PromptTooLarge: a list of
    {role, content} with text content, at most MAX_MESSAGES and MAX_PROMPT_CHARS in all."""
    if not isinstance(messages, list) or not messages:
        raise InferRefused("send the prompt as at least one message")
    if len(messages) > MAX_MESSAGES:
        raise PromptTooLarge(f"at most {MAX_MESSAGES} messages per request, not {len(messages)}")
    checked, size = [], 0
    for i, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or m.get("role") not in ROLES
            or not isinstance(m.get("content"), str)
        ):
            raise InferRefused(
                f"messages[{i}] must be {{role: system|user|assistant, content: text}}: "
                "infer runs the model alone, with no tools"
            )
        size += len(m["content"])
        if size > MAX_PROMPT_CHARS:
            raise PromptTooLarge(
                f"the prompt is over {MAX_PROMPT_CHARS} characters; send a shorter one"
            )
        checked.append({"role": m["role"], "content": m["content"]})
    return checked


def check_settings(max_tokens: object, temperature: object, grant: Grant) -> tuple[int, float]:
    cap = grant.max_tokens or DEFAULT_MAX_TOKENS
    if max_tokens is None:
        max_tokens = min(DEFAULT_REQUEST_TOKENS, cap)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InferRefused(f"max_tokens must be a whole number from 1 to {cap}, not {max_tokens!r}")
    if max_tokens > cap:
        raise InferRefused(
            f"max_tokens {max_tokens} is over this grant's cap of {cap} tokens per request"
        )
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature <= 2
    ):
        raise InferRefused(f"temperature must be a number from 0 to 2, not {temperature!r}")
    return max_tokens, float(temperature)


def a2a_request(params: dict) -> InferRequest | None:
    """The infer request an A2A SendMessage's params hold, or None when the message does not
    say "flurry.operation": "infer" (then it is a question for the data answer, as before).
    The prompt is the message's text, as one user message; InferRefused when malformed."""
    message = params.get("message") if isinstance(params, dict) else None
    metadata = message.get("metadata") if isinstance(message, dict) else None
    if not isinstance(metadata, dict) or metadata.get(OPERATION_KEY) != INFER:
        return None
    parts = message.get("parts") if isinstance(message, dict) else None
    if not isinstance(parts, list) or not parts:
        raise InferRefused("an infer message holds its prompt as text parts")
    texts = []
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            raise InferRefused("an infer message holds text parts only: the model reads text")
        texts.append(part["text"])
        if sum(map(len, texts)) > MAX_PROMPT_CHARS:
            raise PromptTooLarge(
                f"the prompt is over {MAX_PROMPT_CHARS} characters; send a shorter one"
            )
    max_tokens = metadata.get(MAX_TOKENS_KEY)
    # JSON numbers reach a protobuf Struct as floats: 64.0 is the whole number 64.
    if isinstance(max_tokens, float) and max_tokens.is_integer():
        max_tokens = int(max_tokens)
    return InferRequest(
        [{"role": "user", "content": "\n".join(texts)}],
        max_tokens,
        metadata.get(TEMPERATURE_KEY, DEFAULT_TEMPERATURE),
    )


# --- the model: exact prompt tokens and a counted generation ---------------------------------

_load_lock = threading.Lock()


# --- a metered job ---------------------------------------------------------------------------


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    model: str
    model_sha256: str
    finish_reason: str = "stop"
    ledger_id: str | None = None
    receipt: str | None = None  # the signed receipt as it travels (agent.receipts.carrier)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def metadata(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "model": self.model,
            "model_sha256": self.model_sha256,
        }


@dataclass
class InferJob:
    """The model work of one metered request: call it (on the queue's thread) for the pieces.
    ``usage`` is set when it ends; `release` gives back a reservation it never used."""

    node: InferNode
    caller: str
    channel: str
    request: InferRequest
    tokens: list[int]
    reservation: str | None
    usage: Usage | None = None
    timings: dict[str, int] = field(default_factory=dict)  # µs: prompt_us, generate_us
    seed: int = 0  # the sampler's, drawn per job
    _started: bool = False
    _released: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> Iterator[str]:
        with self._lock:
            if self._released:
                return
            self._started = True
        model = self.node.local_chat_model
        llm = model.llama
        limit = self.request.max_tokens
        assert limit is not None  # prepare() resolved the default against the grant's cap
        out: list[int] = []
        eog: int | None = None  # the end-of-generation token, part of what the receipt proves
        # Wall time, in µs, to the first token (the prompt read) and after it; a pause for the
        # owner's work (step_aside) counts in the second.
        started, first_at = time.perf_counter(), None
        # A seed of this job's own, named in its receipt, so that a sampled reply (temperature
        # above 0) can be replayed: the model's default seed means "random". The sampler
        # chain takes it when generation starts; the model's own seed is put back after.
        self.seed = secrets.randbelow(2**31)
        default_seed = llm._seed
        llm.set_seed(self.seed)
        finish = "length"
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            for token in llm.generate(
                self.tokens,
                temp=self.request.temperature,
                top_k=SAMPLER.top_k,
                top_p=SAMPLER.top_p,
                min_p=SAMPLER.min_p,
                repeat_penalty=SAMPLER.repeat_penalty,
            ):
                if first_at is None:
                    first_at = time.perf_counter()
                    llm.set_seed(default_seed)  # the chain has its own now
                if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                    finish = "stop"
                    eog = token
                    break
                out.append(token)
                piece = decoder.decode(llm.detokenize([token], prev_tokens=self.tokens + out[:-1]))
                if piece:
                    yield piece
                if len(out) >= limit:
                    break
                # A peer's job: the owner's waiting work runs here, between two tokens
                # (agent.queue's lanes); the place is put back, so the tokens stay the same.
                step_aside(llm)
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
        finally:
            if first_at is None:  # ended before its first token: the seed was never taken
                llm.set_seed(default_seed)
            # Finished, cut at max_tokens, or cancelled: what the model really read and wrote.
            ended = time.perf_counter()
            first_at = first_at or ended
            self.timings = {
                "prompt_us": int((first_at - started) * 1e6),
                "generate_us": int((ended - first_at) * 1e6),
            }
            self._settle(model, out, eog, finish)

    def _receipt(self, model: ChatModel, output: list[int], finish: str) -> str:
        """The signed receipt of this run (agent.receipts), as it travels with the answer: the
        A2A artifact's "flurry.receipt" metadata, "flurry_receipt" in the /v1 response. It
        holds the sampler this job used, so a verifier replays the same chain."""
        llm = model.llama
        generation = Generation(
            model_sha256=model.model_sha256,
            chat_template_sha256=model.chat_template_sha256,
            runtime=runtime_build(),
            settings=model.settings(),
            sampler=replace(
                SAMPLER,
                temperature=self.request.temperature,
                penalty_last_n=llm.last_n_tokens_size,
                seed=self.seed,
            ),
            prompt_tokens=tuple(self.tokens),
            output_tokens=tuple(output),
            finish_reason=finish,
            timings=self.timings,
        )
        keys = self.node.keys
        return receipts.carrier(
            receipts.issue(keys.node_key, keys.node_did, generation, self.caller), generation
        )

    def _settle(self, model: ChatModel, out: list[int], eog: int | None, finish: str) -> None:
        usage = Usage(len(self.tokens), len(out), model.path.name, model.model_sha256, finish)
        self.node.grants.settle_tokens(self.caller, self.reservation, usage.total_tokens)
        usage.receipt = self._receipt(model, out if eog is None else [*out, eog], finish)
        entry = Ledger(self.node.vault).record(
            Entry(
                peer=self.caller,
                direction="served",
                channel=self.channel,
                model=usage.model,
                model_sha256=usage.model_sha256,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                receipt_id=receipts.carried_id(usage.receipt),
            )
        )
        usage.ledger_id = entry.id
        self.usage = usage

    def release(self) -> None:
        """Give back the whole reservation of a job that never ran (idempotent)."""
        with self._lock:
            if self._started or self._released:
                return
            self._released = True
        self.node.grants.settle_tokens(self.caller, self.reservation, 0)


def prepare(
    node: InferNode, caller: str, grant: Grant, request: InferRequest, *, channel: str
) -> InferJob:
    """The checked, reserved job for ``caller``'s request (steps 2–5 of the module's list;
    the caller checked the grant): call off the event loop, it tokenizes and writes the vault."""
    if not grant.allows(INFER):  # the caller authorized "infer"; a grant for "ask" is not one
        raise InferRefused(f"{caller}'s grant does not allow {INFER!r}")
    messages = check_messages(request.messages)
    max_tokens, temperature = check_settings(request.max_tokens, request.temperature, grant)
    with _load_lock:  # the first request loads the model; two at once would load it twice
        model = node.local_chat_model
    try:
        tokens = model.prompt_tokens(messages)
    except AgentError as e:  # a model without a chat template cannot take chat prompts
        raise InferRefused(str(e)) from None
    if len(tokens) + max_tokens > model.n_ctx:
        raise InferRefused(
            f"the prompt is {len(tokens)} tokens; with max_tokens {max_tokens} it is over the "
            f"model's context of {model.n_ctx} tokens"
        )
    reservation = node.grants.reserve_tokens(
        caller, len(tokens) + max_tokens, owner_did=node.keys.owner_did
    )
    return InferJob(
        node, caller, channel, InferRequest(messages, max_tokens, temperature), tokens, reservation
    )


# The job behind each queued Job, for the A2A executor to read the usage from once it ends.
_jobs: weakref.WeakKeyDictionary[Job, InferJob] = weakref.WeakKeyDictionary()


def submit(
    queue: ModelQueue, infer: InferJob, run: Callable[[], Iterator[str]] | None = None
) -> Job:
    """Queue ``infer`` (or ``run``, which drives it) as a peer's job (agent.queue's default
    lane) and `bind` it; a queue that refuses it (full) gives its reservation back first."""
    try:
        job = queue.submit(run or infer)
    except BaseException:
        infer.release()
        raise
    bind(job, infer)
    return job


def bind(job: Job, infer: InferJob) -> None:
    """Remember ``infer`` as ``job``'s work; if the job is dropped without running (the SDK
    refused the request, the client went away while it waited), its reservation comes back."""
    _jobs[job] = infer
    weakref.finalize(job, infer.release)


def answer_metadata(job: Job) -> dict[str, Any] | None:
    """The A2A answer artifact's metadata for a finished infer job (None for other jobs)."""
    infer = _jobs.get(job)
    if infer is None or infer.usage is None:
        return None
    return {USAGE_KEY: infer.usage.metadata(), RECEIPT_KEY: infer.usage.receipt}


# --- the requester's side: running a prompt on a peer's model -------------------------------


async def infer_at_peer(
    node: InferNode,
    peer: str,
    prompt: str,
    *,
    max_tokens: int = 256,
    temperature: float = DEFAULT_TEMPERATURE,
) -> dict:
    """Run ``prompt`` on the pinned ``peer``'s model (its grant to us must allow ``infer``),
    and record what it reported using in this node's ledger ("used"). The answer as
    `node.peering.send_to_peer` gives it, with ``usage`` (and ``receipt``) added."""
    # Imported here: node.peering imports the node's answer path, which imports far more.
    from node.peering import send_to_peer

    reply = await send_to_peer(
        node,  # type: ignore[arg-type]  # the Node; this protocol names only what infer uses
        peer,
        prompt,
        metadata={
            OPERATION_KEY: INFER,
            MAX_TOKENS_KEY: max_tokens,
            TEMPERATURE_KEY: temperature,
        },
    )
    usage = reported_usage(reply.get("metadata") or {})
    # The receipt send_to_peer kept (checked: the peer's, made out to us), if any.
    entry = record_used(
        node.vault, reply["peer_did"], usage, channel="a2a", receipt_id=reply.get("receipt_id")
    )
    return {
        **reply,
        "usage": usage,
        "receipt": (reply.get("metadata") or {}).get(RECEIPT_KEY),
        "ledger_id": entry.id,
    }


def record_used(
    vault: Vault, peer_did: str, usage: dict, *, channel: str, receipt_id: str | None = None
) -> Entry:
    """Record in this node's ledger what ``peer_did`` reported using for one of our jobs
    (``usage`` as `reported_usage` checked it, or a /v1 response's usage plus the model)."""
    return Ledger(vault).record(
        Entry(
            peer=peer_did,
            direction="used",
            channel=channel,
            model=usage["model"],
            model_sha256=usage.get("model_sha256"),
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            receipt_id=receipt_id,
        )
    )


def reported_usage(metadata: dict) -> dict:
    """The usage a provider reported in its answer's metadata, checked: whole token counts
    (a protobuf Struct gives them as floats), a model name and hash as text."""
    usage = metadata.get(USAGE_KEY)
    if not isinstance(usage, dict):
        raise InferRefused("the peer's answer reports no usage: it is not a metered infer answer")
    counts = {}
    for name in ("prompt_tokens", "completion_tokens"):
        value = usage.get(name)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**9:
            raise InferRefused(f"the peer reported {name} {value!r}: not a token count")
        counts[name] = value
    model, digest = usage.get("model"), usage.get("model_sha256")
    if (
        not isinstance(model, str)
        or not isinstance(digest, str)
        or len(model) > 256
        or len(digest) > 64
    ):
        raise InferRefused("the peer's usage names no model")
    return {**counts, "model": model, "model_sha256": digest}
