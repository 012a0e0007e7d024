"""Tool calling: the model picks one of the enabled skills' tools, the owner's policy decides.

The default chat model has 135M parameters; asked in plain words for JSON it writes prose,
wrong keys or half an object. So the call is decoded under a grammar: one JSON Schema, an
``anyOf`` with one branch per tool (``"tool"`` a constant, ``"arguments"`` that tool's
parameters) and a ``"none"`` branch, which llama.cpp turns into a GBNF grammar. The model can
then only write a call that names a real tool with arguments of the right shape; what it
cannot be forced to do is pick the *right* tool or copy the right words: that is measured,
as a score, by bench/bench_tool_choice.py.

Whether a call runs is decided in one place, ``ToolPolicy.decide`` (the same idea as
simonw/llm's ``before_tool_execution`` hook): per tool "allow", "ask" or "deny", "ask" by
default, and "ask" shows the owner the tool with its full arguments before it runs.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import jsonschema
import llama_cpp
import numpy as np

from agent.errors import AgentError
from agent.remote_model import ChatBackend

NONE = "none"
# Strings without a maxLength of their own get this one in the grammar. Without it the small
# model loops inside a string ("a note with a note with …") until max_tokens cuts the JSON off.
MAX_STRING_CHARS = 120
# Room for the longest call the grammar allows: every string at its cap, plus the JSON around it.
MAX_CALL_TOKENS = 384
# A tool is offered only when the request is this close (cosine, MiniLM) to its name and
# description. Measured: clear requests scored 0.34-0.59 against their tool, plain questions
# about the owner's notes at most 0.13 against any tool.
TOOL_RELEVANCE = 0.3


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict  # a JSON Schema of type "object"


@dataclass(frozen=True)
class ToolCall:
    tool: str
    arguments: dict


class ToolCallError(AgentError, ValueError):
    """The model's output was not a valid call (only when the grammar could not hold it)."""


def relevant_tools(
    embed: Callable[[list[str]], np.ndarray],
    question: str,
    tools: list[Tool],
    threshold: float = TOOL_RELEVANCE,
) -> list[Tool]:
    """The tools a request is about, most relevant first; often none.

    Offered tools, the 135M default never answers "none" (it called a weather tool for "tell
    me a joke"), so whether to offer tools at all is decided the way retrieval is: by meaning,
    the request against each tool's name and description. Fewer tools also help it pick."""
    if not tools:
        return []
    vectors = embed([question] + [f"{t.name.replace('_', ' ')}: {t.description}" for t in tools])
    scores = vectors[1:] @ vectors[0]
    ranked = sorted(zip(scores, range(len(tools)), strict=False), reverse=True)
    return [tools[i] for score, i in ranked if score >= threshold]


def call_schema(tools: list[Tool]) -> dict:
    """One schema for the whole decision: a call to exactly one tool, or "none"."""
    branches = [_branch(t.name, t.parameters) for t in tools]
    branches.append(
        _branch(NONE, {"type": "object", "properties": {}, "additionalProperties": False})
    )
    return {"anyOf": branches}


def _branch(name: str, parameters: dict) -> dict:
    return {
        "type": "object",
        "properties": {"tool": {"const": name}, "arguments": parameters},
        "required": ["tool", "arguments"],
        "additionalProperties": False,
    }


def _capped(schema: object) -> object:
    """A copy of ``schema`` whose strings all have a maxLength (for the grammar only)."""
    if isinstance(schema, dict):
        out = {k: _capped(v) for k, v in schema.items()}
        if (
            out.get("type") == "string"
            and "maxLength" not in out
            and "enum" not in out
            and "const" not in out
        ):
            out["maxLength"] = MAX_STRING_CHARS
        return out
    if isinstance(schema, list):
        return [_capped(v) for v in schema]
    return schema


def grammar_schema(tools: list[Tool]) -> dict:
    """The schema the grammar is made from: ``call_schema`` with every string capped."""
    schema = _capped(call_schema(tools))
    assert isinstance(schema, dict)  # _capped copies a dict as a dict
    return schema


def call_grammar(tools: list[Tool]) -> llama_cpp.LlamaGrammar:
    return llama_cpp.LlamaGrammar.from_json_schema(json.dumps(grammar_schema(tools)), verbose=False)


def _describe(tool: Tool) -> str:
    args = []
    for name, prop in tool.parameters.get("properties", {}).items():
        kind = prop.get("type", "any")
        note = f": {prop['description']}" if prop.get("description") else ""
        args.append(f"{name} ({kind}{note})")
    return f"- {tool.name}: {tool.description} Arguments: {', '.join(args) or 'none'}."


def tool_messages(question: str, tools: list[Tool]) -> list[dict]:
    """The prompt: the tools, one line each, then the request.

    Measured on the default 135M model (bench/bench_tool_choice.py): a short list with the
    arguments spelled out, and the output format shown once, works; long instructions do not.
    """
    listing = "\n".join(_describe(t) for t in tools)
    system = (
        "You choose a tool for the user's request.\n"
        f"Tools:\n{listing}\n- {NONE}: no tool fits the request.\n"
        'Reply with JSON: {"tool": "<tool name>", "arguments": {...}}, '
        "copying the words of the request into the arguments."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def validate_call(call: ToolCall, tools: list[Tool]) -> None:
    """Raises ToolCallError unless ``call`` names a tool (or "none") with valid arguments."""
    try:
        jsonschema.validate({"tool": call.tool, "arguments": call.arguments}, call_schema(tools))
    except jsonschema.ValidationError as e:
        raise ToolCallError(f"invalid call {call}: {e.message}") from e


def choose_tool(model: ChatBackend, question: str, tools: list[Tool]) -> ToolCall | None:
    """The tool the model picks for ``question`` with its arguments; None when it picks none.

    Greedy (temperature 0), so the same request gets the same call on the same llama.cpp
    build, thread count and kind of CPU; on another, a borderline choice may differ."""
    if not tools:
        return None
    text = model.complete(
        tool_messages(question, tools), schema=grammar_schema(tools), max_tokens=MAX_CALL_TOKENS
    )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:  # only if max_tokens cut the call short
        raise ToolCallError(f"model output is not JSON: {text!r}") from e
    if not isinstance(data, dict):
        raise ToolCallError(f"model output is not an object: {text!r}")
    tool, arguments = data.get("tool"), data.get("arguments")
    if not isinstance(tool, str) or not isinstance(arguments, dict):
        raise ToolCallError(f"model output is not a tool's name and arguments: {text!r}")
    call = ToolCall(tool, arguments)
    # The grammar should make this impossible to fail; checked anyway, since the grammar is
    # llama.cpp's translation of the schema, not the schema itself (see call_grammar's caps).
    validate_call(call, tools)
    return None if call.tool == NONE else call


Decision = Literal["allow", "ask", "deny"]
AskOwner = Callable[[ToolCall], bool]


@dataclass(frozen=True)
class ToolDecision:
    run: bool
    reason: str


@dataclass
class ToolPolicy:
    """The owner's rule per tool; a tool nobody set a rule for is asked about."""

    rules: dict[str, Decision] = field(default_factory=dict)
    default: Decision = "ask"

    def set(self, tool: str, decision: Decision) -> None:
        if decision not in ("allow", "ask", "deny"):
            raise ValueError(f"unknown decision {decision!r}")
        self.rules[tool] = decision

    def rule(self, tool: str) -> Decision:
        return self.rules.get(tool, self.default)

    def decide(self, call: ToolCall, ask_owner: AskOwner) -> ToolDecision:
        """The one choke point: every tool call passes here before it may run."""
        rule = self.rule(call.tool)
        if rule == "allow":
            return ToolDecision(True, f"{call.tool} is allowed")
        if rule == "deny":
            return ToolDecision(False, f"{call.tool} is denied by policy")
        # "ask": the owner sees the tool and every argument, not a summary of them.
        if ask_owner(ToolCall(call.tool, copy.deepcopy(call.arguments))):
            return ToolDecision(True, f"the owner approved {call.tool}")
        return ToolDecision(False, f"the owner refused {call.tool}")


@dataclass(frozen=True)
class ToolTurn:
    call: ToolCall | None  # None: the model chose no tool
    decision: ToolDecision | None  # None when there was no call
    result: str | None  # what the tool returned, when it ran

    @property
    def ran(self) -> bool:
        return self.decision is not None and self.decision.run


def run_tool_turn(
    model: ChatBackend,
    question: str,
    tools: list[Tool],
    policy: ToolPolicy,
    execute: Callable[[ToolCall], str],
    ask_owner: AskOwner,
) -> ToolTurn:
    """Choose a call, pass it through the policy, and run it only if the policy says so."""
    call = choose_tool(model, question, tools)
    if call is None:
        return ToolTurn(None, None, None)
    return decide_and_run(call, policy, execute, ask_owner)


def decide_and_run(
    call: ToolCall, policy: ToolPolicy, execute: Callable[[ToolCall], str], ask_owner: AskOwner
) -> ToolTurn:
    """The second half of a turn, apart because it needs no model: waiting for the owner
    must not hold the model queue."""
    decision = policy.decide(call, ask_owner)
    if not decision.run:
        return ToolTurn(call, decision, None)
    return ToolTurn(call, decision, execute(call))
