"""Plain text and Markdown, Obsidian notes included (YAML front matter, [[wikilinks]])."""

from __future__ import annotations

import re
from typing import Any

import yaml

from store.parsers import Record, Section, Unreadable

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S)
# [[Target]], [[Target|alias]], [[Target#heading]], and ![[embeds]].
_WIKILINK = re.compile(r"!?\[\[([^\[\]|#\n]+)(?:#[^\[\]|\n]*)?(?:\|[^\[\]\n]*)?\]\]")


def decode_text(content: bytes) -> str:
    """UTF-8 text, or Unreadable with the reason a person would want."""
    if b"\x00" in content[:8192]:
        raise Unreadable("binary file, not text")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise Unreadable(f"not UTF-8 text (byte {e.start}); save it as UTF-8 to add it") from None
    # Control characters other than tab/newline/form feed in quantity: a binary file without NULs.
    controls = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\t\n\r\f")
    if controls > max(8, len(text[:8192]) // 100):
        raise Unreadable("binary file, not text")
    return text


def parse_markdown(content: bytes) -> list[Record]:
    text = decode_text(content)
    meta: dict[str, Any] = {}
    match = _FRONT_MATTER.match(text)
    if match:
        meta = _front_matter(match.group(1))
        text = text[match.end() :]
    links = sorted({m.group(1).strip() for m in _WIKILINK.finditer(text)})
    if links:
        meta["links"] = links
    # The wikilinks stay in the text as written: they are how the owner links notes, and the
    # target's name is a good word to find the note by.
    return [Record([Section(text, {}, markdown=True)], "markdown", meta=meta)]


def parse_plain(content: bytes) -> list[Record]:
    return [Record([Section(decode_text(content))], "text")]


def _front_matter(source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError:
        return {}  # a broken header does not lose the note
    if not isinstance(data, dict):
        return {}
    meta: dict[str, Any] = {}
    tags = data.get("tags", data.get("tag"))
    if isinstance(tags, str):
        tags = [t for t in re.split(r"[,\s]+", tags) if t]
    if isinstance(tags, list):
        meta["note_tags"] = sorted({str(t).lstrip("#") for t in tags if t is not None})
    if isinstance(data.get("title"), str):
        meta["title"] = data["title"]
    aliases = data.get("aliases")
    if isinstance(aliases, list):
        meta["aliases"] = [str(a) for a in aliases]
    return meta
