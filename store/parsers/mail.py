"""Email: .eml files, Maildir messages and mbox files (the stdlib ``email`` package).

One record per message. Its sender, recipients, date and subject are citation metadata and
head every chunk of it, so a question about "the letter from the bank" finds the bank's
mail. Attachments in a format flurry reads (PDF, text, HTML, calendar, contacts) add their
text to the message's record, marked with the attachment's name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from store.parsers import Record, Section, Unreadable
from store.parsers.html import html_to_markdown

_MBOX_FROM = re.compile(rb"^From [^\r\n]*\r?\n", re.M)
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:", re.M)  # RFC 5322 field name, then a colon
_MAX_ATTACHMENT_DEPTH = 1

# (content, file name) → the attachment's records, or None when it is not read. Handed in by
# the registry, which knows every parser; this module knows only mail.
ReadAttachment = Callable[[bytes, str], "list[Record] | None"]


def parse_eml(content: bytes, read_attachment: ReadAttachment) -> list[Record]:
    return [_message_record(content, read_attachment, depth=0)]


def parse_mbox(content: bytes, read_attachment: ReadAttachment) -> list[Record]:
    if not content.startswith(b"From "):
        raise Unreadable("not an mbox file (it must begin with a 'From ' line)")
    starts = [m.start() for m in _MBOX_FROM.finditer(content)]
    # A "From " line begins a message only at the start or after a blank line (mboxo/mboxrd).
    starts = [
        s
        for s in starts
        if s == 0
        or content[max(0, s - 2) : s] in (b"\n\n",)
        or content[max(0, s - 4) : s] == b"\r\n\r\n"
    ]
    records: list[Record] = []
    seen: set[str] = set()
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(content)
        raw = content[start:end]
        body = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
        # undo the mboxrd escaping of "From " lines
        body = re.sub(rb"(?m)^>(>*From )", rb"\1", body)
        # The blank line before the next "From " belongs to the file, not the message: without
        # this, appending a message would change the one before it.
        body = body.rstrip(b"\r\n") + b"\n"
        try:
            record = _message_record(body, read_attachment, depth=0)
        except Unreadable:
            continue  # one mangled message does not lose the others
        key = record.meta.get("message_id") or hashlib.sha256(body).hexdigest()
        while key in seen:  # the same Message-ID twice (a copy in two folders, merged)
            key += "+"
        seen.add(key)
        records.append(
            Record(
                record.sections,
                "email",
                key=key,
                content=body,
                label=f"#{index + 1}",
                meta=record.meta,
            )
        )
    if not records:
        raise Unreadable("no readable messages in the mbox")
    return records


def _message_record(content: bytes, read_attachment: ReadAttachment, depth: int) -> Record:
    if b"\x00" in content[:8192]:
        raise Unreadable("binary file, not an email")
    if not _HEADER_LINE.match(content.lstrip(b"\r\n")):
        raise Unreadable("not an email (it does not begin with headers)")
    message = BytesParser(policy=policy.default).parsebytes(content)
    meta = _headers(message)
    if not (meta.get("from") or meta.get("subject") or meta.get("date")):
        raise Unreadable("not an email (no From, Subject or Date header)")
    head = _head_line(meta)
    body = _body(message).strip()
    sections = [Section(body or "(no text)", {"kind": "email", **meta}, context=head)]
    if depth < _MAX_ATTACHMENT_DEPTH:
        sections += _attachments(message, meta, head, read_attachment)
    return Record(sections, "email", meta=meta)


def _headers(message: EmailMessage) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for field in ("from", "to", "cc"):
        try:
            values = message.get_all(field) or []
            addresses = [
                _address(name, addr)
                for name, addr in getaddresses([str(v) for v in values])
                if name or addr
            ]
        except Exception:
            addresses = []
        if addresses:
            meta[field] = ", ".join(addresses) if field != "from" else addresses[0]
    try:
        subject = str(message.get("subject") or "")
    except Exception:
        subject = ""
    if subject:
        meta["subject"] = " ".join(subject.split())
    try:
        raw_date = message.get("date")
        if raw_date is not None:
            meta["date"] = parsedate_to_datetime(str(raw_date)).isoformat()
    except Exception:
        pass
    try:
        message_id = str(message.get("message-id") or "").strip()
    except Exception:
        message_id = ""
    if message_id:
        meta["message_id"] = message_id
    return meta


def _address(name: str, addr: str) -> str:
    return f"{name} <{addr}>" if name and addr else name or addr


def _head_line(meta: dict[str, Any]) -> str:
    lines = [
        f"From: {meta['from']}" if "from" in meta else "",
        f"To: {meta['to']}" if "to" in meta else "",
    ]
    if "date" in meta:
        lines.append(f"Date: {meta['date'][:16].replace('T', ' ')}")
    if "subject" in meta:
        lines.append(f"Subject: {meta['subject']}")
    return "\n".join(line for line in lines if line)


def _body(message: EmailMessage) -> str:
    try:
        part = message.get_body(preferencelist=("plain", "html"))
    except Exception:
        part = None
    if part is None:
        return ""
    try:
        text = part.get_content()
    except Exception:  # an unknown charset or broken transfer encoding: take what decodes
        payload = part.get_payload(decode=True) or b""
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
    if not isinstance(text, str):
        return ""
    if part.get_content_subtype() == "html":
        return html_to_markdown(text)[1]
    return text


def _attachments(
    message: EmailMessage, meta: dict[str, Any], head: str, read_attachment: ReadAttachment
) -> list[Section]:
    sections: list[Section] = []
    try:
        attachments = list(message.iter_attachments())
    except Exception:
        return sections
    for part in attachments:
        name = part.get_filename() or ""
        if not name:
            continue
        try:
            data = part.get_payload(decode=True)
        except Exception:
            continue
        if not isinstance(data, bytes):
            continue
        records = read_attachment(data, name)
        if records is None:
            continue
        for record in records:
            for section in record.sections:
                sections.append(
                    Section(
                        section.text,
                        {
                            "kind": "email",
                            **meta,
                            **{k: v for k, v in section.meta.items() if k != "kind"},
                            "attachment": name,
                        },
                        markdown=section.markdown,
                        context=f"{head}\nAttachment: {name}",
                    )
                )
    return sections
