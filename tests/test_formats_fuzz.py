"""Malformed input thrown at every parser (hypothesis): no exception escapes, nothing hangs,
and a refusal is a Skip with a reason. What a parser does return must chunk and seal: every
piece of metadata is plain JSON."""

from __future__ import annotations

import json

import pytest
from format_samples import (
    BANK_LETTER,
    CALENDAR,
    CONTACTS,
    HTML_ARTICLE,
    MBOX_MESSAGES,
    OBSIDIAN,
    PDF_PAGES,
    TELEGRAM,
    WHATSAPP,
    make_pdf,
    mbox,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.parse_process import chunks_of
from store.parsers import Record, Skip
from store.parsers.registry import CALENDAR as ICS
from store.parsers.registry import CONTACTS as VCF
from store.parsers.registry import EMAIL, HTML, MARKDOWN, MBOX, PDF, TEXT
from store.parsers.registry import TELEGRAM as TG

SAMPLES = {
    "markdown": (MARKDOWN, OBSIDIAN.encode()),
    "text": (TEXT, WHATSAPP.encode()),
    "html": (HTML, HTML_ARTICLE.encode()),
    "pdf": (PDF, make_pdf(PDF_PAGES, title="t")),
    "email": (EMAIL, BANK_LETTER.encode()),
    "mbox": (MBOX, mbox(MBOX_MESSAGES).encode()),
    "calendar": (ICS, CALENDAR.encode()),
    "contacts": (VCF, CONTACTS.encode()),
    "telegram": (TG, json.dumps(TELEGRAM).encode()),
}
FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _check(result) -> None:
    if isinstance(result, Skip):
        assert isinstance(result.reason, str) and result.reason.strip()
        return
    assert isinstance(result, list) and result
    for record in result:
        assert isinstance(record, Record)
        json.dumps(record.meta)
        for text, meta in chunks_of(record):
            assert isinstance(text, str)
            json.dumps(meta)


@st.composite
def mutated(draw, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "duplicate"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=40))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 200))]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 300))]
    return bytes(data)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_damaged_samples_never_crash_a_parser(name):
    parser, original = SAMPLES[name]
    _check(parser.run(original, f"sample.{name}"))  # the intact sample reads

    @FUZZ
    @given(data=mutated(original))
    def run(data: bytes) -> None:
        _check(parser.run(data, f"sample.{name}"))

    run()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_random_bytes_and_text_never_crash_a_parser(name):
    parser, original = SAMPLES[name]
    head = original[:40]

    @FUZZ
    @given(
        data=st.one_of(
            st.binary(max_size=3000),
            st.text(max_size=2000).map(str.encode),
            st.binary(max_size=2000).map(lambda b: head + b),
        )
    )
    def run(data: bytes) -> None:
        _check(parser.run(data, f"sample.{name}"))

    run()


@settings(max_examples=12, deadline=None)
@given(
    rule=st.sampled_from(
        [
            "FREQ=SECONDLY",
            "FREQ=MINUTELY;INTERVAL=1",
            "FREQ=DAILY;COUNT=100000",
            "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
            "FREQ=WEEKLY;UNTIL=19000101T000000Z",
        ]
    ),
    year=st.integers(1, 2100),
)
def test_pathological_recurrences_end(rule, year):
    """A rule that repeats every second since year 1 is read, not walked for ever."""
    ics = f"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:{year:04d}0101T000000Z\r\nRRULE:{rule}\r\nSUMMARY:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    _check(ICS.run(ics.encode(), "x.ics"))
