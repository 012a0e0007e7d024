"""How the app shows what the node sends: pure functions of their arguments, no widgets."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from rich.text import Text


def masked(text: str, mask: Mapping[str, str]) -> str:
    """``text`` with each real value in ``mask`` replaced by its stand-in (real → shown)."""
    for real, fake in mask.items():
        text = text.replace(real, fake)
    return text


def cited_numbers(answer: str) -> set[int]:
    """The [n] an answer cites (the node numbers its sources from 1)."""
    return {int(n) for n in re.findall(r"\[(\d+)\]", answer)}


def answer_view(text: str, sources: list[dict], dropped: Sequence[str] = ()) -> Text:
    """An answer as the chat shows it: the verified sentences, then the quote each source
    gives for them, then any sentence the node's verifier refused, struck through and marked
    so it is never read as the answer."""
    view = Text(text)
    for number, s in enumerate(sources, start=1):
        if s.get("quote"):
            where = short_path(s["path"]) if s.get("path") else ""
            view.append(f"\n  [{number}] «{s['quote']}»", style="italic")
            if where:
                view.append(f" — {where}", style="dim")
    for sentence in dropped:
        view.append("\n  ✗ not in your data: ", style="bold red")
        view.append(sentence, style="strike dim")
    return view


def cell(value: object) -> Text:
    """A table cell shown as it is: no markup, no emoji codes (":key:" in a DID stays text)."""
    return Text(str(value))


def short_path(path: str, keep: int = 2) -> str:
    """The last ``keep`` parts of a path: enough to recognise a note in a narrow list."""
    parts = path.replace("\\", "/").split("/")
    return path if len(parts) <= keep + 1 else "…/" + "/".join(parts[-keep:])
