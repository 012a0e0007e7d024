"""A stand-in for the chat model, for tests whose subject is not the model.

It is not a language model and says so: its reply starts with "[fake model]", and the tool
call it "chooses" is the one the test scripted. It exists because the 135M test model's
choices are not portable: llama.cpp's sums differ with the CPU's instruction set (AVX2,
AVX-512) and with the thread count, so greedy decoding of a borderline choice differs from
machine to machine (issue 20). Tests of the plumbing around the model (the tool policy,
approvals, a skill's process, the audit log) use this stand-in, so they test the plumbing on
every machine. What the real model does is tested with the real model and only what holds on
every machine (tests/test_tools.py: the grammar); how well it chooses is a score in
bench/bench_tool_choice.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import jsonschema

REPLY = (
    "[fake model] This reply was not written by a language model; it says nothing about your notes."
)


class FakeChatModel:
    """Duck-types ``agent.runtime.ChatModel``: ``stream`` yields ``reply`` word by word,
    ``complete`` returns the scripted ``call`` (by default the "none" call)."""

    def __init__(self, *, call: dict | None = None, reply: str = REPLY, n_ctx: int = 4096) -> None:
        self.call = call if call is not None else {"tool": "none", "arguments": {}}
        self.reply = reply
        self.n_ctx = n_ctx
        self.prompts: list[list[dict]] = []  # every prompt it was given, for the test to read
        self.last_prompt_tokens_read = 0
        self.last_tokens_generated = 0

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages: list[dict], *, max_tokens: int = 256, **settings) -> Iterator[str]:
        self.prompts.append(messages)
        words = self.reply.split(" ")[:max_tokens]
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word
        self.last_tokens_generated = len(words)

    def complete(self, messages: list[dict], *, schema: dict, max_tokens: int) -> str:
        self.prompts.append(messages)
        # The real model writes under a grammar made from ``schema``; a scripted call the
        # grammar would not let through is a mistake in the test, not a choice of the model.
        try:
            jsonschema.validate(self.call, schema)
        except jsonschema.ValidationError as e:
            raise AssertionError(
                f"the scripted call {self.call} is not one the grammar allows: {e.message}"
            ) from None
        return json.dumps(self.call)

    def tokens_in_context(self) -> int:
        return 0


@contextmanager
def chat_model(node, model: FakeChatModel) -> Iterator[FakeChatModel]:
    """``node`` uses ``model`` as its chat model for the block (the real one, if it was
    loaded, comes back after)."""
    before = node._chat_model
    node._chat_model = model
    try:
        yield model
    finally:
        node._chat_model = before
