"""The check every sentence of a grounded answer passes before it is shown.

A small model asked about a whole chunk invents: it changes digits, makes up phone numbers and
names. So an answer is built the other way round (see ``agent.answer``):

1. The retrieved chunks are cut into evidence lines and the best few are chosen
   (``agent.evidence``).
2. The model reads only those lines (``agent.evidence.prompt``) and phrases the answer.
3. Here, every number, date, time, e-mail address, phone number, proper name and quoted span
   of each answer sentence must be in the evidence (normalised by ``agent.claims``: "3,5" is
   "3.5", "May 12" is "12 May", "+351 21 000 000" holds "21000000"), and most of the words it
   adds to the question must come from the evidence. A sentence that fails is dropped; when
   nothing useful is left, the best evidence line itself is the answer, quoted.

Nothing here loads a model: the verifier is plain functions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from agent.claims import (
    EMAIL,
    MONTHS,
    NUMBER,
    PHONE,
    TIME_RE,
    content_words,
    dates,
    number_values,
    number_words,
    plain_numbers,
    proper_names,
    times,
)
from agent.evidence import Evidence
from agent.kinds import SOFT_KINDS, asks_for, holds

NOT_FOUND = "I don't find that in your data."
# Share of the content words an answer sentence adds to the question that must be in the evidence.
MIN_WORD_SUPPORT = 0.6

_QUOTED = re.compile(r"[\"“«]([^\"”»]{3,}?)[\"”»]")


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _norm_text(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


@dataclass(frozen=True)
class Check:
    """Why a sentence passed or failed: the claims not found in the evidence."""

    sentence: str
    missing: tuple[str, ...]
    word_support: float

    @property
    def ok(self) -> bool:
        return not self.missing and self.word_support >= MIN_WORD_SUPPORT


def check(sentence: str, evidence: str, question: str = "", words_from: str | None = None) -> Check:
    """Is every checkable claim of ``sentence`` in ``evidence``?

    ``evidence`` is one line with its record's context (see ``check_linked``): claims must be
    linked, not found scattered over several records. ``words_from`` (default ``evidence``) is
    the text the sentence's plain words may come from: all the evidence the model read.

    Claims: e-mail addresses, phone numbers, dates, times, numbers (amounts, measures, years),
    quoted spans and names; plus the share of its content words found in the evidence or the
    question (what is neither is the model's invention). Words of the question may be repeated
    ("the dentist appointment is…"); its numbers and names are not evidence."""
    s = re.sub(r"\[\d+\]", "", sentence)
    missing: list[str] = []
    ev_low = evidence.lower()
    ev_digits_runs = [_digits(m.group()) for m in PHONE.finditer(evidence)]
    ev_numbers: set[float] = set()
    for m in plain_numbers(evidence):
        ev_numbers |= number_values(m.group())
    ev_numbers |= number_words(evidence)
    ev_dates, ev_times = dates(evidence), times(evidence)
    ev_norm = _norm_text(evidence)

    for m in EMAIL.finditer(s):
        if m.group().lower().rstrip(".") not in ev_low:
            missing.append(m.group())
    s_rest = EMAIL.sub(" ", s)
    for m in PHONE.finditer(s_rest):
        d = _digits(m.group())
        if len(d) < 7:
            continue
        # "+351 21 000 000" holds "21000000"; a number given without its country code is the same.
        if not any(d.endswith(e) or e.endswith(d) for e in ev_digits_runs if len(e) >= 7):
            missing.append(m.group().strip())
        s_rest = s_rest.replace(m.group(), " ")
    for dm in dates(s_rest):
        if dm not in ev_dates:
            missing.append(f"date {dm[1]}/{dm[0]}")
    for t in times(re.sub(r"half past|o'clock", " ", s_rest)) if TIME_RE.search(s_rest) else set():
        if t not in ev_times:
            missing.append(f"time {t[0]}:{t[1]:02d}")
    for m in plain_numbers(s_rest):  # a date's or a time's numbers are checked above, as one
        values = number_values(m.group())
        # "on the 14th" names the day of a date; any other number must be a number of the evidence.
        ordinal = re.match(r"(?:st|nd|rd|th)\b", s_rest[m.end() :])
        if not values & ev_numbers and not (
            ordinal and any(v == dm[1] for v in values for dm in ev_dates)
        ):
            missing.append(m.group())
    for m in _QUOTED.finditer(s):
        if _norm_text(m.group(1)) not in ev_norm:
            missing.append(f"«{m.group(1)}»")
    q_low = question.lower()
    for name in proper_names(s):
        if name.lower() not in ev_low and name.lower() not in q_low:
            missing.append(name)

    # What the sentence adds to the question must come from the evidence: the question's own
    # words prove nothing ("The Sintra hike is in the mountains." adds only "mountains").
    # Numbers and month names are checked above, however written.
    asked = set(content_words(question))
    words = [
        w
        for w in content_words(s)
        if not any(c.isdigit() for c in w) and w.rstrip(".") not in MONTHS and w not in asked
    ]
    known = set(content_words(evidence if words_from is None else words_from))
    support = sum(1 for w in words if w in known) / len(words) if words else 1.0
    return Check(sentence, tuple(missing), support)


def check_linked(
    sentence: str, evidence: Sequence[Evidence], question: str = ""
) -> tuple[Check, Evidence | None]:
    """``sentence`` checked against each evidence line in its record's context (``Evidence.full``:
    the line with its citation, heading or contact name), the lines sharing most of its words
    first. Every claim must be in one line: a phone number of one contact and the name of
    another, each somewhere in the evidence, is not a fact of the data. Returns the check and
    the line it rests on (None, with the best line's check, when no line holds every claim)."""
    words = set(content_words(sentence))
    ordered = sorted(evidence, key=lambda e: (-len(words & set(content_words(e.full))), -e.score))
    everything = "\n".join(e.full for e in evidence)
    first: Check | None = None
    for e in ordered:
        result = check(sentence, e.full, question, words_from=everything)
        if result.ok:
            return result, e
        first = first or result
    return first or check(sentence, "", question), None


_REFUSAL = re.compile(
    r"\b(i (do not|don't|cannot|can't) (know|find|see|tell|say)|(doesn't|does not|do not|don't) (say|mention|specify|state|contain)"
    r"|not (mentioned|specified|stated|given|provided|in the note)|no (information|mention)|unknown|i'm sorry|i am sorry|as an ai)\b",
    re.I,
)


def is_refusal(sentence: str) -> bool:
    return bool(_REFUSAL.search(sentence))


def informative(sentence: str, evidence: str, question: str) -> bool:
    """Does the sentence tell something the question did not already say ("The kitchen
    renovation was decided." does not)? Its new words must come from the evidence."""
    sentence = re.sub(r"\[\d+\]", " ", sentence)  # "[1]" is the citation, not a number said
    new = set(content_words(sentence)) - set(content_words(question))
    ev = set(content_words(evidence))
    return any(w in ev for w in new) or bool(NUMBER.search(sentence))


def leaves_out(sentence: str, line: str, question: str) -> bool:
    """Does ``sentence`` leave out a fact of ``line`` (a number, a date, a time, a phone, an
    e-mail address, a name) that the question does not already give? Then the line is quoted
    with it: the sentence may have kept the wrong one of two."""
    return bool(check(line, sentence, question).missing)


def answers_the_kind(question: str, text: str) -> bool:
    """Does ``text`` hold the kind of fact the question asks for (a date for "when"…)?"""
    kind = asks_for(question)
    return kind is None or kind in SOFT_KINDS or holds(kind, text)
