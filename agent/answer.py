"""Answers from the owner's data: retrieval, the prompt, numbered citations, multi-turn chat.

Each turn is a system message with the notes retrieved for it, numbered [1] [2] …, then the
question. Earlier turns are replayed exactly as the model read them, notes included, so the
prompt of turn N starts with everything turn N-1 left in the context: llama.cpp keeps that
prefix in its KV cache and reads only the new turn (see ``agent.runtime``). When the context
fills, the oldest turns are dropped, half the room at a time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
import datetime as dt
from dataclasses import dataclass, field

from agent.runtime import ChatModel

# Short and plain: a 135M-parameter model follows a short instruction better than a long one.
# Measured on the default model: notes in a system message just before the question, and the
# question with "Answer in one sentence.", gave on-point answers where notes inside the user
# message made it recite the notes.
SYSTEM_PROMPT = "You are a helpful assistant."
ANSWER_STYLE = " Answer in one sentence."
SNIPPET_CHARS = 240


@dataclass(frozen=True)
class Source:
    number: int     # the [n] the model sees and cites
    path: str
    chunk: int      # the chunk's position in its document
    score: float
    text: str
    meta: dict = field(default_factory=dict)   # what the citation shows: sender, date, page, heading

    @property
    def snippet(self) -> str:
        flat = " ".join(self.text.split())
        return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1] + "…"

    def to_json(self) -> dict:
        return {"path": self.path, "chunk": self.chunk, "score": self.score, "snippet": self.snippet, "meta": self.meta}


def citation(meta: dict) -> str:
    """One line saying which record a source is: "From Ana <ana@…>, 3 Mar 2026 — Subject",
    "Dentist, Thu 14 Nov 2026 09:30 at Clínica Almeida", "page 3". Empty when there is nothing to say."""
    kind = meta.get("kind")
    if kind == "email":
        line = f"From {meta.get('from', '(unknown sender)')}"
        if meta.get("date"):
            line += f", {_day(meta['date'])}"
        if meta.get("subject"):
            line += f" — {meta['subject']}"
        if meta.get("attachment"):
            line += f" (attachment {meta['attachment']})"
        return line
    if kind == "event":
        line = f"{meta.get('summary', 'Event')}"
        when = (meta.get("next") or [meta.get("start")])[0]
        if when:
            line += f", {_day(when, with_time=True)}"
        if meta.get("location"):
            line += f" at {meta['location']}"
        return line
    if kind == "contact":
        return f"Contact: {meta.get('name', '')}"
    if kind == "chat":
        line = f"Chat {meta.get('chat', '')}"
        if meta.get("date"):
            line += f", {_day(meta['date'], with_time=True)}"
        if meta.get("senders"):
            line += f" ({', '.join(meta['senders'])})"
        return line
    if "page" in meta:
        return f"page {meta['page']}" + (f" — {meta['heading']}" if meta.get("heading") else "")
    return meta.get("heading", "")


def _day(iso: str, with_time: bool = False) -> str:
    try:
        when = dt.datetime.fromisoformat(iso) if "T" in iso or " " in iso else dt.date.fromisoformat(iso)
    except ValueError:
        return iso
    day = f"{when.day} {when.strftime('%b %Y')}"
    if with_time and isinstance(when, dt.datetime):
        day += when.strftime(" %H:%M")
    return day


# (question, how many) → the best chunks, numbered from 1.
Retrieve = Callable[[str, int], list[Source]]
# Called with each message as it is settled, so the caller can seal it in the vault.
Record = Callable[[dict], None]


def render_notes(sources: list[Source]) -> str:
    if not sources:
        return "The user's notes say nothing about this."
    return "Here are the user's notes:\n" + "\n".join(f"[{s.number}] {' '.join(s.text.split())}" for s in sources)


def turn_messages(question: str, sources: list[Source]) -> list[dict]:
    """The messages of one turn as the model reads it, then and in every later turn."""
    return [
        {"role": "system", "content": render_notes(sources)},
        {"role": "user", "content": question + ANSWER_STYLE},
    ]


def cited_numbers(answer: str) -> list[int]:
    """The note numbers an answer cites, in order of first mention."""
    seen: list[int] = []
    for m in re.finditer(r"\[(\d+)\]", answer):
        n = int(m.group(1))
        if n not in seen:
            seen.append(n)
    return seen


@dataclass
class Answer:
    """A streamed answer: iterate for the pieces; ``text`` holds all of it afterwards."""

    question: str
    sources: list[Source]
    _pieces: Iterator[str]
    _on_done: Callable[[str], None]
    text: str = ""
    first_piece_at: float | None = None   # time.perf_counter() of the first piece, for benchmarks

    def __iter__(self) -> Iterator[str]:
        parts: list[str] = []
        for piece in self._pieces:
            if self.first_piece_at is None:
                self.first_piece_at = time.perf_counter()
            parts.append(piece)
            yield piece
        self.text = "".join(parts).strip()
        self._on_done(self.text)

    def read(self) -> str:
        """Consume the whole answer and return its text."""
        for _ in self:
            pass
        return self.text


class Conversation:
    def __init__(
        self,
        model: ChatModel,
        retrieve: Retrieve,
        *,
        record: Record | None = None,
        k: int = 3,
        max_answer_tokens: int = 256,
    ) -> None:
        self._model = model
        self._retrieve = retrieve
        self._record = record or (lambda message: None)
        self.turns: list[tuple[str, list[Source], str]] = []   # question, its notes, the answer
        self._first_turn = 0   # turns before this one no longer fit in the context
        self.k = k
        self.max_answer_tokens = max_answer_tokens

    def ask(self, question: str) -> Answer:
        question = question.strip()
        if not question:
            raise ValueError("the question is empty")
        # A follow-up ("and who is it with?") names little by itself: search with the previous
        # question too, so the notes of the topic under discussion are found again.
        search_text = f"{self.turns[-1][0]}\n{question}" if self.turns else question
        sources = self._retrieve(search_text, self.k)
        messages = self._messages(question, sources)
        self._record({"role": "user", "content": question, "at": time.time()})

        def done(text: str) -> None:
            self.turns.append((question, sources, text))
            self._record(
                {"role": "assistant", "content": text, "sources": [s.to_json() for s in sources], "at": time.time()}
            )

        pieces = self._model.stream(messages, max_tokens=self.max_answer_tokens)
        return Answer(question, sources, pieces, done)

    def _messages(self, question: str, sources: list[Source]) -> list[dict]:
        system = [{"role": "system", "content": SYSTEM_PROMPT}]
        current = turn_messages(question, sources)
        budget = self._model.n_ctx - self.max_answer_tokens - self._size(system + current)
        if budget < 0:
            raise ValueError("the question and its notes do not fit in the model's context")
        history = self._history(self._first_turn)
        if self._size(history) > budget:
            # Drop old turns until half the room is free, not just enough for this turn: the
            # history then keeps the same start (and the KV cache stays valid) for several turns.
            while self._first_turn < len(self.turns) and self._size(history) > budget // 2:
                self._first_turn += 1
                history = self._history(self._first_turn)
        return system + history + current

    def _history(self, first: int) -> list[dict]:
        messages: list[dict] = []
        for question, sources, answer in self.turns[first:]:
            messages += [*turn_messages(question, sources), {"role": "assistant", "content": answer}]
        return messages

    def _size(self, messages: list[dict]) -> int:
        # ChatML adds about six tokens of markup per message.
        return sum(self._model.count_tokens(m["content"]) + 6 for m in messages)
