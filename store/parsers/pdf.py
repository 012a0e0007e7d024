"""PDF: the text layer, one section per page (pypdf: pure Python, actively maintained)."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

from store.parsers import Record, Section, Unreadable

# pypdf logs every oddity of a damaged file; the skip reason says what matters.
logging.getLogger("pypdf").setLevel(logging.ERROR)

MiB = 1024 * 1024
# A page of dense text is tens of KB of drawing instructions; a page over this is a vector
# drawing or a bomb, and its text is not read (reading 1 MiB takes seconds).
MAX_PAGE_CONTENT = 1 * MiB

if TYPE_CHECKING:  # pypdf itself loads only when a PDF is read
    from pypdf import PageObject


def parse_pdf(content: bytes) -> list[Record]:
    # pypdf is the heaviest import of the parsers (a third of a second): loaded with the first
    # PDF, not by every process that imports the registry (as icalendar in calendar.py).
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import PdfReadError

    if not content.lstrip()[:5].startswith(b"%PDF"):
        raise Unreadable("not a PDF (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(content), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except Exception:
                opened = PasswordType.NOT_DECRYPTED
            if not opened:
                raise Unreadable("the PDF is encrypted with a password")
        pages = list(reader.pages)
    except Unreadable:
        raise
    except (
        PdfReadError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        RecursionError,
    ) as e:
        raise Unreadable(f"corrupt PDF ({_short(e)})") from None
    sections: list[Section] = []
    too_big: list[int] = []
    for number, page in enumerate(pages, start=1):
        try:
            if _drawing_size(page) > MAX_PAGE_CONTENT:
                too_big.append(number)
                continue
            text = page.extract_text() or ""
        except Exception:  # one damaged page does not lose the others
            continue
        if text.strip():
            sections.append(Section(text, {"page": number}))
    if not sections and too_big:
        raise Unreadable(_too_big(too_big))
    if not sections:
        raise Unreadable(
            f"the PDF has no text layer ({len(pages)} pages of images?); flurry does not read scans"
        )
    title = ""
    try:
        metadata = reader.metadata
        title = str(metadata.get("/Title") or "") if metadata else ""
    except Exception:
        pass
    return [
        Record(
            sections,
            "pdf",
            meta={"title": title, "pages": len(pages)} if title else {"pages": len(pages)},
        )
    ]


def _drawing_size(page: PageObject) -> int:
    """Bytes of the page's content streams and of the forms it draws, decompressed (pypdf
    caps each stream at 75 MB). Reading text walks every instruction in pure Python, more
    than linearly: 1 MiB takes seconds, and a few KB of compressed zeros can be 75 MB."""
    from pypdf.generic import ArrayObject  # pypdf is loaded by parse_pdf already: see there

    # pypdf's objects are walked as found in the file: any of them may be anything.
    def size(stream: Any) -> int:
        stream = stream.get_object()
        return len(stream.get_data()) if hasattr(stream, "get_data") else 0

    total = 0
    contents: Any = page.get("/Contents")
    if contents is not None:
        contents = contents.get_object()
        total += (
            sum(size(s) for s in contents) if isinstance(contents, ArrayObject) else size(contents)
        )
    resources: Any = page.get("/Resources")
    forms = resources.get_object().get("/XObject") if resources is not None else None
    if forms is not None:
        for form in forms.get_object().values():
            form = form.get_object()
            if form.get("/Subtype") == "/Form":
                total += size(form)
    return total


def _too_big(numbers: list[int]) -> str:
    limit = f"more than {MAX_PAGE_CONTENT // MiB} MiB of drawing instructions"
    if len(numbers) == 1:
        return f"page {numbers[0]} holds {limit}; its text was not read"
    shown = ", ".join(map(str, numbers[:5])) + ("…" if len(numbers) > 5 else "")
    return f"pages {shown} each hold {limit}; their text was not read"


def _short(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) < 120 else text[:119] + "…"
