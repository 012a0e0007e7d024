"""The kind of fact a question asks for, and whether a line holds one.

"When" wants a date or a time, "how much" an amount, "phone" a phone number, "who" a name…
(``asks_for``); ``holds`` says whether a line has one. ``agent.evidence`` scores and filters
the lines by it, and ``agent.grounding`` checks that an answer gives the kind asked for.
"""

from __future__ import annotations

import re

from agent.claims import (
    EMAIL,
    MONTH,
    MONTHS,
    PHONE,
    TIME_RE,
    WEEKDAY,
    dates,
    names_told,
    number_words,
    plain_numbers,
)

_POSTCODE = re.compile(r"\d{4}-\d{3}")
_CURRENCY = (
    r"(?:€|\$|£|¥|eur(?:os?)?\b|usd\b|dollars?\b|pounds?\b|gbp\b|chf\b|francs?\b|reais\b|r\$)"
)
_AMOUNT_RE = re.compile(rf"{_CURRENCY}\s*\d|\d[\d.,\s]*\s*(?:{_CURRENCY}|k\b)|\bfree\b", re.I)

# What a question asks for → a pattern the answer line must hold.
_MONEY_WORDS = r"\b(cost|costs|price|budget|amount|pay|paid|pays|spend|spent|owe|premium|fee|salary|rent|bill|total|charge|charges|quote|quoted|invoice|worth|euros?|dollars?)\b"
_ASKS = [
    (re.compile(r"\b(e-?mail|mail address)\b", re.I), "email"),
    (
        re.compile(
            r"\baddress\b|\bwhere (?:does|do|did) [\w' ]{1,30} live\b|\bpost(?:al )?code\b|\bzip code\b",
            re.I,
        ),
        "address",
    ),
    (
        re.compile(
            r"\b(phone|telephone|mobile|cell|number to call|call \w+ on|ring|contact number)\b|['’]s number\b",
            re.I,
        ),
        "phone",
    ),
    # "How much checked baggage": a quantity, not money, unless the question is about money.
    # "How many months of rent was the deposit?" is a count, whatever it counts.
    (re.compile(r"\bhow many\b", re.I), "number"),
    # "How much is the insurance?" is money; "How much checked baggage…" is a quantity.
    (
        re.compile(
            rf"\bhow expensive\b|\bhow much (?:is|are|was|were|do|does|did|will|would|should|to|for|in)\b|{_MONEY_WORDS}",
            re.I,
        ),
        "amount",
    ),
    (re.compile(r"\bwhat time\b|\bat what hour\b", re.I), "time"),
    (re.compile(r"\bwhat size\b|\bwhich size\b", re.I), "size"),
    (re.compile(r"\bhow often\b|\bhow frequently\b", re.I), "frequency"),
    # Before "when": "At how many kilometres is the oil change due?" wants a number, not a date.
    (
        re.compile(
            r"\bhow (much|many|long|far|old|tall|high|wide|deep|fast|heavy|big)\b|\bwhat (size|number)\b",
            re.I,
        ),
        "number",
    ),
    (
        re.compile(
            r"\bwhen\b|\bwhat (day|date)\b|\bwhich (day|date|month)\b|\bdeadline\b|\bdue\b", re.I
        ),
        "when",
    ),
    (
        re.compile(r"\bwhere\b|\bwhich (?:room|floor|building|platform|gate|terminal)\b", re.I),
        "where",
    ),
    # A person or a thing with a proper name: "Who is the host?", "the landlord's name",
    # "Which company insures the car?" — the answer line names one.
    (
        re.compile(
            r"^\s*(?:who|whom|whose)\b|\bwho (?:is|was|are|were|did|does|do|will)\b|\bname\b|\b(?:which|what) "
            r"(?:company|city|town|country|restaurant|band|doctor|dentist|book|airline|hotel|shop|store|bank|school|"
            r"clinic|firm|insurer|person|teacher|coach|friend|street|station|airport|brand|app)\b",
            re.I,
        ),
        "named",
    ),
]


# Kinds that only weigh the score: a place is too varied to refuse a line for lacking one.
SOFT_KINDS = frozenset({"where"})
_PLACE = re.compile(
    r"\b(?:at|in|near|by|outside|behind|under|inside|from|to)\s+(?:the\s+)?([A-Z][\w'’-]+)"
)


# "How much" wants money: a currency, or a number in a line about a price, a bill, a budget. A
# number of months, people or kilometres is not an amount ("renews every 12 months").
_AMOUNT_WORD = re.compile(
    r"\b(?:cost|price|paid|pay|total|budget|fee|charge|rent|premium|salary|bill|sum|invoice|owe|quote|deposit|amount|instal?ment|refund)",
    re.I,
)
_NOT_MONEY_UNIT = re.compile(
    r"\s*(?:months?|years?|days?|weeks?|hours?|h|min(?:utes?)?|people|persons?|guests?|times|km|kg|g|m|cm|mm|%|kwh|litres?|liters?|l)\b",
    re.I,
)
_NUMBER_WORD = r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|thousand|million)"
_STREET = re.compile(
    r"\b(?:address|rua|avenida|av\.|street|st\.|avenue|road|rd\.|lane|praça|praca|travessa|largo|calçada|estrada|\d{4}-\d{3})",
    re.I,
)


def _holds_amount(text: str) -> bool:
    if _AMOUNT_RE.search(text) or re.search(rf"\b{_NUMBER_WORD}\s+{_CURRENCY}", text, re.I):
        return True
    money = [m for m in plain_numbers(text) if not _NOT_MONEY_UNIT.match(text[m.end() :])]
    return bool(money) and bool(_AMOUNT_WORD.search(text))


def asks_for(question: str) -> str | None:
    """What kind of fact the question wants, if one the data can be searched for."""
    for pattern, kind in _ASKS:
        if pattern.search(question):
            return kind
    return None


def holds(kind: str, text: str) -> bool:
    if kind == "email":
        return bool(EMAIL.search(text))
    if kind == "phone":  # seven digits or more; a postcode ("1100-053") is none
        return any(
            len(re.sub(r"\D", "", m.group())) >= 7 and not _POSTCODE.fullmatch(m.group().strip())
            for m in PHONE.finditer(text)
        )
    if kind == "amount":
        return _holds_amount(text)
    if kind == "address":
        return bool(_STREET.search(text))
    if kind == "time":
        return bool(TIME_RE.search(text)) or bool(
            re.search(
                r"\b(noon|midnight|half past|o'clock|morning|evening|afternoon)\b", text, re.I
            )
        )
    if kind == "when":
        return bool(
            dates(text)
            or TIME_RE.search(text)
            or re.search(
                rf"\b({MONTH}|{WEEKDAY}|tomorrow|tonight|today|yesterday|weekend|spring|summer|autumn|fall|winter|(?:19|20)\d\d"
                r"|(?:next|last|this|every) (?:week|month|year)|\d{1,2}(?:st|nd|rd|th)\b"
                r"|easter|christmas|carnival|new year|holidays?)",
                text,
                re.I,
            )
        )
    if kind == "size":  # "size M", "XL", "42", "30 cm": a size, not a price
        return bool(
            re.search(r"\b(?:XXS|XS|S|M|L|XL|XXL|XXXL|small|medium|large|size)\b", text)
        ) or any(
            not _AMOUNT_RE.match(text[m.start() :])
            and not re.match(rf"\s*{_CURRENCY}", text[m.end() :], re.I)
            for m in plain_numbers(text)
        )
    if kind == "named":  # a name the line tells, or a person by relation
        return bool(names_told(text)) or bool(
            re.search(
                r"\b(?:parents|mother|father|mum|mom|dad|brother|sister|wife|husband|son|daughter|cousins?|friends?|"
                r"neighbou?rs?|grandparents|kids|children|family)\b",
                text,
                re.I,
            )
        )
    if kind == "frequency":  # "every three weeks", "twice a month", "weekly"
        return bool(
            re.search(
                r"\b(every|each|daily|weekly|monthly|yearly|annually|once|twice|times a|per (day|week|month|year)|FREQ=)",
                text,
                re.I,
            )
        )
    if kind == "number":
        # "how many": a count, in digits or words ("four", "a dozen"); a date, a time or an
        # ordinal ("the 8th day of each month") is none.
        counts = [
            m for m in plain_numbers(text) if not re.match(r"(?:st|nd|rd|th)\b", text[m.end() :])
        ]
        return bool(counts or number_words(text))
    if kind == "where":  # "at Rossio station", "in the hall cupboard": a named place, not a day
        return any(
            m.group(1).lower() not in MONTHS and not re.match(WEEKDAY, m.group(1), re.I)
            for m in _PLACE.finditer(text)
        ) or bool(re.search(r"\b(?:in|at|on|under|behind|inside) the \w+", text))
    return True
