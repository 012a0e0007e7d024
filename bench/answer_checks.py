"""How the answer benchmark judges an answer: right, abstained, and which claims are unsupported.

Written apart from the node's own verifier (agent/), on purpose: the benchmark must be able to
catch that verifier's mistakes, so it shares no code with it.

- ``is_right``: a gold string, case/space/accent-folded, appears in the answer (a phone number
  is compared by its digits, so "+351 912 345 678" and "912345678" are the same).
- ``abstains``: the answer says the data does not hold the answer ("I don't find that in
  your data", "not mentioned in your notes", …).
- ``unsupported``: the shown sentences that make a claim (a number, a date, a time, an e-mail
  address, a proper name, a quoted span, a citation) that their cited evidence does not hold.
  A sentence's evidence is the sources it cites with [n]; a sentence citing nothing is held to
  the sources the whole answer cites, or, when it cites none, to all its sources. Words that
  the question itself uses are not claims (repeating "Joao Rocha" from the question invents
  nothing). Known blind spots: a sentence's first word is taken for a name only if it is
  capitalised elsewhere in the answer too, and claims in words other than numbers ("the
  blue one") are not checked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

MONTHS = (
    "january february march april may june july august september october november december".split()
)
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        """zero one two three four five six seven eight nine ten eleven twelve thirteen
            fourteen fifteen sixteen seventeen eighteen nineteen twenty""".split()
    )
}
NUMBER_WORDS.update(
    {
        "thirty": 30,
        "forty": 40,
        "fifty": 50,
        "sixty": 60,
        "seventy": 70,
        "eighty": 80,
        "ninety": 90,
        "hundred": 100,
        "thousand": 1000,
    }
)
# Words a sentence may start with, or that are capitalised without naming anyone.
COMMON = set(
    """a an and any are as at be because but by can could did do does dr dear for from had has
        have he her here hi his how i if in is it its i'm i'll i've let mr mrs ms my no not note
        notes of ok okay on or our please she so sorry sure that the their then there these they
        this those to unfortunately us was we were what when where which who why will with would
        yes you your yours also however according based answer source sources data evidence
        quote quoted see says said""".split()
)

ABSTAIN = re.compile(
    r"not (?:\w+ ){0,3}in your (?:data|notes|records|files|documents)"
    r"|(?:don't|do not|didn't|did not|can't|cannot|couldn't|could not) (?:\w+ )?(?:find|see|locate|know|tell)"
    r"|no (?:information|mention|record|details?|data)\b"
    r"|(?:isn't|is not|aren't|are not|wasn't|was not|not) (?:\w+ )?(?:mentioned|specified|stated|given|provided|found|available|listed|included)"
    r"|(?:doesn't|does not|don't|do not|didn't|did not) (?:\w+ )?(?:mention|say|specify|state|include|contain|list|provide)"
    r"|nothing (?:about|on|in)\b"
)


def fold(text: str) -> str:
    """Lower case, accents dropped, spaces collapsed, "3rd of March" → "3 march"."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = " ".join(text.replace("\u2019", "'").split())
    text = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text)
    return re.sub(r"(\d) of (" + "|".join(MONTHS) + r")\b", r"\1 \2", text)


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def is_right(answer: str, gold: tuple[str, ...]) -> bool:
    shown = fold(answer)
    for g in gold:
        f = fold(g)
        # A number is not part of a longer one ("3 March" is not in "13 March"); words may be
        # inflected ("peanut" in "peanuts").
        pattern = (
            (r"(?<!\d)" if f[:1].isdigit() else "")
            + re.escape(f)
            + (r"(?!\d)" if f[-1:].isdigit() else "")
        )
        if re.search(pattern, shown):
            return True
        d = digits(g)
        # A phone number: the last nine digits, whatever the spacing or the country code.
        phone = len(d) >= 7 and sum(ch.isdigit() for ch in g) >= 0.7 * sum(ch.isalnum() for ch in g)
        if phone and d[-9:] in digits(answer):
            return True
    return False


def abstains(answer: str) -> bool:
    return bool(ABSTAIN.search(fold(answer)))


QUOTED = re.compile(r"«([^»]+)»|“([^”]+)”|\"([^\"]+)\"")


def without_quotes(answer: str) -> str:
    """The answer with its quoted spans taken out: what the model phrased, not what it copied."""
    return QUOTED.sub(" ", answer)


@dataclass(frozen=True)
class Claim:
    kind: str  # number, date, month, weekday, email, name, quote, citation
    text: str


@dataclass(frozen=True)
class Unsupported:
    sentence: str
    claims: tuple[Claim, ...]


def sentences(answer: str) -> list[str]:
    """Sentences, each keeping the [n] markers that follow its full stop."""
    parts = [p for p in re.split(r"(?<=[.!?])\s+(?=[A-Z«\"“(\[])|\n+", answer) if p.strip()]
    out: list[str] = []
    for part in parts:
        lead = re.match(r"^((?:\s*\[\d+\])+)\s*", part)
        if lead and out:
            out[-1] += lead.group(1)
            part = part[lead.end() :]
        if part.strip():
            out.append(part.strip())
    return out


_MON = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DATE = re.compile(
    r"\b(\d{1,2})(?:st|nd|rd|th)?(?: of)? " + _MON + r"|\b" + _MON + r" (\d{1,2})(?:st|nd|rd|th)?\b"
    r"|\b\d{4}-(\d{2})-(\d{2})|\b(\d{1,2})/(\d{1,2})/\d{2,4}\b",
    re.I,
)


def _dates(text: str) -> list[tuple[int, int]]:
    """(day, month) of each date written in ``text``: "14 May", "May 14th", "2026-05-14", "14/05/2026"."""
    out = []
    for m in _DATE.finditer(text):
        g = m.groups()
        if g[0]:
            day, month = int(g[0]), _month(g[1])
        elif g[2]:
            day, month = int(g[3]), _month(g[2])
        elif g[4]:
            day, month = int(g[5]), int(g[4])
        else:
            day, month = int(g[6]), int(g[7])
        if 1 <= day <= 31 and 1 <= month <= 12:
            out.append((day, month))
    return out


def _month(name: str) -> int:
    return [m[:3] for m in MONTHS].index(name[:3].lower()) + 1


_NUMBER = re.compile(r"\+?\d+(?:[.,:/-]\d+)*(?: \d{3}(?!\d))*(?:\s?[ap]\.?m\b\.?)?", re.I)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_NAME = re.compile(r"\b(?:[A-Z][\w'-]*[a-z][\w'-]*|[A-Z]{2,}[\w-]*)\b")


def claims(sentence: str, capitalised_elsewhere: set[str]) -> list[Claim]:
    found: list[Claim] = []
    body = re.sub(r"\[\d+\]", " ", sentence)
    for n in re.findall(r"\[(\d+)\]", sentence):
        found.append(Claim("citation", n))
    for q in QUOTED.finditer(body):
        span = next(g for g in q.groups() if g)
        if len(span.strip()) >= 3:
            found.append(Claim("quote", span))
    # Claims inside a quote are checked as the quote.
    rest = QUOTED.sub(" ", body)
    for e in _EMAIL.findall(rest):
        found.append(Claim("email", e))
    rest = _EMAIL.sub(" ", rest)
    for day, month in _dates(rest):
        found.append(Claim("date", f"{month:02d}-{day:02d}"))
    rest = _DATE.sub(" ", rest)
    for m in _NUMBER.finditer(rest):
        found.append(Claim("number", m.group(0).strip()))
    for word in re.findall(r"[A-Za-z]+", rest):
        lw = word.lower()
        if lw in NUMBER_WORDS:
            found.append(Claim("number", lw))
        elif lw in MONTHS or (lw in {m[:3] for m in MONTHS} and word[0].isupper() and lw != "may"):
            found.append(Claim("month", lw[:3]))
        elif lw in WEEKDAYS:
            found.append(Claim("weekday", lw[:3]))
    first = re.match(r"\W*([\w'-]+)", rest)
    first_word = first.group(1) if first else ""
    for m in _NAME.finditer(rest):
        word = m.group(0)
        lw = fold(word).removesuffix("'s")
        if (
            lw in COMMON
            or lw in MONTHS
            or lw in WEEKDAYS
            or lw in {x[:3] for x in MONTHS + WEEKDAYS}
        ):
            continue  # months and weekdays are checked as dates
        if (
            m.start() == (first.start(1) if first else -1)
            and word == first_word
            and word not in capitalised_elsewhere
        ):
            continue  # a sentence's first word: a name only if the answer capitalises it elsewhere too
        found.append(Claim("name", word))
    return found


class Evidence:
    """What a set of sources says, in the forms the claims are compared with."""

    def __init__(self, texts: list[str], fielded: bool = False) -> None:
        # fielded: a record with fields (an event, a mail, a chat), whose citation line is
        # written from the fields rather than copied from the text.
        self.fielded = fielded
        joined = "\n".join(texts)
        self.folded = fold(joined)
        self.flat = re.sub(r"[^\w@.+-]+", " ", self.folded)
        self.words = set(re.findall(r"[\w'-]+", self.folded)) | set(re.findall(r"\w+", self.folded))
        self.numbers = set()
        for m in _NUMBER.finditer(joined):
            self.numbers |= _number_forms(m.group(0))
        for m in re.finditer(r"\d+", joined):
            self.numbers.add(m.group(0).lstrip("0") or "0")
        self.months = {
            w[:3]
            for w in re.findall(r"[a-z]+", self.folded)
            if w[:3] in {m[:3] for m in MONTHS} and (w in MONTHS or len(w) == 3)
        }
        for m in re.finditer(r"\b\d{4}-(\d{2})-\d{2}|\b\d{1,2}/(\d{1,2})/\d{2,4}", joined):
            month = int(m.group(1) or m.group(2))
            if 1 <= month <= 12:
                self.months.add(MONTHS[month - 1][:3])
        self.dates = {f"{month:02d}-{day:02d}" for day, month in _dates(joined)}
        self.weekdays = {
            w[:3]
            for w in re.findall(r"[a-z]+", self.folded)
            if w in WEEKDAYS or w in {d[:3] for d in WEEKDAYS}
        }
        self.weekdays |= {
            d[:3] for d in WEEKDAYS if re.search(r"byday=[^\n]*\b" + d[:2], self.folded)
        }
        for m in re.finditer(r"\b(\d{4})-(\d{2})-(\d{2})", joined):
            with contextlib.suppress(ValueError):
                self.weekdays.add(WEEKDAYS[dt.date(*map(int, m.groups())).weekday()][:3])

        # A date's month and weekday are words of the record too ("2026-05-14" says "Thu", "May").
        self.words |= {m for m in MONTHS if m[:3] in self.months} | {m[:3] for m in self.months}
        self.words |= {d for d in WEEKDAYS if d[:3] in self.weekdays} | set(self.weekdays)

    def holds(self, claim: Claim, question_words: set[str]) -> bool:
        if claim.kind == "number":
            if claim.text in NUMBER_WORDS:
                return (
                    claim.text in self.words
                    or str(NUMBER_WORDS[claim.text]) in self.numbers
                    or claim.text in question_words
                )
            forms = _number_forms(claim.text)
            if forms & self.numbers:
                return True
            d = digits(claim.text)
            if len(d) >= 6 and any(
                len(n) >= 6 and (n.endswith(d) or d.endswith(n)) for n in self.numbers
            ):
                return True  # a phone number with or without its country code
            # A time or a date written otherwise than in the record ("17:15" of "17:15:00",
            # "12/05" of "12 May"): each part must be there. Not an amount: "13,000" is one number.
            parts = re.split(r"[/:-]", claim.text.strip("+"))
            if 2 <= len(parts) <= 3 and all(
                p.strip().isdigit() and p.strip().strip("0") for p in parts
            ):
                return all(p.strip().lstrip("0") in self.numbers for p in parts)
            return d in question_words
        if claim.kind == "date":
            return claim.text in self.dates
        if claim.kind == "month":
            return claim.text in self.months
        if claim.kind == "weekday":
            return claim.text in self.weekdays or claim.text in {w[:3] for w in question_words}
        if claim.kind == "email":
            return fold(claim.text) in self.folded
        if claim.kind == "name":
            w = fold(claim.text).removesuffix("'s")
            if w in self.words or w in question_words or w.rstrip("s") in self.words:
                return True
            # Part of a longer token of the record: "BU-25" of the plate "64-BU-25".
            return re.search(r"(?<!\w)" + re.escape(w) + r"(?!\w)", self.folded) is not None
        if claim.kind == "quote":
            pieces = [p for p in re.split(r"…|\.\.\.", fold(claim.text)) if p.strip(" .,;:")]
            if all(_flat(p) in _flat(self.folded) for p in pieces):
                return True
            if not self.fielded:
                return False
            # A line made of the record's fields (an event's "Dentist, Thu 14 May 2026 15:30 at
            # Clínica") is not verbatim in it: every word of it must be, and every claim hold.
            inner = claims(claim.text, set())
            words = [w for w in re.findall(r"[a-z]{3,}", fold(claim.text))]
            return all(w in self.words for w in words) and all(
                self.holds(c, question_words) for c in inner
            )
        return True


def _flat(text: str) -> str:
    return " ".join(re.sub(r"[^\w@.+-]+", " ", text).split())


def _number_forms(token: str) -> set[str]:
    """The forms a number is compared in: its digits without leading zeros; a 12-hour time also
    as the 24-hour one ("7:30 pm" → "1930")."""
    t = token.strip().lower()
    ampm = re.search(r"([ap])\.?m\.?$", t)
    core = re.sub(r"\s?[ap]\.?m\.?$", "", t)
    forms = {digits(core).lstrip("0") or "0"}
    if ampm:
        hm = re.match(r"(\d{1,2})(?:[:.h](\d{2}))?$", core)
        if hm:
            hour = int(hm.group(1)) % 12 + (12 if ampm.group(1) == "p" else 0)
            forms.add((f"{hour}{hm.group(2) or '00'}").lstrip("0") or "0")
            forms.add(str(hour))
    return forms


def source_texts(source) -> str:
    """What a source's record says: its text and its citation metadata (sender, date, place),
    not the quote the answer path drew from it: that is checked, not trusted."""
    meta = getattr(source, "meta", {}) or {}
    values = []
    for value in meta.values():
        values += [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return "\n".join([source.text, *values, str(getattr(source, "path", ""))])


def unsupported(answer: str, sources: list, question: str) -> list[Unsupported]:
    """The shown sentences with a claim their cited evidence does not hold."""
    by_number = {s.number: s for s in sources}
    cited_anywhere = {int(n) for n in re.findall(r"\[(\d+)\]", answer) if int(n) in by_number}
    default = [by_number[n] for n in sorted(cited_anywhere)] or list(sources)
    question_words = set(re.findall(r"[\w'-]+", fold(question))) | set(
        re.findall(r"\w+", fold(question))
    )
    question_words |= {digits(n) for n in re.findall(r"\d[\d ]*", question)}
    capitalised = set(_NAME.findall(answer))
    first_words = [re.match(r"\W*([\w'-]+)", s) for s in sentences(answer)]
    counted = [w for w in re.findall(r"\b[A-Z][\w'-]+", answer)]
    capitalised = {
        w
        for w in capitalised
        if counted.count(w) > sum(1 for f in first_words if f and f.group(1) == w)
    }
    out = []
    for sentence in sentences(answer):
        cited = [int(n) for n in re.findall(r"\[(\d+)\]", sentence)]
        chosen = [by_number[n] for n in cited if n in by_number] or default
        evidence = Evidence(
            [source_texts(s) for s in chosen],
            any((getattr(s, "meta", {}) or {}).get("kind") for s in chosen),
        )
        bad = []
        for claim in claims(sentence, capitalised):
            if claim.kind == "citation":
                if int(claim.text) not in by_number:
                    bad.append(claim)
            elif not evidence.holds(claim, question_words):
                bad.append(claim)
        if bad:
            out.append(Unsupported(sentence, tuple(bad)))
    return out
