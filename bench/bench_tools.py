"""What the tool-call grammar costs: constrained decoding speed ÷ free decoding speed.

    python bench/bench_tools.py [MODELS_DIR]

Same model, same prompt (agent.tools.tool_messages for a note request), temperature 0. The
constrained side decodes under the JSON-Schema grammar that choose_tool uses; the free side
decodes without it, for the same number of tokens. Only decoding is timed (from the first
token on; the prompt is read before it and comes from the KV cache after the first run).
The issue's anchor: grammars cost about 2× (ratio ≈ 0.5). Also printed: the time to build
the grammar from the schema, paid once per choose_tool call. Medians of alternating runs.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import llama_cpp
from test_tools import TOOLS  # the same three tools the tests decode

from agent.models import CATALOG, DEFAULT_CHAT_MODEL, ensure_model
from agent.runtime import ChatModel, llama_messages
from agent.tools import call_grammar, tool_messages

QUESTION = "add a note: call the plumber on Monday about the leaking tap in the kitchen"


def decode(
    model: ChatModel, grammar: llama_cpp.LlamaGrammar | None, max_tokens: int
) -> tuple[float, int]:
    """(decode tok/s, tokens generated) for one reply."""
    llama_cpp.llama_perf_context_reset(model._llm.ctx)
    chunks = model._llm.create_chat_completion(
        llama_messages(tool_messages(QUESTION, TOOLS)),
        stream=True,
        grammar=grammar,
        temperature=0.0,
        max_tokens=max_tokens,
    )
    start = None
    # llama_cpp types the result as either shape whatever `stream` is: streamed, it is this.
    for chunk in cast(Iterator[llama_cpp.CreateChatCompletionStreamResponse], chunks):
        if start is None and chunk["choices"][0]["delta"].get("content"):
            start = time.perf_counter()
    assert start is not None, "the model wrote no text to time"
    elapsed = time.perf_counter() - start
    n = llama_cpp.llama_perf_context(model._llm.ctx).n_eval
    return (n - 1) / elapsed, n


def main(repeats: int = 7) -> None:
    folder = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path.home() / ".cache" / "flurry-test-models"
    )
    model = ChatModel(ensure_model(CATALOG[DEFAULT_CHAT_MODEL], folder), n_ctx=2048)

    builds = []
    for _ in range(repeats):
        start = time.perf_counter()
        grammar = call_grammar(TOOLS)
        builds.append(time.perf_counter() - start)

    _, n = decode(model, grammar, 384)  # the call's length sets the free side's length
    constrained, free, free_n = [], [], []
    for _ in range(repeats):
        constrained.append(decode(model, call_grammar(TOOLS), 384)[0])
        rate, k = decode(model, None, n)
        free.append(rate)
        free_n.append(k)
    c, f = statistics.median(constrained), statistics.median(free)
    print(f"grammar build: {statistics.median(builds) * 1000:.1f} ms per call")
    print(f"tokens per reply: constrained {n}, free {statistics.median(free_n):.0f}")
    print(
        f"decode: constrained {c:.1f} tok/s, free {f:.1f} tok/s, ratio {c / f:.2f} (anchor: about 0.5)"
    )


if __name__ == "__main__":
    main()
