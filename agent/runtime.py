"""The chat model: one llama.cpp context, streamed, with its KV cache reused across turns.

llama-cpp-python compares each new prompt with the tokens already in the context and
evaluates only the part after the longest shared prefix. A conversation whose history is
rendered the same way every turn therefore pays only for its newest turn; the prompt
builder (``agent.answer``) keeps the history stable so that this happens.

A llama.cpp context is not safe across threads: callers serialise model work (the node
owns one ChatModel and one queue). Between two tokens a peer's reply makes way for the
owner's jobs (``agent.queue.make_way``): its place is the KV cells of sequence 0, the tokens
they hold and its sampler, copied out and back in a few milliseconds (``_Place``).
"""

from __future__ import annotations

import codecs
import ctypes
import functools
import hashlib
import json
import os
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import llama_cpp
import numpy as np
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from agent.errors import AgentError
from agent.generation import Generation, Sampler
from agent.llama_loading import load_llama
from agent.models import sha256_file
from agent.queue import make_way


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


@functools.cache
def runtime_build() -> dict[str, str]:
    """What identifies this llama.cpp build: the llama-cpp-python version, the sha256 of its
    shared libraries (the vendored llama.cpp and ggml, as compiled here) and the CPU features
    it uses. Two builds with equal hashes do the same arithmetic on the same CPU features."""
    lib = Path(llama_cpp.__file__).parent / "lib"
    digest = hashlib.sha256()
    for path in sorted(lib.glob("*")):
        if path.is_file() and not path.is_symlink():
            digest.update(path.name.encode() + b"\0" + sha256_file(path).encode() + b"\n")
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp_build_sha256": digest.hexdigest(),
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
    }


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
        n_batch: int = 512,
        n_ubatch: int = 512,
    ) -> None:
        self.path = path
        self.n_gpu_layers = default_gpu_layers() if n_gpu_layers is None else n_gpu_layers
        self.n_threads = n_threads or default_threads()
        self._llm = load_llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads,
            n_gpu_layers=self.n_gpu_layers,
            seed=seed,
            n_batch=n_batch,
            n_ubatch=n_ubatch,
            verbose=False,  # also silences llama.cpp's own logging on stderr
        )
        self.n_ctx = self._llm.n_ctx()
        # The last reply's counts, as llama.cpp's perf counters give them: prompt tokens it had
        # to read (the rest came from the KV cache) and tokens it generated. Counted here, per
        # reply, so that an owner's reply run while a peer's made way counts apart (_eval).
        self.last_prompt_tokens_read = 0
        self.last_tokens_generated = 0
        self._counts = [0, 0]  # the running reply's: tokens read in batches, one-token decodes
        self._llm.eval = self._eval  # type: ignore[method-assign]  # llama_cpp calls self.eval
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
        self.last_finish_reason = finish = None
        counts = self._counts = [0, 0]

        def resume(place: _Place) -> None:
            place.restore(self._llm)
            self._counts = counts  # the owner's replies counted theirs apart

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
            finish = choice.get("finish_reason") or finish
            # A delta is typed as one of two TypedDicts, one of them empty (no content at all).
            piece = choice["delta"].get("content")
            if isinstance(piece, str) and piece:
                yield piece
            # llama.cpp's generator waits at a token boundary: the owner's work may run now.
            make_way(lambda: _Place.save(self._llm), resume)
        self.last_finish_reason = finish
        # At least 1 each, as llama_perf_context says them (it reports max(1, n)).
        self.last_prompt_tokens_read = max(1, counts[0])
        self.last_tokens_generated = max(1, counts[1])

    def _eval(self, tokens) -> None:
        """``Llama.eval``, counting what it decodes the way llama.cpp's perf counters do: a
        decode of one token is a generated token, a larger one reads that many prompt tokens."""
        llm = self._llm
        for start in range(0, len(tokens), llm.n_batch):  # the decode calls Llama.eval makes
            n = len(tokens[start : start + llm.n_batch])
            self._counts[0 if n > 1 else 1] += n
        llama_cpp.Llama.eval(llm, tokens)

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

    # --- token-exact generation, for receipts (agent.generation, agent.receipts) ----------

    @functools.cached_property
    def model_sha256(self) -> str:
        return sha256_file(self.path.resolve())

    @functools.cached_property
    def _chat_template(self) -> str:
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise AgentError(f"{self.path.name} carries no chat template (tokenizer.chat_template)")
        return template

    @property
    def chat_template_sha256(self) -> str:
        return hashlib.sha256(self._chat_template.encode()).hexdigest()

    @functools.cached_property
    def _chat_formatter(self) -> Jinja2ChatFormatter:
        # Compiled once: every metered request (node.infer) tokenizes its prompt with it.
        model = self._llm._model  # llama-cpp-python builds its own formatter the same way
        eos, bos = self._llm.token_eos(), self._llm.token_bos()
        return Jinja2ChatFormatter(
            template=self._chat_template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )

    def prompt_tokens(self, messages: list[dict]) -> list[int]:
        """The exact tokens ``messages`` become under the GGUF's own chat template, with the
        assistant's turn opened (what ``generate_recorded`` and node.infer feed the model)."""
        result = self._chat_formatter(messages=llama_messages(messages))
        return self._llm.tokenize(
            result.prompt.encode(), add_bos=not result.added_special, special=True
        )

    def settings(self) -> dict[str, int | str]:
        """The context settings that may change which tokens come out (agent.receipts says
        which ones were measured to)."""
        params = self._llm.context_params
        offloaded = self.n_gpu_layers != 0 and llama_cpp.llama_supports_gpu_offload()
        return {
            "backend": "gpu" if offloaded else "cpu",
            "n_ctx": int(params.n_ctx),
            "n_batch": int(params.n_batch),
            "n_ubatch": int(params.n_ubatch),
            "n_threads": int(params.n_threads),
            "n_threads_batch": int(params.n_threads_batch),
            "n_gpu_layers": self.n_gpu_layers,
            "type_k": int(params.type_k),
            "type_v": int(params.type_v),
            "flash_attn": int(params.flash_attn_type),
        }

    def generate_recorded(
        self, messages: list[dict], *, max_tokens: int = 256, sampler: Sampler | None = None
    ) -> tuple[str, Generation]:
        """The reply to ``messages`` and the exact record of how it was made (agent.generation).

        Greedy unless ``sampler`` says otherwise. The prompt is evaluated from an empty context
        (no KV reuse), in ``n_batch`` pieces, then one token at a time: re-executing the record
        with the same settings does the same arithmetic."""
        sampler = sampler or Sampler()
        prompt = self.prompt_tokens(messages)
        output, finish, timings = self.run_tokens(prompt, max_tokens=max_tokens, sampler=sampler)
        generation = Generation(
            model_sha256=self.model_sha256,
            chat_template_sha256=self.chat_template_sha256,
            runtime=runtime_build(),
            settings=self.settings(),
            sampler=sampler,
            prompt_tokens=tuple(prompt),
            output_tokens=tuple(output),
            finish_reason=finish,
            timings=timings,
        )
        return self.detokenize(output), generation

    def detokenize(self, tokens: list[int] | tuple[int, ...]) -> str:
        """The text of output tokens, an end-of-generation token left out."""
        vocab = self._llm._model.vocab
        kept = [t for t in tokens if not llama_cpp.llama_vocab_is_eog(vocab, t)]
        return self._llm.detokenize(kept).decode("utf-8", errors="replace")

    def run_tokens(
        self, prompt: list[int] | tuple[int, ...], *, max_tokens: int, sampler: Sampler
    ) -> tuple[list[int], str, dict[str, int]]:
        """(output tokens, finish reason, timings in µs) of ``prompt`` from an empty context,
        sampled by llama-cpp-python's own chain (``Llama._init_sampler``) with ``sampler``."""
        run = _TokenRun(self, prompt, max_tokens, sampler)
        output = list(run)
        return output, run.finish, run.timings

    def stream_recorded(
        self, messages: list[dict], *, max_tokens: int = 256, sampler: Sampler | None = None
    ) -> RecordedReply:
        """The reply to ``messages`` piece by piece, made exactly as ``generate_recorded``
        makes it (so that a receipt can be re-executed), its ``generation`` kept when it ends
        or is closed early (then the output is what was generated: a replay with that many
        tokens gives the same). A peer's answer: between two tokens, the owner's waiting work
        runs (``step_aside``)."""
        sampler = sampler or Sampler()
        return RecordedReply(self, self.prompt_tokens(messages), max_tokens, sampler)

    def prefill_check(
        self,
        prompt: list[int] | tuple[int, ...],
        output: list[int] | tuple[int, ...],
        sampler: Sampler,
    ) -> list[tuple[int, float]]:
        """One prefill over ``prompt`` + ``output``: for each output position, (the token greedy
        decoding picks there, how far the logit of ``output``'s token falls below that one's).

        The penalties of ``sampler`` are applied as llama.cpp's penalties sampler does (over
        the generated tokens before the position). Greedy samplers only."""
        llm = self._llm
        if not sampler.greedy:
            raise AgentError("the prefill check is for greedy generations")
        if not prompt or not output or len(prompt) + len(output) > self.n_ctx:
            raise AgentError("the prompt and output do not fit this model's context")
        sequence = list(prompt) + list(output[:-1])
        first_row = len(prompt) - 1  # the logits at this position gave output[0]
        llm.reset()
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        rows: list[np.ndarray] = []
        batch, n_vocab = llm._batch, llm.n_vocab()
        try:
            for start in range(0, len(sequence), llm.n_batch):
                piece = sequence[start : start + llm.n_batch]
                batch.set_batch(piece, n_past=start, logits_all=False)
                wanted = 0
                for i in range(len(piece)):
                    batch.batch.logits[i] = start + i >= first_row
                    wanted += start + i >= first_row
                llm._ctx.decode(batch)
                if wanted:
                    logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(wanted * n_vocab,))
                    rows.extend(logits.reshape(wanted, n_vocab).copy())
        finally:
            llm.reset()
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        picks = []
        for j, row in enumerate(rows):
            row = _penalised(row, list(output[max(0, j - sampler.penalty_last_n) : j]), sampler)
            best = int(np.argmax(row))  # the first maximum, as llama.cpp's greedy sampler takes
            picks.append((best, float(row[best] - row[output[j]])))
        return picks

    @property
    def llama(self) -> llama_cpp.Llama:
        return self._llm


class _TokenRun:
    """The tokens of ``prompt`` from an empty context, one at a time: what ``run_tokens`` and
    ``RecordedReply`` share, so that a streamed answer and its re-execution do the same sums.
    ``between`` (if given) runs after each token is chosen and before it is evaluated: the
    context's logits are not read again until the token is, so the owner's work may use the
    model there (``step_aside``)."""

    def __init__(
        self,
        model: ChatModel,
        prompt: list[int] | tuple[int, ...],
        max_tokens: int,
        sampler: Sampler,
        between: Any = None,
    ) -> None:
        if not prompt or len(prompt) + max_tokens > model.n_ctx:
            raise AgentError(
                f"{len(prompt)} prompt tokens + {max_tokens} to generate do not fit "
                f"the {model.n_ctx}-token context"
            )
        self.model, self.prompt, self.max_tokens = model, list(prompt), max_tokens
        self.sampler, self.between = sampler, between
        self.finish = "length"
        self.timings: dict[str, int] = {"prompt_us": 0, "generate_us": 0}

    def __iter__(self) -> Iterator[int]:
        llm, sampler = self.model.llama, self.sampler
        saved_seed, saved_window = llm._seed, llm.last_n_tokens_size
        llm.set_seed(sampler.seed)
        llm.last_n_tokens_size = sampler.penalty_last_n
        try:
            chain = llm._init_sampler(
                top_k=sampler.top_k,
                top_p=sampler.top_p,
                min_p=sampler.min_p,
                typical_p=sampler.typical_p,
                temp=sampler.temperature,
                repeat_penalty=sampler.repeat_penalty,
                frequency_penalty=sampler.frequency_penalty,
                presence_penalty=sampler.presence_penalty,
            )
        finally:
            llm.set_seed(saved_seed)
            llm.last_n_tokens_size = saved_window
        vocab = llm._model.vocab
        llm.reset()
        started = time.perf_counter()
        llm.eval(self.prompt)
        prefilled = time.perf_counter()
        self.timings["prompt_us"] = round((prefilled - started) * 1e6)
        count = 0
        try:
            while count < self.max_tokens:
                token = chain.sample(llm._ctx, -1)
                count += 1
                yield token
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    self.finish = "stop"
                    break
                if count < self.max_tokens:
                    if self.between is not None:
                        self.between(llm)
                    llm.eval([token])
        finally:
            self.timings["generate_us"] = round((time.perf_counter() - prefilled) * 1e6)


class RecordedReply:
    """``ChatModel.stream_recorded``'s reply: iterate for the text pieces; ``generation`` is
    the exact record once the iteration ended or ``close`` was called."""

    def __init__(
        self, model: ChatModel, prompt: list[int], max_tokens: int, sampler: Sampler
    ) -> None:
        self._model = model
        self._run = _TokenRun(model, prompt, max_tokens, sampler, between=step_aside)
        self._output: list[int] = []
        self._pieces = self._generate()
        self.generation: Generation | None = None

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def close(self) -> None:
        self._pieces.close()

    def _generate(self) -> Generator[str, None, None]:
        model, run = self._model, self._run
        vocab = model.llama._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            for token in run:
                self._output.append(token)
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    break
                piece = decoder.decode(
                    model.llama.detokenize([token], prev_tokens=run.prompt + self._output[:-1])
                )
                if piece:
                    yield piece
            if tail := decoder.decode(b"", final=True):
                yield tail
        finally:
            self.generation = Generation(
                model_sha256=model.model_sha256,
                chat_template_sha256=model.chat_template_sha256,
                runtime=runtime_build(),
                settings=model.settings(),
                sampler=run.sampler,
                prompt_tokens=tuple(run.prompt),
                output_tokens=tuple(self._output),
                finish_reason=run.finish,
                timings=dict(run.timings),
            )


def _penalised(row: np.ndarray, window: list[int], sampler: Sampler) -> np.ndarray:
    """``row`` as llama.cpp's penalties sampler leaves it, ``window`` the tokens it counts."""
    neutral = (
        sampler.repeat_penalty == 1.0
        and sampler.frequency_penalty == 0.0
        and sampler.presence_penalty == 0.0
    )
    if neutral or not window:
        return row
    row = row.copy()
    counts: dict[int, int] = {}
    for token in window:
        counts[token] = counts.get(token, 0) + 1
    repeat = np.float32(sampler.repeat_penalty)
    for token, count in counts.items():
        logit = row[token]
        logit = logit * repeat if logit <= 0 else logit / repeat
        logit -= np.float32(count * sampler.frequency_penalty + sampler.presence_penalty)
        row[token] = logit
    return row


def step_aside(llm: llama_cpp.Llama) -> bool:
    """Between two tokens of a generation run on ``llm`` outside ``ChatModel.stream`` (a peer's
    metered ``infer`` job, node.infer): let waiting owner work run, this generation's place
    saved and put back (``agent.queue.make_way``). True when it made way."""
    return make_way(lambda: _Place.save(llm), lambda place: place.restore(llm))


@dataclass
class _Place:
    """Where a paused generation was: the KV cells of its sequence, the tokens they hold and
    its sampler (whose penalties remember the tokens it chose).

    Measured on the default model with 371 tokens in context, one thread (bench_fairness): 1-2
    ms to save (8.6 MB) and 4-6 ms to restore, where ``Llama.save_state``/``load_state`` take
    0.1-0.4 + 0.66 s (they copy a 73 MB logits array too) and prefilling the tokens again
    takes 3.3 s. A prefill again would also change the reply: llama.cpp's sums depend on the
    batch, and the sampler's repeat penalty would forget the tokens it chose."""

    kv: ctypes.Array
    n_bytes: int
    input_ids: np.ndarray
    sampler: Any

    @classmethod
    def save(cls, llm: llama_cpp.Llama) -> _Place:
        ctx = llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        kv = (ctypes.c_uint8 * size)()
        n_bytes = llama_cpp.llama_state_seq_get_data(ctx, kv, size, 0)
        return cls(
            kv=kv,
            n_bytes=n_bytes,
            input_ids=llm.input_ids[: llm.n_tokens].copy(),
            sampler=llm._sampler,
        )

    def restore(self, llm: llama_cpp.Llama) -> None:
        ctx = llm._ctx.ctx
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        if llama_cpp.llama_state_seq_set_data(ctx, self.kv, self.n_bytes, 0) != self.n_bytes:
            raise AgentError("could not restore a paused generation's context")
        llm.input_ids[: len(self.input_ids)] = self.input_ids
        llm.n_tokens = len(self.input_ids)
        llm._sampler = self.sampler
