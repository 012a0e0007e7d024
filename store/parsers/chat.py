"""Chat exports: WhatsApp's "Export chat" .txt and Telegram Desktop's result.json.

Messages are gathered into conversation windows: a window ends after a pause of
``PAUSE`` or when it holds about ``MAX_WORDS`` words, so one chunk is one exchange, cited
by the chat's name, its first date and who spoke.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass

from store.parsers import Record, Section, Unreadable
from store.parsers.text import decode_text

PAUSE = dt.timedelta(hours=3)
MAX_WORDS = 120

# Android: "12/03/2026, 14:05 - Ana: hi"; iOS: "[12/03/2026, 14:05:33] Ana: hi"; US: "3/12/26, 2:05 PM - Ana: hi"
_WHATSAPP = re.compile(
    r"^\u200e?\[?(?P<d>\d{1,2})[./-](?P<m>\d{1,2})[./-](?P<y>\d{2,4}),?\s+"
    r"(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?(?:\s*(?P<ampm>[AaPp]\.?\s?[Mm]\.?))?\]?\s*(?:-\s*)?"
    r"(?P<rest>.*)$"
)


@dataclass(frozen=True)
class Message:
    when: dt.datetime
    sender: str
    text: str


def looks_like_whatsapp(content: bytes) -> bool:
    head = content[:4096].decode("utf-8", "replace").lstrip("\ufeff").splitlines()[:5]
    return sum(1 for line in head if _WHATSAPP.match(line) and ": " in line) >= 1 and bool(
        head and _WHATSAPP.match(head[0])
    )


def parse_whatsapp(content: bytes, chat_name: str = "") -> list[Record]:
    lines = decode_text(content).splitlines()
    raw: list[tuple[tuple[str, ...], str, str]] = []  # (date fields, sender, text)
    for line in lines:
        match = _WHATSAPP.match(line)
        if match:
            rest = match.group("rest")
            sender, sep, text = rest.partition(": ")
            if not sep:  # "Messages are end-to-end encrypted", "Ana joined": not a message
                continue
            raw.append(
                (match.group("d", "m", "y", "H", "M", "S", "ampm"), sender.strip("\u200e "), text)
            )
        elif raw:
            fields, sender, text = raw[-1]
            raw[-1] = (fields, sender, text + "\n" + line)
    if not raw:
        raise Unreadable("not a WhatsApp export (no dated messages)")
    # a "month" over 12 means month comes first
    day_first = not any(int(f[1]) > 12 for f, _, _ in raw)
    messages = []
    for fields, sender, text in raw:
        when = _whatsapp_time(fields, day_first)
        if when is not None:
            messages.append(Message(when, sender, text))
    if not messages:
        raise Unreadable("not a WhatsApp export (no readable dates)")
    return [Record(_windows(messages, chat_name or "WhatsApp chat"), "chat")]


def parse_telegram(content: bytes) -> list[Record]:
    try:
        data = json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise Unreadable(f"not valid JSON ({str(e)[:80]})") from None
    if not isinstance(data, dict):
        raise Unreadable("not a Telegram export (flurry reads Telegram Desktop's result.json)")
    chats = data.get("chats", {}).get("list") if isinstance(data.get("chats"), dict) else None
    if chats is None:
        chats = [data] if isinstance(data.get("messages"), list) else []
    sections: list[Section] = []
    for chat in chats:
        if not isinstance(chat, dict) or not isinstance(chat.get("messages"), list):
            continue
        name = str(chat.get("name") or "Telegram chat")
        messages = []
        for message in chat["messages"]:
            if not isinstance(message, dict) or message.get("type", "message") != "message":
                continue
            text = _telegram_text(message.get("text"))
            try:
                when = dt.datetime.fromisoformat(str(message.get("date"))).replace(tzinfo=None)
            except ValueError:
                continue
            if text.strip():
                messages.append(Message(when, str(message.get("from") or "?"), text))
        sections += _windows(messages, name)
    if not sections:
        raise Unreadable("not a Telegram export, or no messages in it")
    return [Record(sections, "chat")]


def _telegram_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # formatted text: strings and {"type": "bold", "text": "…"} pieces
        return "".join(
            p if isinstance(p, str) else str(p.get("text", "")) if isinstance(p, dict) else ""
            for p in value
        )
    return ""


def _whatsapp_time(fields: tuple[str, ...], day_first: bool) -> dt.datetime | None:
    d, m, y, h, minute, second, ampm = fields
    day, month = (int(d), int(m)) if day_first else (int(m), int(d))
    year = int(y) + (2000 if len(y) == 2 else 0)
    hour = int(h)
    if ampm:
        pm = ampm.lower().startswith("p")
        hour = hour % 12 + (12 if pm else 0)
    try:
        return dt.datetime(year, month, day, hour, int(minute), int(second or 0))
    except ValueError:
        return None


def _windows(messages: list[Message], chat: str) -> list[Section]:
    sections: list[Section] = []
    window: list[Message] = []
    words = 0

    def close() -> None:
        if window:
            senders = sorted({m.sender for m in window})
            meta = {
                "kind": "chat",
                "chat": chat,
                "date": window[0].when.isoformat(),
                "senders": senders,
            }
            body = "\n".join(f"{m.sender}: {m.text}" for m in window)
            context = f"Chat: {chat}, {window[0].when.strftime('%d %b %Y %H:%M')}"
            sections.append(Section(body, meta, context=context))

    for message in messages:
        size = len(message.text.split())
        if window and (message.when - window[-1].when > PAUSE or words + size > MAX_WORDS):
            close()
            window, words = [], 0
        window.append(message)
        words += size
    close()
    return sections
