"""One line saying which record a source is, as the answer's sources show it and as the evidence
reads it: an e-mail's sender, date and subject; an event's time and place; a contact's name; a
chat's time and senders; a page and its heading."""

from __future__ import annotations

import datetime as dt


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
        when = (
            dt.datetime.fromisoformat(iso)
            if "T" in iso or " " in iso
            else dt.date.fromisoformat(iso)
        )
    except ValueError:
        return iso
    day = f"{when.day} {when.strftime('%b %Y')}"
    if with_time and isinstance(when, dt.datetime):
        day += when.strftime(" %H:%M")
    return day
