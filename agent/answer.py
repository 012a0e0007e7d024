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
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol, cast

from agent import grounding
from agent.citations import citation
from agent.claims import sentences
from agent.errors import AgentError
from agent.evidence import Embed, Evidence, prompt, score, select, split_source
from agent.generation import Generation
from agent.grounding import NOT_FOUND

if TYPE_CHECKING:  # annotations only: the answer path imports no llama.cpp of its own
    from agent.runtime import RecordedReply


class AnswerModel(Protocol):
    """What the answer path asks of a chat model (``agent.runtime.ChatModel`` is one): it needs
    no llama.cpp of its own, and a test may hand it a fake that says so."""

    @property
    def n_ctx(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def stream(self, messages: list[dict], *, max_tokens: int = 256) -> Iterator[str]: ...


class RecordingModel(AnswerModel, Protocol):
    """A model that can also stream token-exact (a recorded Conversation needs one)."""

    def stream_recorded(self, messages: list[dict], *, max_tokens: int = 256) -> RecordedReply: ...


# Short and plain: a 135M-parameter model follows a short instruction better than a long one.
# Measured on the default model: notes in a system message just before the question, and the
# question with "Answer in one sentence.", gave on-point answers where notes inside the user
# message made it recite the notes.
SYSTEM_PROMPT = "You are a helpful assistant."
ANSWER_STYLE = " Answer in one sentence."
SNIPPET_CHARS = 240


@dataclass(frozen=True)
class Source:
    number: int  # the [n] the model sees and cites
    path: str
    chunk: int  # the chunk's position in its document
    score: float
    text: str
    meta: dict = field(default_factory=dict)  # what the citation shows: sender, date, page, heading
    quote: str = ""  # the line of this source the answer rests on ("" when it rests on none)

    @property
    def snippet(self) -> str:
        flat = " ".join(self.text.split())
        return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1] + "…"

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "chunk": self.chunk,
            "score": self.score,
            "snippet": self.snippet,
            "meta": self.meta,
            "quote": self.quote,
        }

    def for_peer(self) -> dict:
        """What a peer may see of a source: its number and the quote the answer rests on, drawn
        only from what the peer's grant lets the answer read. Never the file's path, the chunk's
        place, a snippet or the metadata: those describe the owner's data beyond the answer."""
        return {"number": self.number, "quote": self.quote}


class QuestionError(AgentError, ValueError):
    """The question cannot be asked: it is empty, or it and its notes overflow the model's context."""


# (question, how many) → the best chunks, numbered from 1.
Retrieve = Callable[[str, int], list[Source]]
# Called with each message as it is settled, so the caller can seal it in the vault.
Record = Callable[[dict], None]


def render_notes(sources: list[Source]) -> str:
    if not sources:
        return "The user's notes say nothing about this."
    return "Here are the user's notes:\n" + "\n".join(
        f"[{s.number}] {' '.join(s.text.split())}" for s in sources
    )


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
    """A streamed answer: iterate for the pieces; afterwards ``text`` is what was shown.

    A grounded answer (the default) streams only sentences that passed the verifier, each with
    the [n] of the source whose line supports it; ``grounded`` is False when it says "not in
    your data" or when nothing could be verified. ``sources`` carry the supporting ``quote``
    (before the answer: the evidence the model reads; after it: the lines the answer rests on).
    ``dropped`` holds the model's sentences the verifier refused, never shown as fact.
    """

    question: str
    sources: list[Source]
    _pieces: Iterator[tuple[str, str]]  # ("text" | "draft", text)
    _on_done: Callable[[Answer], None]
    text: str = ""
    grounded: bool = False
    dropped: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)  # what the model read, best first
    # Which model wrote it when that is worth saying: a remote one, or the local one standing
    # in for it (agent.remote_model.FailoverChatModel.last_used); None for the local model.
    model: str | None = None
    first_piece_at: float | None = None  # time.perf_counter() of the first piece, for benchmarks
    # The model's run, token-exact (agent.generation), when the conversation records it (a
    # peer's answer, for its receipt) and the model wrote something; None otherwise.
    generation: Generation | None = None

    def __iter__(self) -> Iterator[str]:
        """The shown text, piece by piece: verified sentences only (what peers receive)."""
        for kind, text in self.events():
            if kind == "text":
                yield text

    def events(self) -> Iterator[tuple[str, str]]:
        """("text", piece) for each piece of the shown answer, and for the owner's screens
        ("draft", words) with the model's words not yet checked (the whole unchecked tail each
        time, "" once it is settled): shown dimmed while the model writes, never as the answer."""
        parts: list[str] = []
        for kind, text in self._pieces:
            if kind == "text":
                if self.first_piece_at is None:
                    self.first_piece_at = time.perf_counter()
                parts.append(text)
            yield kind, text
        self.text = "".join(parts).strip()
        self._on_done(self)

    def read(self) -> str:
        """Consume the whole answer and return its text."""
        for _ in self:
            pass
        return self.text


# A grounded answer is one checked sentence: the model is stopped after it, or after this many
# refused ones (a small model's second sentence mostly elaborates, which is where it invents).
GROUNDED_MAX_TOKENS = 96
GROUNDED_MAX_SENTENCES = 2


class Conversation:
    """A multi-turn conversation over the owner's data.

    ``grounded`` (the default): each turn's answer is built from evidence and checked (see
    ``agent.grounding``); the model reads only that turn's few evidence lines, so earlier turns
    serve the search for a follow-up, not the prompt. ``grounded=False`` is the free path of
    before: whole chunks in a system message, the history replayed, the model's words shown as
    they come (kept as the benchmark's baseline).
    """

    def __init__(
        self,
        model: AnswerModel,
        retrieve: Retrieve,
        *,
        record: Record | None = None,
        k: int = 3,
        max_answer_tokens: int = 256,
        grounded: bool = True,
        embed: Embed | None = None,
        recorded: bool = False,
    ) -> None:
        self._model = model
        # Recorded: the model's draft is made token-exact (ChatModel.stream_recorded) and kept
        # on the Answer, so that a receipt can be issued for it (a peer's answer).
        self.recorded = recorded
        self._retrieve = retrieve
        self._record = record or (lambda message: None)
        self.turns: list[tuple[str, list[Source], str]] = []  # question, its notes, the answer
        self._first_turn = 0  # turns before this one no longer fit in the context
        self.k = k
        self.max_answer_tokens = max_answer_tokens
        self.grounded = grounded
        self._embed = embed

    def ask(self, question: str) -> Answer:
        question = question.strip()
        if not question:
            raise QuestionError("the question is empty")
        # A follow-up ("and who is it with?") names little by itself: search with the previous
        # question too, so the notes of the topic under discussion are found again.
        search_text = f"{self.turns[-1][0]}\n{question}" if self.turns else question
        sources = self._retrieve(search_text, self.k)
        self._record({"role": "user", "content": question, "at": time.time()})

        def done(answer: Answer) -> None:
            answer.model = getattr(self._model, "last_used", None)
            self.turns.append((question, answer.sources, answer.text))
            message = {
                "role": "assistant",
                "content": answer.text,
                "sources": [s.to_json() for s in answer.sources],
                "at": time.time(),
            }
            if self.grounded:
                message["grounded"] = answer.grounded
            self._record(message)

        if not self.grounded:
            pieces = self._model.stream(
                self._messages(question, sources), max_tokens=self.max_answer_tokens
            )
            return Answer(question, sources, (("text", piece) for piece in pieces), done)
        evidence = select(score(question, candidates(sources), self._embed), question)
        answer = Answer(question, with_quotes(sources, evidence), iter(()), done, evidence=evidence)
        answer._pieces = self._grounded_pieces(answer, sources)
        return answer

    def _grounded_pieces(self, answer: Answer, sources: list[Source]) -> Iterator[tuple[str, str]]:
        """The verified sentences of the model's answer, each as soon as it is complete and
        checked; then, if they do not answer what was asked, the best evidence line itself.
        Between them, ("draft", …) with the model's words still unchecked."""
        evidence, question = answer.evidence, answer.question
        if not evidence:
            answer.sources = with_quotes(sources, [])
            yield "text", NOT_FOUND
            return
        checked_against = "\n".join(e.full for e in evidence)
        cited: list[Evidence] = []
        shown: list[str] = []
        messages = prompt(question, evidence)
        max_tokens = min(self.max_answer_tokens, GROUNDED_MAX_TOKENS)
        recording: RecordedReply | None = None
        stream: Iterator[str]
        if self.recorded:
            model = cast(RecordingModel, self._model)
            recording = model.stream_recorded(messages, max_tokens=max_tokens)
            stream = iter(recording)
        else:
            stream = self._model.stream(messages, max_tokens=max_tokens)
        buffer = ""
        try:
            for piece in stream:
                buffer += piece
                done_sentences = sentences(buffer)
                if len(done_sentences) > 1:
                    # The last one may still grow; every one before it is complete.
                    for sentence in done_sentences[:-1]:
                        yield from self._one(sentence, answer, evidence, cited, shown)
                    buffer = buffer[buffer.rfind(done_sentences[-1]) :]
                # One checked sentence answers; a second try only after a refused one.
                if shown or len(answer.dropped) >= GROUNDED_MAX_SENTENCES:
                    buffer = ""
                    break
                yield "draft", buffer.strip()
        finally:
            close = getattr(recording or stream, "close", None)
            if close is not None:
                close()  # stops the model when the answer is complete or the reader left
            if recording is not None:
                answer.generation = recording.generation
        if buffer.strip():
            yield from self._one(buffer.strip(), answer, evidence, cited, shown)
        yield "draft", ""
        said = re.sub(r"\s*\[\d+\]", "", " ".join(shown))
        answers = bool(shown) and grounding.informative(said, checked_against, question)
        answers = answers and grounding.answers_the_kind(question, said)
        best = evidence[0]
        quote: Evidence | None = None
        if answers and best not in cited and grounding.answers_the_kind(question, best.text):
            # The model's sentence rests on another line than the best one: true, but perhaps
            # not what was asked. The best line is shown too, quoted, so the answer is there.
            quote = best
        elif answers and grounding.leaves_out(said, cited[0].text, question):
            # The sentence rests on a line but leaves out one of its facts ("66 psi" of "66 psi
            # front and 80 psi rear"): which one was asked, the line shows, quoted.
            quote = cited[0]
        elif not answers:
            # Quote the best line that holds what was asked (an amount, a date, a phone…): a
            # nearby line without it ("Tyres were changed in November" for "how much") is no answer.
            quote = next(
                (e for e in evidence if grounding.answers_the_kind(question, e.text)), None
            )
            if quote is None and not shown:
                answer.sources = with_quotes(sources, [])
                yield "text", NOT_FOUND
                return
        if quote is not None:
            if quote not in cited:
                cited.append(quote)
            said_it = f"{_says(sources, quote.source)}: «{quote.text}» [{quote.source}]"
            yield "text", (" " if shown else "") + said_it
        answer.grounded = True
        answer.sources = with_quotes(sources, cited)

    def _one(
        self,
        sentence: str,
        answer: Answer,
        evidence: list[Evidence],
        cited: list[Evidence],
        shown: list[str],
    ) -> Iterator[tuple[str, str]]:
        # The model's own [n] are not trusted: citations come from the check.
        sentence = re.sub(r"\s*\[\d+\]", "", sentence).strip()
        sentence = re.sub(r"^(?:A|Answer)\s*:\s*", "", sentence)  # a small model's "A: …" label
        if sentence.endswith("?"):
            # A question is no answer: the model echoed one of the chat's ("Tomas: Who else is
            # coming…?"), checkable word for word, and it was shown as if it answered.
            answer.dropped.append(sentence)
            return
        if not sentence or grounding.is_refusal(sentence):
            return
        _, support = grounding.check_linked(sentence, evidence, answer.question)
        if support is None:
            answer.dropped.append(sentence)
            return
        if support not in cited:
            cited.append(support)
        text = f"{sentence} [{support.source}]"
        yield "text", (" " if shown else "") + text
        shown.append(text)

    def _messages(self, question: str, sources: list[Source]) -> list[dict]:
        system = [{"role": "system", "content": SYSTEM_PROMPT}]
        current = turn_messages(question, sources)
        budget = self._model.n_ctx - self.max_answer_tokens - self._size(system + current)
        if budget < 0:
            raise QuestionError("the question and its notes do not fit in the model's context")
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
            messages += [
                *turn_messages(question, sources),
                {"role": "assistant", "content": answer},
            ]
        return messages

    def _size(self, messages: list[dict]) -> int:
        # ChatML adds about six tokens of markup per message.
        return sum(self._model.count_tokens(m["content"]) + 6 for m in messages)


def candidates(sources: list[Source]) -> list[Evidence]:
    """Every source cut into evidence lines; a record's citation ("Dentist, 14 Nov 2026 09:30
    at Clínica Almeida", "From Ana …, 3 Mar 2026 — Subject") is a line of its own, and the
    context of the others."""
    found: list[Evidence] = []
    for s in sources:
        context = citation(s.meta)
        # An e-mail's or an event's citation line says who wrote when, or what happens when and
        # where: an answer. A chat's ("Chat Carla Matos, 2 Feb 2026 20:01") only says when the
        # export's messages were written, and answered "When is Carla's birthday?" with it.
        if s.meta.get("kind") in ("email", "event"):
            found.append(Evidence(s.number, context, header=True, one_subject=True, record=s.text))
        lines = split_source(
            s.number, s.text, context, s.meta.get("heading", ""), mail=s.meta.get("kind") == "email"
        )
        # One chunk: its lines share its names ("Alfama" in the title of the note whose line
        # says "Check-out is at 11:00"; "Sintra" in the mail whose line says "Meet at Rossio").
        lines = [
            replace(
                e, record=s.text, one_subject=s.meta.get("kind") in ("email", "event", "contact")
            )
            for e in lines
        ]
        # A chat export's own "Chat: Carla Matos, 02 Feb 2026 20:01" line is not evidence.
        if s.meta.get("kind") == "chat":
            lines = [e for e in lines if not e.text.startswith("Chat:")]
        if s.meta.get("kind") == "chat":
            lines = replies_with_their_question(lines)
        found += lines
    return found


def replies_with_their_question(lines: list[Evidence]) -> list[Evidence]:
    """A chat message that follows a question ("Did you book the restaurant?" → "Yes, table for
    four at 20:45") says what it is about only with it: the question becomes its context."""
    out: list[Evidence] = []
    for before, line in zip([None, *lines], lines, strict=False):
        if (
            before is not None
            and before.text.rstrip().endswith("?")
            and not line.text.rstrip().endswith("?")
        ):
            line = replace(
                line, context=f"{line.context} > {before.text}" if line.context else before.text
            )
        out.append(line)
    return out


def with_quotes(sources: list[Source], evidence: list[Evidence]) -> list[Source]:
    """``sources`` with each one's quote: its lines among ``evidence``, in order."""
    return [
        replace(s, quote=" … ".join(e.text for e in evidence if e.source == s.number))
        for s in sources
    ]


def _says(sources: list[Source], number: int) -> str:
    kind = next((s.meta.get("kind") for s in sources if s.number == number), None)
    return {
        "email": "Your mail says",
        "event": "Your calendar says",
        "contact": "Your contacts say",
        "chat": "Your chats say",
    }.get(kind or "", "Your notes say")


def with_quotes_text(answer: Answer) -> str:
    """The verified answer with the quotes it rests on, as one text: what a peer (A2A, Nostr)
    or an app on /v1 receives. A quote the answer already shows is not repeated."""
    quotes = [
        f"[{s.number}] «{s.quote}»"
        for s in answer.sources
        if s.quote and f"«{s.quote}»" not in answer.text
    ]
    return answer.text + ("\n\n" + "\n".join(quotes) if quotes else "")


def answer_events(answer: Answer, *, owner: bool) -> Iterator[dict]:
    """The end of an answer's NDJSON stream. The owner gets every source in full and the
    sentences the verifier dropped (shown marked, never as fact); a peer gets only the quotes
    the answer rests on, by number: no path, chunk, snippet or metadata (DESIGN: one policy for
    peers on every channel)."""
    if owner:
        sources = [s.to_json() for s in answer.sources]
        yield {
            "type": "done",
            "answer": answer.text,
            "grounded": answer.grounded,
            "sources": sources,
            "dropped": answer.dropped,
            **({"model": answer.model} if answer.model else {}),
        }
    else:
        sources = [s.for_peer() for s in answer.sources if s.quote]
        yield {"type": "sources", "sources": sources}
        yield {
            "type": "done",
            "answer": answer.text,
            "grounded": answer.grounded,
            "sources": sources,
        }
