"""Answers and multi-turn chat on the real default chat model (temperature 0)."""

from __future__ import annotations

import pytest

from agent.answer import Conversation, Source, cited_numbers, turn_messages
from agent.models import CATALOG, DEFAULT_CHAT_MODEL
from agent.runtime import ChatModel

NOTES = [
    Source(1, "notes/health.md", 0, 0.5, "The dentist appointment is on 14 November at 9:30 with Dr. Almeida."),
    Source(2, "notes/garden.md", 0, 0.4, "Plant the tomatoes in the second week of May."),
]


@pytest.fixture(scope="module")
def model(models_dir) -> ChatModel:
    return ChatModel(models_dir / CATALOG[DEFAULT_CHAT_MODEL].filename)


def test_answer_streams_from_the_notes_and_records_the_turn(model):
    recorded: list[dict] = []
    conversation = Conversation(model, lambda text, k: NOTES[:k], record=recorded.append)
    answer = conversation.ask("When is the dentist appointment?")
    pieces = list(answer)
    assert len(pieces) > 1, "the answer should arrive in pieces"
    assert answer.text == "".join(pieces).strip()
    assert "14 November" in answer.text or "9:30" in answer.text, answer.text
    assert [m["role"] for m in recorded] == ["user", "assistant"]
    assert recorded[1]["content"] == answer.text
    assert recorded[1]["sources"][0]["path"] == "notes/health.md"


def test_later_turns_reuse_the_kv_cache(model):
    conversation = Conversation(model, lambda text, k: NOTES[:k], max_answer_tokens=48)
    conversation.ask("When is the dentist appointment?").read()
    conversation.ask("When should I plant the tomatoes?").read()
    before = model.tokens_in_context()   # the system prompt and two whole turns
    conversation.ask("Who is the dentist?").read()
    # Only the new turn is read; everything the earlier turns left in the context is reused.
    new_turn = sum(model.count_tokens(m["content"]) for m in turn_messages("Who is the dentist?", NOTES))
    assert model.last_prompt_tokens_read <= new_turn + 24, (model.last_prompt_tokens_read, new_turn, before)
    assert model.tokens_in_context() - model.last_tokens_generated - model.last_prompt_tokens_read >= before - 8


def test_a_long_conversation_drops_old_turns_instead_of_failing(models_dir):
    small = ChatModel(models_dir / CATALOG[DEFAULT_CHAT_MODEL].filename, n_ctx=512)
    conversation = Conversation(small, lambda text, k: NOTES[:k], max_answer_tokens=64)
    for i in range(30):
        assert conversation.ask(f"Question {i}: when is the dentist appointment?").read()
        if conversation._first_turn:
            break
    assert conversation._first_turn > 0, "30 turns should not fit in 512 tokens"
    conversation.ask("And one more question after the old turns were dropped?").read()
    assert small.tokens_in_context() <= 512


def test_empty_question_is_refused(model):
    with pytest.raises(ValueError, match="empty"):
        Conversation(model, lambda text, k: []).ask("   ")


def test_cited_numbers():
    assert cited_numbers("See [2] and [1], again [2].") == [2, 1]
    assert cited_numbers("No citations.") == []
