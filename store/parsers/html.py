"""HTML pages and saved articles: the main text, with its headings, without navigation.

BeautifulSoup (well kept, pure Python with the stdlib parser, forgiving of broken markup)
finds the page's <article> or <main> when it has one; menus, headers, footers, sidebars,
forms and scripts are dropped. Headings become Markdown headings so chunking follows them.
"""

from __future__ import annotations

import re
import warnings

from bs4 import BeautifulSoup, CData, MarkupResemblesLocatorWarning, NavigableString, Tag

from store.parsers import Record, Section, Unreadable

_NOISE = {
    "script",
    "style",
    "noscript",
    "template",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "svg",
    "iframe",
    "button",
}
_BLOCKS = {
    "p",
    "div",
    "li",
    "pre",
    "blockquote",
    "tr",
    "br",
    "section",
    "table",
    "ul",
    "ol",
    "dd",
    "dt",
    "figcaption",
}
_HEADING = re.compile(r"^h[1-6]$")


def html_to_markdown(markup: str) -> tuple[str, str]:
    """(title, main text with Markdown headings) of an HTML document."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(markup, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    root = soup.find("article") or soup.find("main") or soup.find(role="main") or soup.body or soup
    lines = [" ".join(line.split()) for line in _text(root).splitlines()]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return title, text


_BLOCK_END = object()


def _text(root: Tag) -> str:
    """The text under ``root``: noise left out, headings as Markdown, a blank line after each
    block. One walk with a stack, each node visited once: editing the tree instead (inserting
    a newline after each block) costs time in the depth of the nesting at every insertion,
    which is minutes for a page of 20,000 nested elements, and recursion would overflow."""
    pieces: list[str] = []
    stack: list[object] = [root]
    while stack:
        node = stack.pop()
        if node is _BLOCK_END:
            pieces.append("\n\n")
        elif isinstance(node, NavigableString):
            # not comments, doctypes, processing instructions
            if type(node) in (NavigableString, CData):
                pieces.append(str(node))
        # (a tree holds only tags and strings: the isinstance is for the type checker)
        elif not isinstance(node, Tag) or node.name in _NOISE:
            continue
        elif _HEADING.match(node.name):
            pieces.append(f"\n\n{'#' * int(node.name[1])} {node.get_text(' ', strip=True)}\n\n")
        else:
            if node.name in _BLOCKS:
                stack.append(_BLOCK_END)
            stack.extend(reversed(node.contents))
    return "".join(pieces)


def parse_html(content: bytes) -> list[Record]:
    if b"\x00" in content[:8192]:
        raise Unreadable("binary file, not HTML")
    markup = _decode(content)
    title, text = html_to_markdown(markup)
    if not text:
        raise Unreadable("no text in the page")
    meta = {"title": title} if title else {}
    return [Record([Section(text, meta, markdown=True)], "html", meta=meta)]


def _decode(content: bytes) -> str:
    head = content[:2048].decode("ascii", "replace").lower()
    match = re.search(r"charset=[\"']?([a-z0-9_\-]+)", head)
    for encoding in ([match.group(1)] if match else []) + ["utf-8-sig"]:
        try:
            return content.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    raise Unreadable("the page is neither in its declared encoding nor UTF-8")
