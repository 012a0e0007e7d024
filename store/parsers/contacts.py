"""Contacts (.vcf, vCard 2.1/3.0/4.0): one section per person (vobject)."""

from __future__ import annotations

from typing import Any

from store.parsers import Record, Section, Unreadable
from store.parsers.text import decode_text

_FIELDS = [
    ("tel", "Phone"),
    ("email", "Email"),
    ("adr", "Address"),
    ("org", "Organisation"),
    ("title", "Title"),
    ("bday", "Birthday"),
    ("url", "Web"),
    ("note", "Note"),
    ("nickname", "Nickname"),
]


def parse_vcf(content: bytes) -> list[Record]:
    # Loaded with the first contacts file, not by every process that imports the registry
    # (as icalendar in calendar.py).
    import vobject

    text = decode_text(content)
    if "BEGIN:VCARD" not in text[:4096].upper():
        raise Unreadable("not a contacts file (no BEGIN:VCARD)")
    sections: list[Section] = []
    cards = vobject.readComponents(text, ignoreUnreadable=True)
    while True:
        try:
            card = next(cards)
        except StopIteration:
            break
        except Exception as e:  # vobject stops at the first line it cannot read
            if sections:
                break
            raise Unreadable(f"broken contacts file ({_short(e)})") from None
        if getattr(card, "name", "").upper() != "VCARD":
            continue
        section = _card(card)
        if section is not None:
            sections.append(section)
    if not sections:
        raise Unreadable("no contacts in the file")
    return [Record(sections, "contacts")]


# vobject is untyped: a card and its values are Any here.
def _card(card: Any) -> Section | None:
    name = _value(card, "fn") or _structured_name(card)
    lines = [f"Contact: {name}"] if name else []
    for key, label in _FIELDS:
        for line in card.contents.get(key, []):
            value = _show(line.value)
            if not value:
                continue
            kinds = ",".join(t.lower() for t in line.params.get("TYPE", []))
            lines.append(f"{label}{f' ({kinds})' if kinds else ''}: {value}")
    if not name and len(lines) == 0:
        return None
    return Section("\n".join(lines), {"kind": "contact", "name": name or "(no name)"})


def _value(card: Any, key: str) -> str:
    lines = card.contents.get(key)
    return _show(lines[0].value) if lines else ""


def _structured_name(card: Any) -> str:
    lines = card.contents.get("n")
    if not lines:
        return ""
    n = lines[0].value
    parts = [
        getattr(n, "prefix", ""),
        getattr(n, "given", ""),
        getattr(n, "additional", ""),
        getattr(n, "family", ""),
    ]
    return " ".join(_show(p) for p in parts if _show(p))


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_show(v) for v in value if _show(v))
    if hasattr(value, "street"):  # an address
        parts = [value.street, value.city, value.region, value.code, value.country]
        return ", ".join(_show(p) for p in parts if _show(p))
    return " ".join(str(value).split())


def _short(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) < 120 else text[:119] + "…"
