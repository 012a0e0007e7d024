"""Cutting documents into chunks that an embedding model can read and a citation can point at.

Chunks follow the document's structure: a Markdown heading starts a new chunk, paragraphs
are gathered until a chunk holds about ``max_words`` words, and a paragraph longer than
that is cut into overlapping windows. Each chunk begins with the headings above it, so a
paragraph under "Kitchen renovation" is still about the kitchen when read alone.
MiniLM reads 256 word pieces; 150 words is about 200 of them.
"""

from __future__ import annotations

import re

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def chunk_text(
    text: str, *, markdown: bool = True, max_words: int = 150, overlap_words: int = 30
) -> list[str]:
    return [
        chunk
        for _, chunk in chunk_with_headings(
            text, markdown=markdown, max_words=max_words, overlap_words=overlap_words
        )
    ]


def chunk_with_headings(
    text: str, *, markdown: bool = True, max_words: int = 150, overlap_words: int = 30
) -> list[tuple[str, str]]:
    """(heading path, chunk) pairs: the heading path is what a citation shows."""
    sections = _sections(text) if markdown else [("", text)]
    chunks: list[tuple[str, str]] = []
    for heading, body in sections:
        prefix = f"{heading}\n" if heading else ""
        current: list[str] = []
        count = 0
        for para in _paragraphs(body):
            words = para.split()
            if count and count + len(words) > max_words:
                chunks.append((heading, prefix + "\n\n".join(current)))
                current, count = [], 0
            if len(words) > max_words:
                chunks.extend(
                    (heading, prefix + w) for w in _windows(words, max_words, overlap_words)
                )
                continue
            current.append(para)
            count += len(words)
        if current:
            chunks.append((heading, prefix + "\n\n".join(current)))
    return [(h, c) for h, c in chunks if c.strip()]


def _sections(text: str) -> list[tuple[str, str]]:
    """Split Markdown into (heading path, body) pairs; the heading path reads "A > B"."""
    sections: list[tuple[str, str]] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            sections.append((_heading_path(path), "\n".join(body)))
            level = len(match.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, match.group(2))]
            body = []
        else:
            body.append(line)
    sections.append((_heading_path(path), "\n".join(body)))
    return [(h, b) for h, b in sections if h or b.strip()]


def _heading_path(path: list[tuple[int, str]]) -> str:
    return " > ".join(title for _, title in path)


def _paragraphs(body: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]


def _windows(words: list[str], size: int, overlap: int) -> list[str]:
    step = max(1, size - overlap)
    return [" ".join(words[i : i + size]) for i in range(0, max(1, len(words) - overlap), step)]
