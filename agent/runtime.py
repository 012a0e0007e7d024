"""The chat model: one llama.cpp context, streamed, with its KV cache reused across turns.

llama-cpp-python compares each new prompt with the tokens already in the context and
evaluates only the part after the longest shared prefix. A conversation whose history is
rendered the same way every turn therefore pays only for its newest turn; the prompt
builder (``agent.answer``) keeps the history stable so that this happens.

A llama.cpp context is not safe across threads: callers serialise model work (the node
owns one ChatModel and one queue).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import llama_cpp

from agent.errors import AgentError


class ThreadsError(AgentError, ValueError):
    """FLURRY_THREADS is set to something that is not a positive whole number."""


def default_threads() -> int:
    """FLURRY_THREADS when set, else the cores this process may run on (a container's limit,
    not the host's count).

    The thread count is a setting that changes results: llama.cpp splits its sums across
    threads, so greedy decoding of the same prompt can pick another token with another count
    (as it can with another instruction set, AVX2 vs AVX-512). FLURRY_THREADS pins it, e.g. to
    reproduce an answer or to run the tests the way another machine does."""
    pinned = os.environ.get("FLURRY_THREADS", "").strip()
    if pinned:
        if not pinned.isdigit() or int(pinned) < 1:
            raise ThreadsError(
                f"FLURRY_THREADS must be a whole number of threads, 1 or more, not {pinned!r}"
            )
        return int(pinned)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_gpu_layers() -> int:
    """Every layer on the GPU when this llama.cpp build can offload, none otherwise."""
    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


def llama_messages(messages: list[dict]) -> list[llama_cpp.ChatCompletionRequestMessage]:
    """``messages`` as llama_cpp types them. Ours are plain {"role", "content"} dicts (built in
    agent.answer and agent.tools), the shape of llama_cpp's TypedDicts, which a dict cannot be
    proven to have; llama_cpp reads them as dicts."""
    return cast(list[llama_cpp.ChatCompletionRequestMessage], messages)


class ChatModel:
    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int | None = None,
        seed: int = 0,
    ) -> None:
        self.path = path
        self.n_gpu_layers = default_gpu_layers() if n_gpu_layers is None else n_gpu_layers
        self.n_threads = n_threads or default_threads()
        self._llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads,
            n_gpu_layers=self.n_gpu_layers,
            seed=seed,
            verbose=False,  # also silences llama.cpp's own logging on stderr
        )
        self.n_ctx = self._llm.n_ctx()
        # llama.cpp's own counters for the last reply: prompt tokens it had to read (the rest
        # came from the KV cache) and tokens it generated.
        self.last_prompt_tokens_read = 0
        self.last_tokens_generated = 0
        # Why the last reply ended, as llama.cpp says it: "stop" (end of turn) or "length" (max_tokens).
        self.last_finish_reason: str | None = None

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode(), add_bos=False, special=True))

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        repeat_penalty: float = 1.1,
    ) -> Iterator[str]:
        """The reply to ``messages``, piece by piece as it is generated."""
        llama_cpp.llama_perf_context_reset(self._llm.ctx)
        self.last_finish_reason = None
        chunks = self._llm.create_chat_completion(
            llama_messages(messages),
            stream=True,
            max_tokens=max_tokens,
            temperature=temperature,
            repeat_penalty=repeat_penalty,
        )
        # llama_cpp types the result as either shape whatever `stream` is: streamed, it is this.
        for chunk in cast(Iterator[llama_cpp.CreateChatCompletionStreamResponse], chunks):
            choice = chunk["choices"][0]
            self.last_finish_reason = choice.get("finish_reason") or self.last_finish_reason
            # A delta is typed as one of two TypedDicts, one of them empty (no content at all).
            piece = choice["delta"].get("content")
            if isinstance(piece, str) and piece:
                yield piece
        perf = llama_cpp.llama_perf_context(self._llm.ctx)
        self.last_prompt_tokens_read = perf.n_p_eval
        self.last_tokens_generated = perf.n_eval

    def complete(self, messages: list[dict], *, schema: dict, max_tokens: int) -> str:
        """The whole reply to ``messages``, decoded greedily under the grammar llama.cpp makes
        from the JSON Schema ``schema``: whatever the model prefers, it can write only JSON of
        that shape (see ``agent.tools``)."""
        grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        reply = self._llm.create_chat_completion(
            llama_messages(messages), grammar=grammar, temperature=0.0, max_tokens=max_tokens
        )
        # llama_cpp types the result as either shape whatever `stream` is: not streamed, it is this.
        reply = cast(llama_cpp.CreateChatCompletionResponse, reply)
        return reply["choices"][0]["message"]["content"] or ""

    def tokens_in_context(self) -> int:
        """How many tokens the context holds now (what the next prompt may reuse)."""
        return self._llm.n_tokens
