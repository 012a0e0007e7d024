"""Ingest and unlock through a whole node, as ratios measured in one run.

    python bench/bench_node.py ingest [FILES]     (default 60 files of ~600 words)
    python bench/bench_node.py unlock [CHUNKS]    (default 100000)

ingest: chunks/s of `Node.add` end to end (read, chunk, embed, seal, vault, both indexes,
        sealed snapshot) ÷ chunks/s of the embedding model alone on the same chunks, side by
        side in each of three rounds (goal ≥ 0.85).
unlock: a home holding CHUNKS sealed chunks (random vectors, fake words, written straight
        into the vault and indexes so the setup takes minutes, not hours); times
        `Node.open` (Argon2id, vault, unseal and restore both indexes, reconcile) plus a
        first search (goal ≤ 5 s), and reports it against the time it took to fill the indexes.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.models import CATALOG, DEFAULT_EMBEDDING_MODEL, ensure_model  # noqa: E402
from node.home import Home  # noqa: E402
from node.node import Node  # noqa: E402
from store.chunking import chunk_text  # noqa: E402
from store.vault_layout import NewChunk  # noqa: E402

PASSPHRASE = "bench passphrase"
WORDS = [
    "the",
    "kitchen",
    "garden",
    "letter",
    "bank",
    "appointment",
    "budget",
    "tomato",
    "window",
    "contractor",
    "invoice",
    "train",
    "holiday",
    "friend",
    "birthday",
    "recipe",
    "bicycle",
    "doctor",
    "insurance",
    "tax",
    "school",
    "meeting",
    "plumber",
    "roof",
    "paint",
    "flight",
    "hotel",
    "museum",
    "river",
    "mountain",
    "coffee",
    "bread",
    "cheese",
    "winter",
    "summer",
    "autumn",
    "spring",
]


def _models() -> Path:
    folder = Path(os.environ.get("FLURRY_MODELS") or Path.home() / ".cache" / "flurry-test-models")
    ensure_model(CATALOG[DEFAULT_EMBEDDING_MODEL], folder)
    os.environ["FLURRY_MODELS"] = str(folder)
    return folder


def _fresh_home() -> Home:
    os.environ.setdefault(
        "FLURRY_RUNTIME_DIR", "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    )
    home = Home(Path(tempfile.mkdtemp(prefix="flurry-bench-")) / "home")
    Node.init(home, PASSPHRASE)
    return home


def _text(rng: np.random.Generator, words: int) -> str:
    paragraphs = []
    for _ in range(words // 60):
        paragraphs.append(" ".join(rng.choice(WORDS, size=60)).capitalize() + ".")
    return "# Notes\n\n" + "\n\n".join(paragraphs) + "\n"


def bench_ingest(files: int, rounds: int = 3) -> None:
    _models()
    rng = np.random.default_rng(1)
    folder = Path(tempfile.mkdtemp(prefix="flurry-bench-notes-"))
    texts = [_text(rng, 600) for _ in range(files)]
    for i, text in enumerate(texts):
        (folder / f"note-{i:03}.md").write_text(text)
    chunks = [c for t in texts for c in chunk_text(t)]
    ours, baseline = [], []
    try:
        # Alternate the two sides, each round on a fresh home: this machine's speed drifts
        # by 20% within a minute, so only figures taken side by side compare.
        for _ in range(rounds):
            home = _fresh_home()
            node = Node.open(home, PASSPHRASE, say=lambda line: None)
            try:
                node.embedder.embed(chunks[:8])  # load and warm up outside the timings
                start = time.perf_counter()
                node.embedder.embed(chunks)
                baseline.append(len(chunks) / (time.perf_counter() - start))
                start = time.perf_counter()
                report = node.add(str(folder))
                ours.append(report.chunks / (time.perf_counter() - start))
            finally:
                node.close()
                shutil.rmtree(home.root.parent, ignore_errors=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ratios = sorted(o / b for o, b in zip(ours, baseline, strict=False))
    print(
        f"ingest: {files} files, {len(chunks)} chunks, {rounds} rounds; end to end "
        f"{' '.join(f'{o:.1f}' for o in ours)} chunks/s, embedding only {' '.join(f'{b:.1f}' for b in baseline)}; "
        f"median ratio {ratios[len(ratios) // 2]:.3f} (goal >= 0.85)"
    )


def bench_unlock(count: int) -> None:
    home = _fresh_home()
    rng = np.random.default_rng(2)
    per_doc = 100
    node = Node.open(home, PASSPHRASE, say=lambda line: None)
    fill = 0.0
    try:
        for d in range(count // per_doc):
            vectors = rng.standard_normal((per_doc, node.indexes.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            texts = [" ".join(rng.choice(WORDS, size=20)) for _ in range(per_doc)]
            result = node.vault.put_document(
                path=f"notes/{d}.md",
                abs_path=f"/bench/notes/{d}.md",
                content=str(d).encode(),
                mtime=0.0,
                chunks=[NewChunk(t, v) for t, v in zip(texts, vectors, strict=False)],
            )
            start = time.perf_counter()
            node.indexes.add(result.chunk_ids, texts, vectors)
            fill += time.perf_counter() - start
    finally:
        node.close()  # saves the sealed snapshot
    query = rng.standard_normal(node.indexes.dim).astype(np.float32)
    start = time.perf_counter()
    node = Node.open(home, PASSPHRASE, say=lambda line: None)
    node.indexes.search("kitchen budget", query / np.linalg.norm(query), 4)
    unlock = time.perf_counter() - start
    caught_up = node.catch_up
    node.close()
    shutil.rmtree(home.root.parent, ignore_errors=True)
    print(
        f"unlock: {count} chunks; open + first search {unlock:.2f} s (goal <= 5 s; caught up {caught_up.added} added, "
        f"{caught_up.removed} removed); filling the indexes took {fill:.1f} s, ratio {unlock / fill:.4f}"
    )


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "ingest"
    size = int(sys.argv[2]) if len(sys.argv) > 2 else None
    if what == "ingest":
        bench_ingest(size or 60)
    elif what == "unlock":
        bench_unlock(size or 100_000)
    else:
        raise SystemExit("usage: bench_node.py ingest|unlock [N]")
