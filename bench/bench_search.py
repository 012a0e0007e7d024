"""Hybrid search at the scale of a real life (issue 21): p50 and p95 of a search, split into
its vector, lexical and fusion parts, at several vault sizes.

    python bench/bench_search.py [N ...] [--lexical-only] [--queries Q]
                                  (default: 10000 100000; Q = 60 of each kind)

The vault is bench/bench_index_restore.py's: N random normalised 384-value embeddings, each
with a short text of Zipf-drawn words (the commonest word is in most chunks, as "the" is).
Two kinds of query: 8-word questions drawn from the same distribution, and chunk-length
queries (another chunk's whole text). ``--lexical-only`` skips chromadb (building 1M vectors
takes the better part of an hour on 2 cores): the lexical index alone, with its add rate
(into an empty index, and 10k more into the full one) and its memory.

Goals (2 cores): p50 ≤ 30 ms at 100k, ≤ 100 ms at 1M; lexical ÷ vector time ≤ 3.

Measured on the 2-core dev box (quiet), hybrid p50 / p95, 8-word questions and chunk-length:
FTS5 (before issue 21): 100k 85.7 / 164.1 ms and 125.2 / 190.8 ms. Now: 10k 3.2 / 5.8 and
2.4 / 3.6 ms; 100k 3.7 / 4.4 and 3.9 / 4.3 ms (lexical ÷ vector 0.73, 0.83); 1M 18.2 / 21.6 and
18.7 / 24.2 ms (lexical ÷ vector 4.45, 5.29: chromadb answers in ~3 ms there). Unlock 0.8 s at
100k, 11.3 s at 1M; the indexes hold 3.5x the raw vectors at 100k, 2.8x at 1M (chromadb's).
Lexical alone at 1M: 34.8k chunks/s added into an empty index, 43.9k/s for 10k more.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_index_restore import DIM, VOCABULARY, WORD_WEIGHTS  # noqa: E402

from store.lexical_index import LexicalIndex  # noqa: E402
from store.retrieval import SearchIndexes, reciprocal_rank_fusion  # noqa: E402
from store.sealing import Sealer  # noqa: E402

BATCH = 1000


def fake_texts(count: int, rng: np.random.Generator) -> list[str]:
    """bench_index_restore.fake_text's texts (the same Zipf draw of 12 words after "note N"),
    drawn all at once: one call per chunk takes minutes at 1M."""
    words = rng.choice(len(VOCABULARY), size=(count, 12), p=WORD_WEIGHTS)
    return [f"note {n} " + " ".join(VOCABULARY[w] for w in row) for n, row in enumerate(words)]


def percentiles(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"p50 {statistics.median(ms):6.1f} ms  p95 {ms[int(0.95 * (len(ms) - 1))]:6.1f} ms"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident memory now (Linux: /proc), not the peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return rss_mb()


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    lexical_only = "--lexical-only" in sys.argv
    queries = 60
    if "--queries" in sys.argv:
        queries = int(sys.argv[sys.argv.index("--queries") + 1])
        args.remove(str(queries))
    sizes = [int(a) for a in args] or [10_000, 100_000]
    rng = np.random.default_rng(0)
    for count in sizes:
        texts = fake_texts(count, rng)
        ids = [f"chunk-{n:07d}" for n in range(count)]
        questions = [
            " ".join(rng.choice(VOCABULARY, size=8, p=WORD_WEIGHTS)) for _ in range(queries)
        ]
        chunk_queries = [texts[int(i)] for i in rng.integers(0, count, size=queries)]
        print(f"\n== {count} chunks")
        before = rss_mb()
        if lexical_only:
            lexical = LexicalIndex.create()
            started = time.perf_counter()
            for start in range(0, count, BATCH):
                lexical.add(
                    list(zip(ids[start : start + BATCH], texts[start : start + BATCH], strict=True))
                )
            empty_rate = count / (time.perf_counter() - started)
            more = [(f"more-{n}", text) for n, text in enumerate(fake_texts(10_000, rng))]
            started = time.perf_counter()
            for start in range(0, len(more), BATCH):
                lexical.add(more[start : start + BATCH])
            full_rate = len(more) / (time.perf_counter() - started)
            print(
                f"add: {empty_rate:,.0f} chunks/s into an empty index, {full_rate:,.0f} chunks/s "
                f"for 10k more into the full one (ratio {full_rate / empty_rate:.2f}); "
                f"max RSS grew {rss_mb() - before:,.0f} MB; snapshot {len(lexical.snapshot()) / 1e6:,.0f} MB"
            )
            for kind, asked in (("8-word questions", questions), ("chunk-length", chunk_queries)):
                times = []
                for q in asked:
                    started = time.perf_counter()
                    lexical.query(q, 50)
                    times.append(time.perf_counter() - started)
                print(f"lexical {kind:<17} {percentiles(times)}")
            lexical.close()
            continue
        vectors = rng.standard_normal((count, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        shm = Path("/dev/shm")
        runtime_dir = Path(tempfile.mkdtemp(prefix="bench-", dir=shm if shm.is_dir() else None))
        snapshot = Path(tempfile.mkdtemp(prefix="bench-")) / "indexes.sealed"
        sealer = Sealer(os.urandom(32))
        before = current_rss_mb()
        indexes = SearchIndexes.open(snapshot, runtime_dir, sealer, DIM)
        started = time.perf_counter()
        for start in range(0, count, BATCH):
            end = start + BATCH
            indexes.add(ids[start:end], texts[start:end], vectors[start:end])
        built = time.perf_counter() - started
        # chromadb keeps its files in the memory-backed runtime_dir: memory too
        held = current_rss_mb() - before + folder_mb(runtime_dir)
        raw = vectors.nbytes / 2**20
        print(
            f"built in {built:.0f} s; the indexes hold {held:,.0f} MB (process + runtime folder) "
            f"for {raw:,.0f} MB of raw vectors: {held / raw:.2f}x (goal ≤ 2)"
        )
        indexes.save()
        indexes.close()
        started = time.perf_counter()
        indexes = SearchIndexes.open(snapshot, runtime_dir, sealer, DIM)
        indexes.search(texts[7], vectors[7], k=10)
        print(
            f"unlock: restore from the sealed snapshot ({snapshot.stat().st_size / 2**20:,.0f} MB) "
            f"and a first search in {time.perf_counter() - started:.1f} s (goal ≤ 5 s)"
        )
        for kind, asked in (("8-word questions", questions), ("chunk-length", chunk_queries)):
            vector_t, lexical_t, fusion_t, total_t = [], [], [], []
            for q in asked:
                embedding = vectors[int(rng.integers(0, count))]
                t0 = time.perf_counter()
                by_meaning = [c for c, _ in indexes._vector.query(embedding, 50)]
                t1 = time.perf_counter()
                by_words = [c for c, _ in indexes._lexical.query(q, 50)]
                t2 = time.perf_counter()
                reciprocal_rank_fusion([by_meaning, by_words])[:10]
                t3 = time.perf_counter()
                vector_t.append(t1 - t0)
                lexical_t.append(t2 - t1)
                fusion_t.append(t3 - t2)
                total_t.append(t3 - t0)
            ratio = statistics.median(lexical_t) / statistics.median(vector_t)
            print(f"{kind}: hybrid {percentiles(total_t)}   (lexical ÷ vector {ratio:.2f})")
            print(f"    vector  {percentiles(vector_t)}")
            print(f"    lexical {percentiles(lexical_t)}")
            print(f"    fusion  {percentiles(fusion_t)}")
        indexes.close()


if __name__ == "__main__":
    main()
