"""PDF: the text layer, one section per page (pypdf: pure Python, actively maintained)."""

from __future__ import annotations

import io
import logging

from store.parsers import Record, Section, Unreadable

# pypdf logs every oddity of a damaged file; the skip reason says what matters.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def parse_pdf(content: bytes) -> list[Record]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if not content.lstrip()[:5].startswith(b"%PDF"):
        raise Unreadable("not a PDF (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(content), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except Exception:
                opened = 0
            if not opened:
                raise Unreadable("the PDF is encrypted with a password")
        pages = list(reader.pages)
    except Unreadable:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as e:
        raise Unreadable(f"corrupt PDF ({_short(e)})") from None
    sections = []
    for number, page in enumerate(pages, start=1):
        try:
            text = page.extract_text() or ""
        except Exception:  # one damaged page does not lose the others
            continue
        if text.strip():
            sections.append(Section(text, {"page": number}))
    if not sections:
        raise Unreadable(f"the PDF has no text layer ({len(pages)} pages of images?); flurry does not read scans")
    title = ""
    try:
        title = str((reader.metadata or {}).get("/Title") or "")
    except Exception:
        pass
    return [Record(sections, "pdf", meta={"title": title, "pages": len(pages)} if title else {"pages": len(pages)})]


def _short(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) < 120 else text[:119] + "…"
