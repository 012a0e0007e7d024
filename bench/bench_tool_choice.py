"""How well the chat model chooses a tool and fills its arguments: a score, not a pass/fail.

    python bench/bench_tool_choice.py [MODELS_DIR]

The 135M default's choices are not portable: llama.cpp's sums differ with the CPU's
instruction set (AVX2, AVX-512…) and the thread count, and greedy decoding of a borderline
choice follows them ("is it raining in Paris?" chose get_weather on one box and no tool on
another, issue 20). So what the tests once pinned is measured here instead, with the build's
instruction set and thread count printed beside the score (FLURRY_THREADS sets the count).

Two columns per request: the model alone, offered every tool (agent.tools.choose_tool), and
the node's path, offered only the tools the request is about (relevant_tools, MiniLM) — which
is where "hello" and "tell me a joke" are kept from any tool. A choice is right when the tool
is the expected one (or no tool when none is expected); its arguments are right when they
also say what the request said (the check beside each case).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import llama_cpp
from test_tools import TOOLS  # the tests' three tools: add_note, get_weather, convert_currency

from agent.embedding import Embedder
from agent.models import CATALOG, DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL, ensure_model
from agent.runtime import ChatModel, default_threads
from agent.tools import Tool, ToolCall, choose_tool, relevant_tools
from skills.builtin.notes import skill as notes_skill

Check = Callable[[dict], bool]


def says(word: str, argument: str) -> Check:
    return lambda arguments: word in str(arguments.get(argument, "")).lower()


def equals(expected: dict) -> Check:
    return lambda arguments: arguments == expected


NOTES = [Tool(t.name, t.description, t.parameters) for t in notes_skill().manifest.tools]
# The skill the tests install as a wheel: one tool, so the choice is that tool or none.
ONE_NOTE_TOOL = [
    Tool(
        "add_note",
        "Add a note to the owner's notes.",
        {
            "type": "object",
            "required": ["text"],
            "properties": {"text": {"type": "string", "description": "The note"}},
        },
    )
]

# (tools offered, request, the expected tool or None, what its arguments must say)
CASES: list[tuple[str, list[Tool], str, str | None, Check | None]] = [
    ("three", TOOLS, "add a note: call the plumber on Monday", "add_note", says("plumber", "text")),
    ("three", TOOLS, "what's the weather in Lisbon?", "get_weather", says("lisbon", "city")),
    ("three", TOOLS, "hello", None, None),
    (
        "three",
        TOOLS,
        "convert 100 dollars to euros",
        "convert_currency",
        equals({"amount": 100, "from": "USD", "to": "EUR"}),
    ),
    ("three", TOOLS, "remember to buy milk", "add_note", says("milk", "text")),
    ("three", TOOLS, "is it raining in Paris?", "get_weather", says("paris", "city")),
    (
        "three",
        TOOLS,
        "how much is 50 GBP in USD?",
        "convert_currency",
        equals({"amount": 50, "from": "GBP", "to": "USD"}),
    ),
    ("three", TOOLS, "note that the dentist is on Friday", "add_note", says("dentist", "text")),
    ("three", TOOLS, "tell me a joke", None, None),
    ("three", TOOLS, "weather in Tokyo please", "get_weather", says("tokyo", "city")),
    ("notes", NOTES, "add a note: call the plumber on Monday", "remember", says("plumber", "text")),
    ("notes", NOTES, "what did I note about the plumber?", "recall", says("plumber", "query")),
    (
        "one",
        ONE_NOTE_TOOL,
        "add a note: call the plumber on Monday",
        "add_note",
        says("plumber", "text"),
    ),
    ("one", ONE_NOTE_TOOL, "When is the dentist appointment?", None, None),
]


def grade(call: ToolCall | None, tool: str | None, check: Check | None) -> tuple[bool, bool]:
    """(right tool, right arguments)"""
    chosen = call.tool if call else None
    right_tool = chosen == tool
    if call is None or check is None:  # no arguments to check, or nothing to check them against
        return right_tool, right_tool
    return right_tool, right_tool and check(call.arguments)


def shown(call: ToolCall | None) -> str:
    return (
        "none"
        if call is None
        else f"{call.tool}({', '.join(f'{k}={v!r}' for k, v in call.arguments.items())})"
    )


def main() -> None:
    folder = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path.home() / ".cache" / "flurry-test-models"
    )
    model = ChatModel(ensure_model(CATALOG[DEFAULT_CHAT_MODEL], folder), n_ctx=2048)
    embedder = Embedder(
        ensure_model(CATALOG[DEFAULT_EMBEDDING_MODEL], folder), n_threads=default_threads()
    )
    isa = [
        f
        for f in llama_cpp.llama_print_system_info().decode().replace("|", " ").split()
        if f.startswith("AVX")
    ]
    print(
        f"llama.cpp {llama_cpp.__version__}, threads {model.n_threads}, CPU features used: {' '.join(isa) or '?'}"
    )

    totals = {"alone": [0, 0], "node": [0, 0]}
    for family, tools, request, tool, check in CASES:
        alone = choose_tool(model, request, tools)
        offered = relevant_tools(embedder.embed, request, tools)
        node = choose_tool(model, request, offered) if offered else None
        marks = []
        for name, call in (("alone", alone), ("node", node)):
            right_tool, right_args = grade(call, tool, check)
            totals[name][0] += right_tool
            totals[name][1] += right_args
            marks.append(
                f"{'✓' if right_args else '~' if right_tool else '✗'} {shown(call)[:48]:48}"
            )
        print(f"[{family:5}] {request[:40]:40} want {tool or 'none':16} | " + " | ".join(marks))
    n = len(CASES)
    for name, (tools_right, args_right) in totals.items():
        label = (
            "model alone (every tool offered)"
            if name == "alone"
            else "node (relevant tools offered)"
        )
        print(
            f"{label:34} right tool {tools_right}/{n} ({tools_right / n:.0%}), right arguments {args_right}/{n} ({args_right / n:.0%})"
        )


if __name__ == "__main__":
    main()
