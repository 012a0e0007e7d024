"""Which parser reads which file: by suffix, by where it lies (Maildir), and by a sniff of
the content where the suffix says too little (a WhatsApp export is a .txt)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from store.parsers import (
    Record,
    Skip,
    Unreadable,
    calendar,
    chat,
    contacts,
    html,
    mail,
    pdf,
    text,
)

MiB = 1024 * 1024


@dataclass(frozen=True)
class Parser:
    name: str  # what the file is, for messages: "PDF", "mbox"
    read: Callable[[bytes, str], list[Record]]  # (content, file name) → records; raises Unreadable
    max_bytes: int  # refused from stat(), before a byte is read

    def run(self, content: bytes, name: str = "", depth: int = 0) -> list[Record] | Skip:
        """The records of ``content``, or a Skip saying why not. Nothing escapes."""
        if len(content) > self.max_bytes:
            return Skip(too_large(len(content), self.max_bytes))
        try:
            records = self.read(content, name)
        except Unreadable as e:
            return Skip(str(e))
        except RecursionError:
            return Skip(f"could not read it as {self.name}: nested too deeply")
        except MemoryError:
            return Skip(f"could not read it as {self.name}: out of memory")
        except Exception as e:  # a library's own error on input it did not expect
            detail = str(e) or type(e).__name__
            return Skip(f"could not read it as {self.name} ({detail[:120]})")
        if not any(s.text.strip() for r in records for s in r.sections):
            return Skip("no text in it")
        return records


def _text_or_chat(content: bytes, name: str) -> list[Record]:
    if chat.looks_like_whatsapp(content):
        stem = Path(name).stem
        return chat.parse_whatsapp(
            content, stem.removeprefix("WhatsApp Chat with ").strip() or "WhatsApp chat"
        )
    return text.parse_plain(content)


MARKDOWN = Parser("Markdown", lambda c, n: text.parse_markdown(c), 20 * MiB)
TEXT = Parser("text", _text_or_chat, 20 * MiB)
HTML = Parser("HTML", lambda c, n: html.parse_html(c), 20 * MiB)
PDF = Parser("PDF", lambda c, n: pdf.parse_pdf(c), 200 * MiB)
EMAIL = Parser("email", lambda c, n: mail.parse_eml(c, read_attachment), 50 * MiB)
MBOX = Parser("mbox", lambda c, n: mail.parse_mbox(c, read_attachment), 1024 * MiB)
CALENDAR = Parser("calendar", lambda c, n: calendar.parse_ics(c), 50 * MiB)
CONTACTS = Parser("contacts", lambda c, n: contacts.parse_vcf(c), 20 * MiB)
TELEGRAM = Parser("Telegram export", lambda c, n: chat.parse_telegram(c), 200 * MiB)

BY_SUFFIX = {
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".txt": TEXT,
    ".html": HTML,
    ".htm": HTML,
    ".xhtml": HTML,
    ".pdf": PDF,
    ".eml": EMAIL,
    ".mbox": MBOX,
    ".ics": CALENDAR,
    ".vcf": CONTACTS,
    ".vcard": CONTACTS,
    ".json": TELEGRAM,
}
# Every parser by its name: how a worker process is told which one to run.
BY_NAME = {p.name: p for p in (*BY_SUFFIX.values(), MBOX)}
SUPPORTED = "Markdown, text, HTML, PDF, email (.eml, mbox, Maildir), calendars (.ics), contacts (.vcf), WhatsApp and Telegram exports"


def parser_for_name(name: str) -> Parser | None:
    """The parser for a file name alone (an attachment)."""
    path = Path(name)
    if path.name.lower() == "mbox":
        return MBOX
    return BY_SUFFIX.get(path.suffix.lower())


def read_attachment(content: bytes, name: str) -> list[Record] | None:
    """The records of a mail attachment in a format flurry reads, or None when it is not read.
    Forwarded mail is not read again: it is read where it was sent."""
    parser = parser_for_name(name)
    if parser is None or parser in (EMAIL, MBOX):
        return None
    result = parser.run(content, name)
    return None if isinstance(result, Skip) else result


def parser_for(path: Path) -> Parser | None:
    """The parser for a file on disk, or None when flurry does not read it."""
    if in_maildir(path):
        return EMAIL
    return parser_for_name(path.name)


def in_maildir(path: Path) -> bool:
    """A message of a Maildir: a file in cur/ or new/ of a folder that has both."""
    folder = path.parent
    return (
        folder.name in ("cur", "new")
        and (folder.parent / "cur").is_dir()
        and (folder.parent / "new").is_dir()
    )


def too_large(size: int, limit: int) -> str:
    return f"too large ({_size(size)}; the limit for this kind of file is {_size(limit)})"


def _size(n: int) -> str:
    return (
        f"{n / (1024 * MiB):.1f} GiB"
        if n >= 1024 * MiB
        else f"{max(1, n // MiB)} MiB"
        if n >= MiB
        else f"{n} bytes"
    )
