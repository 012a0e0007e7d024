"""Ingest throughput per format, as ratios measured in one run.

    python bench/bench_formats.py [WORDS [ROUNDS]]     (default 30000 words per format, 3 rounds)

For each format, a corpus of about WORDS words written by this script (mail, mbox,
calendar, contacts, chats, HTML, PDF, Markdown):
  parse       MB/s and chunks/s of the parser and chunker alone;
  end to end  chunks/s of a whole add (read, parse, chunk, embed, seal, commit, both indexes)
              ÷ chunks/s of the embedding model alone on the same chunks, side by side on a
              fresh home (goal ≥ 0.85: the parsers must not be what a user waits for).
Then the same ratio on all formats together, and what running the parsers in a process
that can be stopped costs (issue 12): end to end with the default ``Ingestor`` (one parser
process, a time budget per file) ÷ end to end parsing in line (``parse_workers=0``, as
before), on all formats together (goal ≥ 1: the parser process must not slow ingestion).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_node import PASSPHRASE, WORDS, _fresh_home, _models  # noqa: E402
from format_samples import email, make_pdf, mbox  # noqa: E402

from node.node import Node  # noqa: E402
from store.ingest import Ingestor, discover, parse  # noqa: E402
from store.parse_process import chunks_of  # noqa: E402
from store.parsers import Skip  # noqa: E402


def _sentence(rng: np.random.Generator, n: int) -> str:
    return " ".join(rng.choice(WORDS, size=n)).capitalize() + "."


def write_corpus(folder: Path, kind: str, words: int, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True)
    if kind == "markdown":
        for i in range(words // 600):
            body = "\n\n".join(f"## Part {p}\n\n" + _sentence(rng, 100) for p in range(6))
            (folder / f"note-{i}.md").write_text(f"---\ntags: [bench]\n---\n# Note {i}\n\n{body}\n")
    elif kind == "html":
        for i in range(words // 600):
            body = "".join(f"<h2>Part {p}</h2><p>{_sentence(rng, 100)}</p>" for p in range(6))
            (folder / f"page-{i}.html").write_text(
                f"<html><head><title>T{i}</title></head><body><nav>menu</nav><article>{body}</article></body></html>"
            )
    elif kind == "pdf":
        for i in range(words // 600):
            pages = [[" ".join(rng.choice(WORDS, size=12)) for _ in range(8)] for _ in range(6)]
            (folder / f"doc-{i}.pdf").write_bytes(make_pdf(pages))
    elif kind in ("eml", "mbox"):
        messages = [
            email(
                f"Sender {i} <s{i}@example.org>",
                "me@example.org",
                "Mon, 02 Feb 2026 18:00:00 +0000",
                f"Subject {i}",
                "\n\n".join(_sentence(rng, 50) for _ in range(4)),
                f"m{i}@example.org",
            )
            for i in range(words // 200)
        ]
        if kind == "mbox":
            (folder / "archive.mbox").write_text(mbox(messages))
        else:
            for i, message in enumerate(messages):
                (folder / f"m{i}.eml").write_text(message)
    elif kind == "ics":
        events = [
            f"BEGIN:VEVENT\r\nUID:{i}@b\r\nDTSTART:2026{1 + i % 12:02d}{1 + i % 28:02d}T100000Z\r\n"
            f"SUMMARY:{_sentence(rng, 5)}\r\nLOCATION:Room {i}\r\nDESCRIPTION:{_sentence(rng, 40)}\r\n"
            + ("RRULE:FREQ=WEEKLY\r\n" if i % 5 == 0 else "")
            + "END:VEVENT\r\n"
            for i in range(words // 50)
        ]
        (folder / "cal.ics").write_text(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" + "".join(events) + "END:VCALENDAR\r\n", newline=""
        )
    elif kind == "vcf":
        cards = [
            f"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Person {i}\r\nTEL:+351 900 {i:06d}\r\nEMAIL:p{i}@example.org\r\n"
            f"NOTE:{_sentence(rng, 30)}\r\nEND:VCARD\r\n"
            for i in range(words // 40)
        ]
        (folder / "people.vcf").write_text("".join(cards), newline="")
    elif kind == "whatsapp":
        lines = [
            f"{1 + (i // 40) % 28:02d}/03/2026, {8 + i % 12:02d}:{i % 60:02d} - {['Ana', 'Rui'][i % 2]}: {_sentence(rng, 12)}"
            for i in range(words // 13)
        ]
        (folder / "WhatsApp Chat with Ana.txt").write_text("\n".join(lines) + "\n")
    elif kind == "telegram":
        export = [  # Telegram's result.json messages
            {
                "id": i,
                "type": "message",
                "date": f"2026-03-{1 + (i // 40) % 28:02d}T{8 + i % 12:02d}:{i % 60:02d}:00",
                "from": ["Ana", "Rui"][i % 2],
                "text": _sentence(rng, 12),
            }
            for i in range(words // 13)
        ]
        (folder / "result.json").write_text(json.dumps({"name": "Group", "messages": export}))


KINDS = ["markdown", "html", "pdf", "eml", "mbox", "ics", "vcf", "whatsapp", "telegram"]


def _parse_all(folder: Path) -> tuple[list[str], float, int]:
    files, _ = discover(str(folder))
    size = sum(p.stat().st_size for p, _, _ in files)
    start = time.perf_counter()
    texts = []
    for path, _, parser in files:
        result = parse(parser, path.read_bytes(), path.name)
        assert not isinstance(result, Skip), (path, result)
        texts += [t for record in result for t, _ in chunks_of(record)]
    return texts, time.perf_counter() - start, size


def _side_by_side(folder: Path, texts: list[str], parse_workers: int = 1) -> tuple[float, float]:
    """(end-to-end chunks/s, embedding-only chunks/s) on a fresh home."""
    home = _fresh_home()
    node = Node.open(home, PASSPHRASE, say=lambda line: None)
    try:
        node.embedder.embed(texts[:8])
        # The embedding-only baseline is taken before and after the add and averaged: on a
        # shared machine the speed drifts within a minute, and this brackets the drift.
        start = time.perf_counter()
        node.embedder.embed(texts)
        before = time.perf_counter() - start
        ingestor = Ingestor(
            node.vault, node.indexes, node.embedder.embed, parse_workers=parse_workers
        )
        start = time.perf_counter()
        report = ingestor.add(str(folder))
        node.indexes.save()
        ours = report.chunks / (time.perf_counter() - start)
        start = time.perf_counter()
        node.embedder.embed(texts)
        baseline = len(texts) / ((before + time.perf_counter() - start) / 2)
        assert report.chunks == len(texts) and not report.skipped, report.skipped
    finally:
        node.close()
        shutil.rmtree(home.root.parent, ignore_errors=True)
    return ours, baseline


def main(words: int, rounds: int = 3) -> None:
    _models()
    rng = np.random.default_rng(3)
    root = Path(tempfile.mkdtemp(prefix="flurry-bench-formats-"))
    try:
        for kind in KINDS:
            write_corpus(root / "all" / kind, kind, words, rng)
        texts, _, _ = _parse_all(root / "all")
        inline, process = [], []
        for _ in range(rounds):
            inline.append(_side_by_side(root / "all", texts, 0)[0])
            process.append(_side_by_side(root / "all", texts, 1)[0])
        print(
            f"all formats, parse in line {' '.join(f'{x:.1f}' for x in inline)} chunks/s; in a parser process "
            f"{' '.join(f'{x:.1f}' for x in process)} chunks/s; ratio {np.median(process) / np.median(inline):.3f} (goal >= 1)",
            flush=True,
        )
        ratios = []
        for _ in range(rounds):
            ours, baseline = _side_by_side(root / "all", texts)
            ratios.append(ours / baseline)
        print(
            f"all formats together: {len(texts)} chunks, end to end ÷ embedding only "
            f"{' '.join(f'{r:.3f}' for r in ratios)}; median {float(np.median(ratios)):.3f} (goal >= 0.85)",
            flush=True,
        )
        print(
            f"{'format':<10} {'files':>5} {'MB':>6} {'chunks':>6} {'parse MB/s':>10} {'parse ch/s':>10} {'e2e ch/s':>9} {'embed ch/s':>10} {'ratio':>6}"
        )
        for kind in KINDS:
            folder = root / "all" / kind
            texts, seconds, size = _parse_all(folder)
            ours, baseline = _side_by_side(folder, texts)
            files = len(discover(str(folder))[0])
            print(
                f"{kind:<10} {files:>5} {size / 1e6:>6.2f} {len(texts):>6} {size / 1e6 / seconds:>10.2f} "
                f"{len(texts) / seconds:>10.0f} {ours:>9.1f} {baseline:>10.1f} {ours / baseline:>6.3f}",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 30000,
        int(sys.argv[2]) if len(sys.argv) > 2 else 3,
    )
