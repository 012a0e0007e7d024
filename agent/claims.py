"""What a text states: the claims of a line or of an answer sentence, normalised.

Words and their stems, sentences, months and weekdays, times, dates, numbers (in digits or in
words), e-mail addresses, phone numbers and proper names, each read so that two spellings of
one fact compare equal: "3,5" is "3.5", "May 12" is "12 May", "half past nine" is 9:30 or
21:30, "+351 21 000 000" holds "21000000", "João" folds to "joao".

``agent.kinds`` asks of a line whether it holds the kind of fact a question wants,
``agent.evidence`` scores lines by their words, and ``agent.grounding`` checks every claim of an
answer sentence against the evidence: all with these readers. Plain functions, no model.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import snowballstemmer

# --- words ------------------------------------------------------------------------------------

_STOP = frozenset(
    """a an the and or but if of to in on at by for with from about as into onto over under is
        are was were be been being am do does did done have has had having i me my mine we us
        our you your yours he him his she her hers it its they them their this that these those
        there here what which who whom whose when where why how much many any some all no not
        can could should would will shall may might must than then so such very just also too
        again did tell say says said please know let lets get got does doing want wants need
        needs note notes data quot pm""".split()
)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)


_STEMMER = snowballstemmer.stemmer("english")


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """ "insures" and "insurance" → "insur", "decided" → "decid": the Snowball English stemmer
    (the hand-written suffix list before it missed "insures"/"insurance")."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    return _STEMMER.stemWord(w)


def content_words(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text) if w.lower() not in _STOP]


# --- sentences --------------------------------------------------------------------------------

# A sentence ends at . ! ? followed by a space and a capital, a digit or a quote; not after a
# title or an initial ("Dr. Almeida", "J. Smith").
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”»)]?\s+(?=[A-Z0-9\"'“«(¿¡À-Ý])")
_NOT_AN_END = re.compile(
    r"(?:\b(?:Dr|Mr|Mrs|Ms|Prof|St|Sr|Jr|Mt|No|vs|etc|e\.g|i\.e|approx|Av|Rd)|\b[A-Z])\.$"
)


def sentences(text: str) -> list[str]:
    """``text`` cut into sentences, keeping "Dr. Almeida" and "3.5" whole."""
    out: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        piece = text[start : m.start()].strip()
        if _NOT_AN_END.search(piece):
            continue
        if piece:
            out.append(piece)
        start = m.end()
    rest = text[start:].strip()
    if rest:
        out.append(rest)
    return out


# --- months, weekdays, times, dates -----------------------------------------------------------

MONTHS = {
    m: i + 1
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ]
    )
    for m in names
}
MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b\.?"
WEEKDAY = r"(?:mon|tues?|wed(?:nes)?|thu(?:rs)?|fri|sat(?:ur)?|sun)(?:day)?\b"
TIME_RE = re.compile(
    r"\b(\d{1,2})(?:[:h](\d{2})|\.(\d{2})(?=\s*(?:[ap]\.?m\b|h\b|hours?\b)))\s*([ap])?\.?m?\b|\b(\d{1,2})\s*([ap])\.?m\b",
    re.I,
)
_DATE_DM = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?(?:\s+of)?\s+({MONTH})", re.I)
_DATE_MD = re.compile(rf"\b({MONTH})\s+(\d{{1,2}})(?:st|nd|rd|th)?\b", re.I)
_DATE_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})")
_DATE_NUM = re.compile(r"\b(\d{1,2})[/.](\d{1,2})[/.](\d{2,4})\b")


def times(text: str) -> set[tuple[int, int]]:
    found = set()
    for m in TIME_RE.finditer(text):
        if m.group(5):  # "9 pm"
            hour, minute, ampm = int(m.group(5)), 0, m.group(6)
        else:
            hour, minute, ampm = int(m.group(1)), int(m.group(2) or m.group(3) or 0), m.group(4)
        if ampm:
            hour = hour % 12 + (12 if ampm.lower() == "p" else 0)
        if hour < 24 and minute < 60:
            found.add((hour, minute))
    low = text.lower()
    for m in re.finditer(r"half past (\w+)", low):
        half = _UNITS.get(m.group(1)) or (int(m.group(1)) if m.group(1).isdigit() else None)
        if half is not None:
            found |= {(half, 30), (half + 12, 30)}
    for m in re.finditer(r"\b(\w+) o'clock", low):
        whole = _UNITS.get(m.group(1)) or (int(m.group(1)) if m.group(1).isdigit() else None)
        if whole is not None:
            found |= {(whole, 0), (whole + 12, 0)}
    # "seven forty in the morning"
    for m in re.finditer(
        r"\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve) (twenty|thirty|forty|fifty)(?:[ -](one|two|three|four|five|six|seven|eight|nine))?\b",
        low,
    ):
        hour, minute = _UNITS[m.group(1)], _TENS[m.group(2)] + _UNITS.get(m.group(3) or "zero", 0)
        found |= {(hour, minute), (hour + 12, minute)}
    if "noon" in low:
        found.add((12, 0))
    if "midnight" in low:
        found.add((0, 0))
    return found


def dates(text: str) -> set[tuple[int, int]]:
    """(month, day) pairs: "14 November", "November 14th", "the fourteenth of November", "2026-11-14"."""
    found = set()
    for m in _DATE_DM.finditer(text):
        found.add((MONTHS[m.group(2).lower().rstrip(".")], int(m.group(1))))
    for m in _DATE_MD.finditer(text):
        found.add((MONTHS[m.group(1).lower().rstrip(".")], int(m.group(2))))
    for m in _DATE_ISO.finditer(text):
        found.add((int(m.group(2)), int(m.group(3))))
    for m in _DATE_NUM.finditer(text):
        a, b = int(m.group(1)), int(m.group(2))
        found |= {(b, a), (a, b)}  # day/month or month/day: either reading is the same date written
    for m in re.finditer(rf"\b(?:the )?({'|'.join(_ORDINALS)}) of ({MONTH})", text, re.I):
        found.add((MONTHS[m.group(2).lower().rstrip(".")], _ORDINALS[m.group(1).lower()]))
    return found


def _date_time_spans(text: str) -> list[tuple[int, int]]:
    """Where the days and months of dates, and the times, are written: a number there is part
    of a date or a time, and is checked as one ("13 Apr" holds no amount 13)."""
    spans = [m.span(1) for m in _DATE_DM.finditer(text)] + [
        m.span(2) for m in _DATE_MD.finditer(text)
    ]
    spans += [m.span(g) for m in _DATE_ISO.finditer(text) for g in (2, 3)]
    spans += [m.span(g) for m in _DATE_NUM.finditer(text) for g in (1, 2)]
    spans += [m.span() for m in TIME_RE.finditer(text)]
    return spans


def only_a_date(piece: str) -> bool:
    """ "28 March.", "Monday.", "3/4." — a day and nothing said of it."""
    return all(
        w.isdigit()
        or re.fullmatch(r"\d+(?:st|nd|rd|th)", w)
        or w.lower() in _STOP
        or w.lower().rstrip(".") in MONTHS
        or re.fullmatch(WEEKDAY, w, re.I)
        for w in _WORD.findall(piece)
    )


# --- numbers ----------------------------------------------------------------------------------

NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?:\s\d{3}(?!\d))*")


def number_values(token: str) -> set[float]:
    """The value of a written number. A comma or dot followed by exactly three digits groups
    thousands ("12,000" = "12.000" = "12 000" = 12000); followed by one or two digits it is a
    decimal mark ("3,5" = "3.5"). One value only: reading "12,000" as 12 too let it match "12 months"."""
    t = token.replace("\u00a0", " ").replace(" ", "").strip()
    parts = re.split(r"([.,])", t)  # digits, separator, digits, …
    groups, seps = parts[0::2], parts[1::2]
    if not all(g.isdigit() for g in groups):
        return set()
    whole, decimal = groups[0], ""
    for _sep, g in zip(seps, groups[1:], strict=False):
        if len(g) == 3 and not decimal:
            whole += g  # a thousands separator
        elif not decimal:
            decimal = g  # a decimal mark
        else:
            return set()  # "1.5.2": a version or a code, not a number
    return {float(f"{whole}.{decimal}" if decimal else whole)}


_UNITS = {
    w: i
    for i, w in enumerate(
        """zero one two three four five six seven eight nine ten eleven twelve thirteen
            fourteen fifteen sixteen seventeen eighteen nineteen""".split()
    )
}
_TENS = {
    w: 10 * (i + 2)
    for i, w in enumerate(
        ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
    )
}
_ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "sixteenth": 16,
    "seventeenth": 17,
    "eighteenth": 18,
    "nineteenth": 19,
    "twentieth": 20,
    "thirtieth": 30,
}


def number_words(text: str) -> set[float]:
    """Numbers written in words ("twelve thousand", "four hundred and ten", "fourteenth"):
    the data may spell what the answer writes in digits."""
    values: set[float] = set()
    total = current = 0
    seen = False
    for word in re.findall(r"[a-z]+", text.lower()) + ["."]:
        if word in _UNITS or word in _TENS:
            current += _UNITS.get(word, 0) + _TENS.get(word, 0)
            seen = True
        elif word in _ORDINALS:
            current += _ORDINALS[word]
            seen = True
        elif word == "dozen":  # "a dozen", "two dozen"
            current = (current or 1) * 12
            seen = True
        elif word == "hundred" and seen:
            current *= 100
        elif word in ("thousand", "million") and seen:
            total += current * (1000 if word == "thousand" else 1_000_000)
            current = 0
        elif word == "and" and seen:
            continue
        else:
            if seen:
                values.add(float(total + current))
                if total + current and current and total:
                    values.add(float(current))
            total = current = 0
            seen = False
    return values


def plain_numbers(text: str) -> list[re.Match]:
    """The numbers of ``text`` that are not part of a date or a time."""
    spans = _date_time_spans(text)
    return [
        m for m in NUMBER.finditer(text) if not any(a < m.end() and m.start() < b for a, b in spans)
    ]


# --- e-mail addresses and phone numbers -------------------------------------------------------

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"(?<![\w.,])\+?\(?\d[\d\s().-]{5,}\d(?![\w])")


# --- names ------------------------------------------------------------------------------------

# Capitalised words that are not names: a sentence may start with them.
_COMMON = frozenset(
    """the a an and but or so yes no not it its it's this that these those there their they
        them he she his her we our you your i my me in on at by for to of from with about as
        after before during until since when where what which who why how if then also however
        both each every all some any one two first next last your according note notes based
        i'll i'm i've i'd i’ll i’m i’ve i’d
        sure sorry unfortunately currently today tomorrow yesterday here okay ok please monday
        tuesday wednesday thursday friday saturday sunday january february march april may june
        july august september october november december mr mrs ms dr doctor""".split()
)


def proper_names(sentence: str) -> list[str]:
    """Capitalised words an answer sentence uses as names ("Marco", "Alfama", "TAP")."""
    words = list(re.finditer(r"[^\W\d_][^\W_'’-]*(?:['’-][^\W_]+)*", sentence))
    names = []
    for i, m in enumerate(words):
        word = m.group()
        if not word[0].isupper():
            continue
        if i == 0:
            continue  # capitalised anyway; an invented first word still fails the word support
        base = re.sub(r"['’]s$", "", word)
        if base.lower() in _COMMON or base.lower() in MONTHS:
            continue
        names.append(base)
    return names


# The labels flurry's own parsers write before a value ("Starts: …", "Phone (cell): …"):
# a capitalised word, but no one's name.
_FIELD_LABELS = frozenset(
    """starts ends repeats next location phone email e-mail note notes address organisation
        organization birthday title chat from to date subject cc url role nickname""".split()
)


def names_told(line: str) -> list[str]:
    """The names a line tells, as an answer to "who" or "which company": capitalised words
    that do not merely start a sentence and are not a field's label. A chat's speaker
    ("Tomas: lactose intolerant") and a field's value ("Landlord: Manuel Figueiredo") count."""
    names = []
    for m in re.finditer(r"[^\W\d_][^\W_'’-]*(?:['’-][^\W_]+)*", line):
        word, before, after = m.group(), line[: m.start()].rstrip(), line[m.end() :]
        if not word[0].isupper():
            continue
        label = after.lstrip().startswith(":") or re.match(r"\s*\([^)]*\)\s*:", after)
        if label and word.lower() in _FIELD_LABELS:
            continue
        sentence_start = not before or (before[-1] in ".!?" and not _NOT_AN_END.search(before))
        if sentence_start and not label:
            continue
        if (
            re.fullmatch(WEEKDAY, word, re.I)
            or any(c.isdigit() for c in word)  # "T19" of a timestamp, "A4": no one's name
            or word.lower() in _COMMON
            or word.lower().rstrip(".") in MONTHS
        ):
            continue
        names.append(re.sub(r"['’]s$", "", word))
    return names


def fold(text: str) -> str:
    """Lower case without diacritics: "João" is "joao"."""
    return "".join(
        c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c)
    )
