"""One model run, recorded exactly: what a receipt (agent.receipts) is made from and checked against.

A ``Generation`` holds everything that decides which tokens a llama.cpp run produces — the
model file's sha256, the llama.cpp build, the context settings, the sampler chain with its
seed, the chat template's sha256 — and what it produced: the exact prompt and output token
ids, why it stopped, how long it took. ``agent.runtime.ChatModel.generate_recorded`` makes
one; this module only describes it, so that ``agent.receipts`` and ``agent.runtime`` share
the shape without importing each other.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import asdict, dataclass, field
from typing import Any


def token_sha256(tokens: list[int] | tuple[int, ...], salt: bytes = b"") -> str:
    """sha256 of ``salt`` then the token ids written as 32-bit little-endian unsigned integers,
    one after another. A salt (kept by the issuer) makes the hash of a private prompt a
    commitment: nobody can test a guess of the owner's notes against it."""
    return hashlib.sha256(salt + struct.pack(f"<{len(tokens)}I", *tokens)).hexdigest()


def answer_sha256(text: str) -> str:
    """sha256 of an answer's text as sent (UTF-8, surrounding white space stripped: the A2A
    artifact and the Nostr message both carry it stripped)."""
    return hashlib.sha256(text.strip().encode()).hexdigest()


@dataclass(frozen=True)
class Sampler:
    """The sampler chain llama-cpp-python builds (``Llama._init_sampler``), with its parameters.

    Temperature 0 is greedy: penalties, then the most likely token (the first one on a tie).
    Above 0: penalties, top-k, typical, top-p, min-p, temperature, then a draw seeded by ``seed``.
    Penalties count only generated tokens, the last ``penalty_last_n`` of them."""

    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_last_n: int = 64
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def chain(self) -> list[str]:
        if self.greedy:
            return ["penalties", "greedy"]
        return ["penalties", "top_k", "typical", "top_p", "min_p", "temperature", "dist"]

    def as_dict(self) -> dict[str, Any]:
        return {"chain": self.chain, **asdict(self)}


@dataclass(frozen=True)
class Generation:
    model_sha256: str  # the GGUF file's
    chat_template_sha256: str  # of the GGUF's tokenizer.chat_template, UTF-8
    runtime: dict[str, Any]  # llama_cpp_python version, llama.cpp build hash, CPU features, backend
    settings: dict[str, Any]  # n_ctx, n_batch, n_ubatch, n_threads, n_gpu_layers, KV types, …
    sampler: Sampler
    prompt_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]  # the end-of-generation token included, when there was one
    finish_reason: str  # "stop" (an end-of-generation token) or "length" (max_tokens)
    timings: dict[str, int] = field(default_factory=dict)  # prompt_us, generate_us
