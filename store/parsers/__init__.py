"""Parsers: a file's bytes (and its path) → records with text and citation metadata.

One module per format family; ``registry`` maps a file to its parser by suffix, and by a
sniff of the content where a suffix says too little (a WhatsApp export is a ``.txt``, a
Maildir message has no suffix at all). A parser never lets an exception escape: ``parse``
turns every failure into a ``Skip`` with a reason a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from store.errors import StoreError


@dataclass(frozen=True)
class Section:
    """A piece of a record with one set of citation metadata (a PDF page, an event, a card,
    a window of a chat). ``markdown``: cut it by its Markdown headings. ``context`` heads
    every chunk cut from it (an email's sender and subject), so each chunk read alone still
    says whose it is."""

    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    markdown: bool = False
    context: str = ""


@dataclass(frozen=True)
class Record:
    """One document as the vault keeps it.

    Most files are one record (``key`` empty). A file holding many documents (an mbox) gives
    one record per message, each with its own ``key`` (stable across runs: the Message-ID)
    and its own ``content`` bytes, so that a message already in the vault costs nothing.
    """

    sections: list[Section]
    format: str
    key: str = ""
    content: bytes | None = None
    label: str = ""  # how the record is shown after the file's path ("#3")
    meta: dict[str, Any] = field(default_factory=dict)
    # (text, citation metadata) of each chunk, when the parser process cut them already
    # (store.ingest.chunks_of): it counts them against the file's budget anyway.
    chunks: tuple[tuple[str, dict[str, Any]], ...] | None = None


@dataclass(frozen=True)
class Skip:
    """Why a file was passed over; nothing was stored for it."""

    reason: str


class Unreadable(StoreError):
    """Raised inside a parser; ``parse`` turns it into a ``Skip`` with this message."""
