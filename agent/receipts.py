"""Receipts: what a node signs for every answer it gives a peer, and how anyone checks one.

A receipt is a JSON object, signed with the node's key as a detached JWS over its RFC 8785
canonical form (``identity.jws``; the signature sits in its ``signatures`` member, as on the
agent card). It holds what re-execution needs and nothing private:

- ``issuer`` (the node's DID), ``requester`` (the peer's DID), a random ``nonce``, ``issued_at``;
- ``model``: the GGUF's sha256 and the sha256 of its chat template;
- ``runtime``: llama-cpp-python's version, the sha256 of the llama.cpp/ggml libraries as built,
  the CPU features they use; ``settings``: backend (cpu/gpu), n_ctx, n_batch, n_ubatch,
  n_threads, n_gpu_layers, KV cache types, flash attention; ``sampler``: the chain and every
  parameter, seed included (``agent.generation.Sampler``);
- ``prompt`` and ``output``: token counts and the sha256 of the token ids
  (``agent.generation.token_sha256``), never the tokens: the prompt of a data answer holds the
  owner's notes. ``output.finish_reason``; ``timings`` in microseconds.

**An answer from data** (a peer's question answered from the owner's notes, over A2A or Nostr)
gets a receipt too, with one more member, ``answer``: the sha256 of the answer's text as sent
(``agent.generation.answer_sha256``). Its ``prompt`` and ``output`` hashes are *salted*
(``token_sha256(tokens, salt)``, a 32-byte salt the issuer keeps sealed with the tokens): the
prompt holds the owner's notes and the model's draft may say more than the checked answer
shows, so neither may be guessable from the receipt. The requester checks the signature and
that the answer it received is the one signed; only the issuer, who keeps the salt and the
tokens (``keep_issued``), can re-execute it, or reveal both to someone it chooses.

A receipt's id is the sha256 of its canonical form without signatures (``receipt_id``): it
cannot be chosen apart from the content.

**Carrier.** Over A2A the receipt travels in the metadata of the task's "answer" artifact
under ``flurry.receipt`` (``A2A_METADATA_KEY``), as a string: the JSON text of
``{"receipt": {...}, "output_tokens": [ids]}`` (``carrier``). The output token ids
are not private (the text is sent anyway) and are bound to the receipt by its hash; with them
a mismatch can say which token differs and the fast check can run.

**What a receipt proves.** That the holder of the issuer's key claims this output came from
the model with this sha256, under these settings, for a prompt with this hash. Re-executing
on the same model and build (``verify``) confirms the claim token for token; it does not
prove the prompt was sensible or that the owner's notes say what the answer says.

**Which settings change results** (measured on this CPU, AVX-512, with the default model by
bench/bench_receipts.py, see the README): on one llama.cpp build and CPU, greedy outputs did
not change with n_threads (1 vs 2) nor with n_batch/n_ubatch (8 vs 512): 20 of 20 prompts
the same, and 20 of 20 in a separate 48-token probe; the model file, the llama.cpp build, the CPU features
(AVX2 vs AVX-512 kernels) and GPU vs CPU do change the arithmetic, and llama.cpp's issues
report batch-size effects on GPU backends. ``verify`` therefore re-executes with the
receipt's own n_ctx, n_batch, n_ubatch and n_threads, and calls a difference *inconclusive*,
never *mismatch*, when any of ``UNREPRODUCIBLE`` differs from this node's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.errors import AgentError
from agent.generation import Generation, Sampler, answer_sha256, token_sha256
from agent.runtime import ChatModel, runtime_build
from identity.did_key import verification_method_id
from identity.jws import JWSRejected, canonical_json, sign_json, verify_json
from store.records import Records

RECEIPT_TYPE = "flurry.receipt/1"
A2A_METADATA_KEY = "flurry.receipt"
RECEIPT_KIND = "receipt"  # sealed records in the vault, keyed by receipt id
MAX_RECEIPT_BYTES = 16 * 1024  # a receipt is ~1.5 KB; a stranger's may not be 100 MB
MAX_OUTPUT_TOKENS = 1 << 16
# How far (in logits) a token may fall below the best one and still pass the fast check. One
# prefill over prompt + output adds in another order than generating one token at a time
# (batched kernels, activations quantized per batch), so near ties flip: over 200 honest
# receipts of SmolLM2 (bench_receipts), 3 % of output tokens were not the prefill's first
# choice, by up to 0.51 logits. The fast check is therefore a screen, not a proof: within the
# tolerance it passes (a forger could swap a token only where the model's top two are this
# close); beyond it, ``verify`` re-executes, and only re-execution calls anything a mismatch.
FAST_TOLERANCE = 0.5
# Settings a verifier cannot adopt from the receipt: when one differs, differing tokens are
# inconclusive. The rest (n_ctx, n_batch, n_ubatch, n_threads) the verifier takes from the
# receipt for its replay, within MAX_REPLAY.
UNREPRODUCIBLE = (
    "runtime.llama_cpp_python",
    "runtime.llama_cpp_build_sha256",
    "runtime.system_info",
    "settings.backend",
    "settings.type_k",
    "settings.type_v",
    "settings.flash_attn",
)
MAX_REPLAY = {"n_ctx": 32768, "n_batch": 8192, "n_ubatch": 8192, "n_threads": 64}

_HEX64 = re.compile(r"[0-9a-f]{64}")
_DID = re.compile(r"did:[a-z0-9]+:[A-Za-z0-9._:%-]{1,200}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{22,64}")


class ReceiptRejected(AgentError):
    """The receipt is not one this node accepts; ``reason`` is a short code.

    Reasons: too_large, not_json, malformed, signature_invalid, wrong_signer, wrong_requester,
    output_tokens_differ, answer_differs."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Verdict:
    verdict: str  # "verified" | "mismatch" | "inconclusive"
    reason: str
    first_difference: dict[str, int] | None = None  # index, receipt_token, replay_token
    differences: list[str] = field(default_factory=list)  # settings that differ from this node
    method: str = "re-execution"  # or "fast"
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "first_difference": self.first_difference,
            "differences": self.differences,
            "method": self.method,
            "seconds": round(self.seconds, 3),
        }


# --- issuing -------------------------------------------------------------------------------


def issue(
    node_key: Ed25519PrivateKey,
    node_did: str,
    generation: Generation,
    requester_did: str,
    *,
    answer: str | None = None,
    salt: bytes = b"",
) -> dict[str, Any]:
    """The signed receipt for ``generation``, made for ``requester_did``. With ``answer`` (the
    text sent back for a question answered from data), a receipt whose token hashes are salted
    by ``salt`` (at least 16 random bytes, kept by the issuer) and which signs the answer."""
    if answer is not None and len(salt) < 16:
        raise ValueError("a data answer's receipt needs a salt of at least 16 random bytes")
    receipt: dict[str, Any] = {
        "type": RECEIPT_TYPE,
        "issuer": node_did,
        "requester": requester_did,
        "nonce": base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode(),
        "issued_at": int(time.time()),
        "model": {
            "sha256": generation.model_sha256,
            "chat_template_sha256": generation.chat_template_sha256,
        },
        "runtime": dict(generation.runtime),
        "settings": dict(generation.settings),
        "sampler": generation.sampler.as_dict(),
        "prompt": {
            "tokens": len(generation.prompt_tokens),
            "sha256": token_sha256(generation.prompt_tokens, salt),
        },
        "output": {
            "tokens": len(generation.output_tokens),
            "sha256": token_sha256(generation.output_tokens, salt),
            "finish_reason": generation.finish_reason,
        },
        "timings": {k: int(v) for k, v in generation.timings.items()},
    }
    if answer is not None:
        receipt["answer"] = {"sha256": answer_sha256(answer)}
    _check_shape(receipt, _shape_of(receipt))  # what we sign, we would accept
    receipt["signatures"] = [sign_json(receipt, node_key, verification_method_id(node_did))]
    return receipt


def is_data_answer(receipt: dict[str, Any]) -> bool:
    """Whether ``receipt`` is for an answer from data (private prompt, salted hashes)."""
    return "answer" in receipt


def keep_issued(
    records: Records, receipt: dict[str, Any], generation: Generation, salt: bytes
) -> str:
    """Keep, sealed, what this node needs to re-execute a data answer's receipt it issued:
    the receipt, its salt and the exact tokens. Returns the receipt's id."""
    rid = receipt_id(receipt)
    records.put_record(
        RECEIPT_KIND,
        rid,
        {
            "receipt": receipt,
            "issued": True,
            "peer": receipt["requester"],
            "salt": salt.hex(),
            "prompt_tokens": list(generation.prompt_tokens),
            "output_tokens": list(generation.output_tokens),
            "received_at": time.time(),
            "verdict": None,
        },
    )
    return rid


def receipt_id(receipt: dict[str, Any]) -> str:
    """sha256 (hex) of the receipt's canonical form without its signatures."""
    body = {k: v for k, v in receipt.items() if k != "signatures"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def carried_id(carrier_text: str) -> str:
    """The id of the receipt inside a ``carrier`` this node made (its own: not checked again)."""
    return receipt_id(json.loads(carrier_text)["receipt"])


def carrier(receipt: dict[str, Any], generation: Generation | None) -> str:
    """What travels with an answer under ``A2A_METADATA_KEY``: JSON text (a protobuf Struct,
    A2A's metadata, would turn every number into a double), canonical (RFC 8785). A data
    answer's carries no token ids (``generation`` None): they are the issuer's to keep."""
    value: dict[str, Any] = {"receipt": receipt}
    if generation is not None:
        value["output_tokens"] = list(generation.output_tokens)
    return canonical_json(value).decode()


# --- checking a stranger's receipt ---------------------------------------------------------


def parse(data: bytes | str) -> dict[str, Any]:
    """A receipt (or a carrier holding one) read from bytes, size checked before parsing."""
    if len(data) > MAX_RECEIPT_BYTES + 8 * MAX_OUTPUT_TOKENS:
        raise ReceiptRejected("too_large", f"a receipt is at most {MAX_RECEIPT_BYTES} bytes")
    try:
        value = json.loads(data, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as error:
        raise ReceiptRejected("not_json", f"not a JSON receipt: {error}") from None
    if not isinstance(value, dict):
        raise ReceiptRejected("malformed", "a receipt is a JSON object")
    return value


def from_carrier(value: object) -> tuple[dict[str, Any], list[int] | None]:
    """(receipt, output token ids or None) from a carrier or a bare receipt; checks shapes only."""
    if not isinstance(value, dict):
        raise ReceiptRejected("malformed", "a receipt carrier is a JSON object")
    if "receipt" not in value:
        return value, None
    if set(value) - {"receipt", "output_tokens"}:
        raise ReceiptRejected("malformed", "a carrier holds only 'receipt' and 'output_tokens'")
    tokens = value.get("output_tokens")
    if tokens is not None and (
        not isinstance(tokens, list)
        or len(tokens) > MAX_OUTPUT_TOKENS
        or not all(type(t) is int and 0 <= t < 1 << 31 for t in tokens)
    ):
        raise ReceiptRejected("malformed", "output_tokens must be a list of token ids")
    receipt = value["receipt"]
    if not isinstance(receipt, dict):
        raise ReceiptRejected("malformed", "a receipt is a JSON object")
    return receipt, tokens


def check_signature(receipt: object) -> dict[str, Any]:
    """``receipt`` if it is well formed and signed by its issuer; ReceiptRejected otherwise.

    Sizes and field types are checked before the signature (and before anything is trusted)."""
    if not isinstance(receipt, dict):
        raise ReceiptRejected("malformed", "a receipt is a JSON object")
    try:
        size = len(canonical_json(receipt))
    except (ValueError, TypeError, RecursionError) as error:
        raise ReceiptRejected("malformed", f"the receipt has no RFC 8785 form: {error}") from None
    if size > MAX_RECEIPT_BYTES:
        raise ReceiptRejected("too_large", f"a receipt is at most {MAX_RECEIPT_BYTES} bytes")
    body = {k: v for k, v in receipt.items() if k != "signatures"}
    _check_shape(body, _shape_of(body))
    signatures = receipt.get("signatures")
    if not isinstance(signatures, list) or len(signatures) != 1:
        raise ReceiptRejected("malformed", "a receipt carries exactly one signature")
    try:
        signer = verify_json(receipt, signatures[0])
    except JWSRejected as rejected:
        raise ReceiptRejected(
            "signature_invalid", f"the signature does not hold ({rejected.reason}): {rejected}"
        ) from None
    if signer != receipt["issuer"]:
        raise ReceiptRejected(
            "wrong_signer", f"signed by {signer}, but the receipt names {receipt['issuer']}"
        )
    return receipt


def check_output_tokens(receipt: dict[str, Any], tokens: list[int], salt: bytes = b"") -> None:
    """ReceiptRejected unless ``tokens`` are the output the receipt hashes."""
    output = receipt["output"]
    if len(tokens) != output["tokens"] or token_sha256(tokens, salt) != output["sha256"]:
        raise ReceiptRejected(
            "output_tokens_differ", "the output token ids given do not hash to the receipt's"
        )


def _str(pattern: re.Pattern[str] | None = None, max_len: int = 512) -> Any:
    def check(value: object) -> bool:
        return (
            isinstance(value, str)
            and len(value) <= max_len
            and (pattern is None or pattern.fullmatch(value) is not None)
        )

    return check


def _int(low: int, high: int) -> Any:
    return lambda value: type(value) is int and low <= value <= high


def _num(low: float, high: float) -> Any:
    return lambda value: type(value) in (int, float) and low <= value <= high


_SHAPE: dict[str, Any] = {
    "type": lambda v: v == RECEIPT_TYPE,
    "issuer": _str(_DID),
    "requester": _str(_DID),
    "nonce": _str(_NONCE),
    "issued_at": _int(0, 1 << 40),
    "model": {"sha256": _str(_HEX64), "chat_template_sha256": _str(_HEX64)},
    "runtime": {
        "llama_cpp_python": _str(max_len=64),
        "llama_cpp_build_sha256": _str(_HEX64),
        "system_info": _str(max_len=1024),
    },
    "settings": {
        "backend": lambda v: v in ("cpu", "gpu"),
        "n_ctx": _int(1, 1 << 24),
        "n_batch": _int(1, 1 << 24),
        "n_ubatch": _int(1, 1 << 24),
        "n_threads": _int(1, 4096),
        "n_threads_batch": _int(1, 4096),
        "n_gpu_layers": _int(-1, 100_000),
        "type_k": _int(0, 1000),
        "type_v": _int(0, 1000),
        "flash_attn": _int(-1, 10),
    },
    "sampler": {
        "chain": lambda v: (
            isinstance(v, list)
            and len(v) <= 16
            and all(isinstance(s, str) and len(s) <= 32 for s in v)
        ),
        "temperature": _num(0, 100),
        "top_k": _int(0, 1 << 31),
        "top_p": _num(0, 1),
        "min_p": _num(0, 1),
        "typical_p": _num(0, 1),
        "repeat_penalty": _num(0, 100),
        "frequency_penalty": _num(-100, 100),
        "presence_penalty": _num(-100, 100),
        "penalty_last_n": _int(-1, 1 << 20),
        "seed": _int(0, (1 << 32) - 1),
    },
    "prompt": {"tokens": _int(1, 1 << 24), "sha256": _str(_HEX64)},
    "output": {
        "tokens": _int(0, MAX_OUTPUT_TOKENS),
        "sha256": _str(_HEX64),
        "finish_reason": lambda v: v in ("stop", "length"),
    },
    "timings": {"prompt_us": _int(0, 1 << 50), "generate_us": _int(0, 1 << 50)},
}


_DATA_ANSWER_SHAPE: dict[str, Any] = {**_SHAPE, "answer": {"sha256": _str(_HEX64)}}


def _shape_of(receipt: dict[str, Any]) -> dict[str, Any]:
    return _DATA_ANSWER_SHAPE if "answer" in receipt else _SHAPE


def _check_shape(receipt: dict[str, Any], shape: dict[str, Any] = _SHAPE, at: str = "") -> None:
    extra, missing = set(receipt) - set(shape), set(shape) - set(receipt)
    if extra or missing:
        raise ReceiptRejected(
            "malformed",
            f"receipt{at}: "
            + "; ".join(
                part
                for part in (
                    f"unknown fields {sorted(extra)}" if extra else "",
                    f"missing fields {sorted(missing)}" if missing else "",
                )
                if part
            ),
        )
    for name, check in shape.items():
        value = receipt[name]
        if isinstance(check, dict):
            if not isinstance(value, dict):
                raise ReceiptRejected("malformed", f"receipt{at}.{name} must be an object")
            _check_shape(value, check, f"{at}.{name}")
        elif not check(value):
            raise ReceiptRejected("malformed", f"receipt{at}.{name} has a bad value: {value!r:.80}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError("duplicate member names")
    return dict(pairs)


# --- verifying by re-execution ----------------------------------------------------------------


def differences(receipt: dict[str, Any], model: ChatModel) -> list[str]:
    """The settings this node cannot adopt that differ from the receipt's ("settings.backend")."""
    here: dict[str, dict[str, Any]] = {"runtime": runtime_build(), "settings": model.settings()}
    out = []
    for dotted in UNREPRODUCIBLE:
        part, name = dotted.split(".")
        if receipt[part][name] != here[part][name]:
            out.append(dotted)
    return out


def replay_model(receipt: dict[str, Any], model: ChatModel) -> ChatModel:
    """``model`` when its settings are the receipt's, else the same file opened with the
    receipt's n_ctx, n_batch, n_ubatch and n_threads (each within MAX_REPLAY)."""
    wanted = receipt["settings"]
    mine = model.settings()
    names = ("n_ctx", "n_batch", "n_ubatch", "n_threads")
    if all(wanted[n] == mine[n] for n in names):
        return model
    over = [n for n in names if wanted[n] > MAX_REPLAY[n]]
    if over:
        raise ReceiptRejected(
            "malformed", f"the receipt's {', '.join(over)} exceed what this node replays"
        )
    return ChatModel(
        model.path,
        n_ctx=wanted["n_ctx"],
        n_threads=wanted["n_threads"],
        n_batch=wanted["n_batch"],
        n_ubatch=wanted["n_ubatch"],
        n_gpu_layers=0 if wanted["backend"] == "cpu" else None,
    )


def verify(
    receipt: object,
    model: ChatModel,
    prompt: list[int] | list[dict],
    output_tokens: list[int] | None = None,
    *,
    fast: bool = False,
    salt: bytes = b"",
) -> Verdict:
    """Check ``receipt``'s signature, then its claim: re-execute ``prompt`` (token ids, or the
    chat messages the requester sent) on ``model`` and compare the output tokens.

    With ``fast`` (greedy receipts, ``output_tokens`` given), one prefill over prompt + output
    instead; a token it cannot pass is settled by re-execution (``FAST_TOLERANCE``). Raises ReceiptRejected when the receipt itself does not hold (signature, shape,
    output tokens that are not the ones it hashes).

    A data answer's receipt (``is_data_answer``) replays only with its ``salt`` and the exact
    prompt tokens, which its issuer keeps (``keep_issued``); anyone else gets *inconclusive*."""
    started = time.perf_counter()
    checked = check_signature(receipt)
    if is_data_answer(checked) and not salt:
        return private_prompt_verdict()
    if output_tokens is not None:
        check_output_tokens(checked, output_tokens, salt)
    verdict = _verify(checked, model, prompt, output_tokens, fast, salt)
    verdict.seconds = time.perf_counter() - started
    return verdict


def private_prompt_verdict() -> Verdict:
    """The verdict on a data answer's receipt (its signature checked) for anyone but its issuer."""
    return Verdict(
        "inconclusive",
        "the signature holds, but this is an answer from the issuer's data: its prompt "
        "(the owner's notes) is private, so only the issuer can re-execute it",
        differences=["prompt"],
    )


def _verify(
    receipt: dict[str, Any],
    model: ChatModel,
    prompt: list[int] | list[dict],
    output_tokens: list[int] | None,
    fast: bool,
    salt: bytes = b"",
) -> Verdict:
    if receipt["model"]["sha256"] != model.model_sha256:
        return Verdict("inconclusive", "this node has another model file", differences=["model"])
    if prompt and isinstance(prompt[0], dict):
        if receipt["model"]["chat_template_sha256"] != model.chat_template_sha256:
            return Verdict(
                "inconclusive",
                "the chat template differs",
                differences=["model.chat_template_sha256"],
            )
        tokens = model.prompt_tokens([m for m in prompt if isinstance(m, dict)])
    else:
        tokens = [t for t in prompt if isinstance(t, int)]
    if (
        len(tokens) != receipt["prompt"]["tokens"]
        or token_sha256(tokens, salt) != receipt["prompt"]["sha256"]
    ):
        # Not a mismatch: an answer from data keeps its prompt (the owner's notes) private, so
        # the requester's own question is not what was run; nothing can be said of the output.
        return Verdict(
            "inconclusive",
            "the prompt given is not the one the receipt hashes (an answer from a peer's data "
            "keeps its prompt private; for an infer job, pass the exact messages sent)",
            differences=["prompt"],
        )
    unreproducible = differences(receipt, model)
    replay = replay_model(receipt, model)
    sampler = Sampler(**{k: v for k, v in receipt["sampler"].items() if k != "chain"})
    if sampler.chain != receipt["sampler"]["chain"]:
        return Verdict("inconclusive", "the receipt's sampler chain is not one this node runs")
    if fast and sampler.greedy and output_tokens:
        screened = _fast(replay, tokens, output_tokens, sampler, unreproducible)
        if screened.verdict == "verified" or unreproducible:
            return screened
        # A token further below the model's choice than a prefill's rounding explains: only
        # re-execution may call it a mismatch (bench_receipts saw honest gaps up to ~0.5).
        settled = _verify(receipt, model, prompt, output_tokens, False, salt)
        settled.method = "fast, then re-execution"
        return settled
    replayed, _, _ = replay.run_tokens(
        tokens, max_tokens=receipt["output"]["tokens"], sampler=sampler
    )
    if token_sha256(replayed, salt) == receipt["output"]["sha256"]:
        return Verdict(
            "verified", "re-execution gave the same output tokens", differences=unreproducible
        )
    first = _first_difference(output_tokens, replayed)
    if unreproducible:
        return Verdict(
            "inconclusive",
            "re-execution differs, but so does this node's build or backend",
            first_difference=first,
            differences=unreproducible,
        )
    return Verdict(
        "mismatch", "re-execution on the same model and settings gave other tokens", first
    )


def _fast(
    model: ChatModel,
    prompt: list[int],
    output: list[int],
    sampler: Sampler,
    unreproducible: list[str],
) -> Verdict:
    picks = model.prefill_check(prompt, output, sampler)
    off = [(i, best, gap) for i, (best, gap) in enumerate(picks) if best != output[i]]
    if not off:
        return Verdict(
            "verified",
            "every output token is the model's first choice",
            differences=unreproducible,
            method="fast",
        )
    far = [o for o in off if o[2] > FAST_TOLERANCE]
    i, best, gap = (far or off)[0]
    first = {"index": i, "receipt_token": output[i], "replay_token": best}
    if not far:
        # A prefill does the sums in another order than one token at a time: near ties flip.
        return Verdict(
            "verified",
            f"every output token is the model's choice or within {FAST_TOLERANCE} logits of it"
            f" ({len(off)} near tie(s))",
            differences=unreproducible,
            method="fast",
        )
    return Verdict(
        "inconclusive",
        f"output token {i} is {gap:.2f} logits below the model's choice in one prefill",
        first,
        differences=unreproducible,
        method="fast",
    )


def _first_difference(
    receipt_tokens: list[int] | None, replayed: list[int]
) -> dict[str, int] | None:
    if receipt_tokens is None:
        return None
    for i in range(max(len(receipt_tokens), len(replayed))):
        a = receipt_tokens[i] if i < len(receipt_tokens) else -1
        b = replayed[i] if i < len(replayed) else -1
        if a != b:
            return {"index": i, "receipt_token": a, "replay_token": b}
    return None


# --- the requester's store -------------------------------------------------------------------


def store_receipt(
    records: Records,
    receipt: dict[str, Any],
    output_tokens: list[int] | None,
    *,
    peer: str,
    messages: list[dict] | None = None,
    answer: str = "",
) -> str:
    """Keep a peer's receipt (checked first), sealed, with what is needed to verify it later:
    the output token ids and the messages this node sent. Returns its id."""
    checked = check_signature(receipt)
    if output_tokens is not None:
        check_output_tokens(checked, output_tokens)
    rid = receipt_id(checked)
    records.put_record(
        RECEIPT_KIND,
        rid,
        {
            "receipt": checked,
            "output_tokens": output_tokens,
            "peer": peer,
            "messages": messages,
            "answer": answer,
            "received_at": time.time(),
            "verdict": None,
        },
    )
    return rid


def accept(
    records: Records,
    carrier_text: str,
    *,
    issuer: str,
    requester: str,
    messages: list[dict] | None,
    answer: str,
) -> str:
    """Keep the receipt that came with a peer's answer (``carrier`` text); its id.

    Refused (ReceiptRejected, nothing stored) unless it parses within the limits, is signed
    by ``issuer`` (the peer this node asked) and made out to ``requester`` (this node)."""
    receipt, output_tokens = from_carrier(parse(carrier_text))
    checked = check_signature(receipt)
    if checked["issuer"] != issuer:
        raise ReceiptRejected(
            "wrong_signer", f"the receipt is {checked['issuer']}'s, not the peer's ({issuer})"
        )
    if checked["requester"] != requester:
        raise ReceiptRejected(
            "wrong_requester", f"the receipt is made out to {checked['requester']}, not this node"
        )
    if is_data_answer(checked) and checked["answer"]["sha256"] != answer_sha256(answer):
        raise ReceiptRejected(
            "answer_differs", "the receipt signs another answer than the one received"
        )
    return store_receipt(
        records, checked, output_tokens, peer=issuer, messages=messages, answer=answer
    )


def find_receipt(records: Records, ref: str) -> tuple[str, dict[str, Any]] | None:
    """The stored receipt whose id is ``ref`` or starts with it (8 characters or more)."""
    if len(ref) < 8:
        return None
    found = [(k, v) for k, v in records.records(RECEIPT_KIND) if k.startswith(ref.lower())]
    return found[0] if len(found) == 1 else None


def read_prompt(path: Path) -> list[int] | list[dict]:
    """A prompt file for ``flurry receipts verify --prompt``: a JSON list of token ids, a JSON
    list of chat messages, or plain text (one user message)."""
    data = path.read_bytes()
    if len(data) > 4 * 1024 * 1024:
        raise ReceiptRejected("too_large", f"{path} is over 4 MiB: not a prompt")
    text = data.decode("utf-8", errors="replace")
    try:
        value = json.loads(text)
    except ValueError:
        return [{"role": "user", "content": text}]
    if isinstance(value, list) and all(type(t) is int for t in value):
        return value
    if isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value
    ):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    return [{"role": "user", "content": text}]
