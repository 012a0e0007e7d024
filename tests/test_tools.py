"""Tool calling: the grammar with the real default model (SmolLM2-135M, temperature 0), the
choice's plumbing with a stand-in, and the tool policy.

What the grammar guarantees holds on every machine, so it is asserted with the real model for
every request: the output parses, names one of the offered tools (or "none") and its arguments
validate against that tool's schema, strings within their cap. Which tool the model picks and
which words it copies is not portable: llama.cpp's sums differ with the CPU's instruction set
and the thread count, and greedy decoding of a borderline choice follows them ("is it raining
in Paris?" chose get_weather on an AVX-512 box and no tool on an AVX2 one, issue 20). That is
a measurement, not a pass/fail: bench/bench_tool_choice.py scores it on these requests.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
from fake_model import FakeChatModel

from agent.models import CATALOG, DEFAULT_CHAT_MODEL
from agent.runtime import ChatModel
from agent.tools import (
    MAX_STRING_CHARS,
    Tool,
    ToolCall,
    ToolCallError,
    ToolPolicy,
    call_schema,
    choose_tool,
    grammar_schema,
    run_tool_turn,
    validate_call,
)


def obj(**properties) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


TOOLS = [
    Tool(
        "add_note",
        "Save a note for the user.",
        obj(text={"type": "string", "description": "the note"}),
    ),
    Tool(
        "get_weather",
        "Get the current weather in a city.",
        obj(city={"type": "string", "description": "the city"}),
    ),
    Tool(
        "convert_currency",
        "Convert an amount of money from one currency to another.",
        obj(
            amount={"type": "number"},
            **{
                "from": {"type": "string", "description": "currency code such as USD"},
                "to": {"type": "string", "description": "currency code such as EUR"},
            },
        ),
    ),
]
BY_NAME = {t.name: t for t in TOOLS}

REQUESTS = [
    "add a note: call the plumber on Monday",
    "what's the weather in Lisbon?",
    "hello",
    "convert 100 dollars to euros",
    "remember to buy milk",
    "is it raining in Paris?",
    "how much is 50 GBP in USD?",
    "note that the dentist is on Friday",
    "tell me a joke",
    "weather in Tokyo please",
    "Ignore the tools and write a poem about the sea.",
]


@pytest.fixture(scope="module")
def model(models_dir) -> ChatModel:
    return ChatModel(models_dir / CATALOG[DEFAULT_CHAT_MODEL].filename, n_ctx=2048)


@pytest.fixture(scope="module")
def calls(model) -> dict[str, ToolCall | None]:
    """Each request's call, decoded once for all the tests below."""
    return {q: choose_tool(model, q, TOOLS) for q in REQUESTS}


@pytest.mark.parametrize("question", REQUESTS)
def test_every_call_is_valid(calls, question):
    call = calls[question]
    if call is None:
        return  # "none" is a valid answer
    assert call.tool in BY_NAME
    jsonschema.validate(call.arguments, BY_NAME[call.tool].parameters)
    for value in call.arguments.values():
        if isinstance(value, str):
            assert len(value) <= MAX_STRING_CHARS  # the cap that keeps the small model from looping


def test_the_grammar_holds_the_model_to_one_tool_and_the_cap(model):
    """The grammar without its "none" branch, and a request to copy a text far longer than the
    cap: whatever the model prefers, it can only write a valid add_note call, cut at the cap."""
    only_add_note = {"anyOf": grammar_schema(TOOLS)["anyOf"][:1]}
    long_text = "buy " + ", ".join(f"{n} green apples" for n in range(1, 40))
    messages = [{"role": "user", "content": f"Write this down twice: {long_text}"}]
    data = json.loads(model.complete(messages, schema=only_add_note, max_tokens=384))
    assert data["tool"] == "add_note" and set(data["arguments"]) == {"text"}
    assert 0 < len(data["arguments"]["text"]) <= MAX_STRING_CHARS < len(long_text)


def test_same_request_same_call(model, calls):
    # The same build, threads and CPU: greedy decoding repeats itself exactly.
    q = "note that the dentist is on Friday"
    assert choose_tool(model, q, TOOLS) == calls[q]


def test_no_tools_no_call(model):
    assert choose_tool(model, "add a note: milk", []) is None


def test_schema_rejects_bad_calls():
    with pytest.raises(ToolCallError):
        validate_call(ToolCall("get_weather", {"town": "Lisbon"}), TOOLS)
    with pytest.raises(ToolCallError):
        validate_call(ToolCall("rm_rf", {}), TOOLS)
    with pytest.raises(ToolCallError):
        validate_call(ToolCall("none", {"x": 1}), TOOLS)
    validate_call(ToolCall("none", {}), TOOLS)
    assert len(call_schema(TOOLS)["anyOf"]) == len(TOOLS) + 1
    # The grammar's schema adds the cap on strings that the tools' own schemas leave open.
    too_long = {"tool": "add_note", "arguments": {"text": "x" * (MAX_STRING_CHARS + 1)}}
    jsonschema.validate(too_long, call_schema(TOOLS))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(too_long, grammar_schema(TOOLS))


# --- choose_tool's plumbing, with a stand-in for the model ---------------------------------------
# The model is not the subject here (FakeChatModel returns the call the test scripts): what is
# tested is what choose_tool offers the model and what it makes of the reply.


def test_the_model_is_offered_the_tools_and_none_and_its_call_is_returned():
    call = {"tool": "convert_currency", "arguments": {"amount": 100, "from": "USD", "to": "EUR"}}
    fake = FakeChatModel(call=call)
    assert choose_tool(fake, "convert 100 dollars to euros", TOOLS) == ToolCall(
        call["tool"], call["arguments"]
    )
    [messages] = fake.prompts
    assert messages[-1] == {"role": "user", "content": "convert 100 dollars to euros"}
    assert all(f"- {name}:" in messages[0]["content"] for name in [*BY_NAME, "none"])


def test_choosing_none_is_no_call():
    assert choose_tool(FakeChatModel(), "tell me a joke", TOOLS) is None


def test_a_call_cut_short_is_an_error_not_a_call():
    class CutShort(FakeChatModel):
        def complete(self, messages, *, schema, max_tokens):  # as when max_tokens ends the JSON
            return '{"tool": "add_note", "arguments": {"text": "call the plum'

    with pytest.raises(ToolCallError, match="not JSON"):
        choose_tool(CutShort(), "add a note: call the plumber", TOOLS)


# --- the policy: the one choke point ---------------------------------------------------------

CALL = ToolCall("add_note", {"text": "call the plumber on Monday", "tags": ["home", "urgent"]})


class Recorder:
    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.asked: list[ToolCall] = []

    def __call__(self, call: ToolCall) -> bool:
        self.asked.append(call)
        return self.answer


def test_default_is_ask():
    assert ToolPolicy().rule("anything") == "ask"


def test_deny_never_asks():
    owner = Recorder(True)
    policy = ToolPolicy({"add_note": "deny"})
    decision = policy.decide(CALL, owner)
    assert not decision.run and "denied" in decision.reason
    assert owner.asked == []


@pytest.mark.parametrize("answer", [True, False])
def test_ask_shows_the_full_arguments_and_obeys(answer):
    owner = Recorder(answer)
    decision = ToolPolicy().decide(CALL, owner)
    assert owner.asked == [CALL]  # the exact tool and every argument
    assert decision.run is answer
    assert ("approved" if answer else "refused") in decision.reason


def test_allow_does_not_ask():
    owner = Recorder(False)
    assert ToolPolicy({"add_note": "allow"}).decide(CALL, owner).run
    assert owner.asked == []


def test_unknown_rule_is_rejected():
    with pytest.raises(ValueError):
        ToolPolicy().set("add_note", "maybe")


# --- a whole turn: choice, policy, execution -------------------------------------------------
# The policy and the executor are the subject, not the model's choice: a stand-in "chooses"
# get_weather, so every turn below has a call to decide on, on every machine.

QUESTION = "weather in Tokyo please"
WEATHER = FakeChatModel(call={"tool": "get_weather", "arguments": {"city": "Tokyo"}})


class Executor:
    def __init__(self) -> None:
        self.ran: list[ToolCall] = []

    def __call__(self, call: ToolCall) -> str:
        self.ran.append(call)
        return "saved"


def test_turn_deny_never_executes():
    run = Executor()
    owner = Recorder(True)
    turn = run_tool_turn(WEATHER, QUESTION, TOOLS, ToolPolicy({"get_weather": "deny"}), run, owner)
    assert turn.call.tool == "get_weather" and not turn.ran and turn.result is None
    assert run.ran == [] and owner.asked == []


@pytest.mark.parametrize("answer", [True, False])
def test_turn_ask(answer):
    run = Executor()
    owner = Recorder(answer)
    turn = run_tool_turn(WEATHER, QUESTION, TOOLS, ToolPolicy(), run, owner)
    assert owner.asked == [turn.call] == [ToolCall("get_weather", {"city": "Tokyo"})]
    assert run.ran == ([turn.call] if answer else [])
    assert turn.result == ("saved" if answer else None)


def test_turn_allow_executes():
    run = Executor()
    turn = run_tool_turn(
        WEATHER, QUESTION, TOOLS, ToolPolicy({"get_weather": "allow"}), run, Recorder(False)
    )
    assert turn.ran and turn.result == "saved" and run.ran == [turn.call]


def test_turn_without_a_call_runs_nothing():
    run = Executor()
    for tools in ([], TOOLS):  # no tool enabled; tools, but the model chose none
        turn = run_tool_turn(
            FakeChatModel(), "hello", tools, ToolPolicy({"add_note": "allow"}), run, Recorder(True)
        )
        assert turn.call is None and turn.decision is None and run.ran == []
