"""How long unlock takes to bring the search indexes back, against building them.

    python bench/bench_index_restore.py [N]      (N chunks, default 100000)

Builds N random normalised 384-value embeddings with short fake texts, saves the sealed
snapshot, then times what unlock does: open (unseal + restore) and a first search. The bar
is "unlock with 100k chunks in 5 s or less"; the ratio says how much restoring saves over
re-adding every vector.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store.retrieval import SearchIndexes  # noqa: E402
from store.sealing import Sealer  # noqa: E402

DIM = 384
BATCH = 1000  # as ingestion adds them
# Fake words drawn Zipf-like, as in real text: the commonest is in most chunks (like "the"),
# which is what makes a lexical OR-query expensive.
VOCABULARY = [f"w{rank}" for rank in range(5000)]
WORD_WEIGHTS = 1 / np.arange(1, len(VOCABULARY) + 1)
WORD_WEIGHTS /= WORD_WEIGHTS.sum()


def fake_text(n: int, rng: np.random.Generator) -> str:
    return f"note {n} " + " ".join(rng.choice(VOCABULARY, size=12, p=WORD_WEIGHTS))


def add_in_batches(
    indexes: SearchIndexes, ids: list[str], texts: list[str], vectors: np.ndarray
) -> float:
    """Add every chunk, BATCH at a time as ingestion does; return the seconds it took."""
    started = time.perf_counter()
    for start in range(0, len(ids), BATCH):
        end = start + BATCH
        indexes.add(ids[start:end], texts[start:end], vectors[start:end])
    return time.perf_counter() - started


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    shm = Path("/dev/shm")
    runtime_dir = Path(tempfile.mkdtemp(prefix="bench-", dir=shm if shm.is_dir() else None))
    disk_dir = Path(tempfile.mkdtemp(prefix="bench-"))
    snapshot_path = disk_dir / "indexes.sealed"
    sealer = Sealer(os.urandom(32))
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"chunk-{n:07d}" for n in range(count)]
    texts = [fake_text(n, rng) for n in range(count)]
    try:
        indexes = SearchIndexes.open(snapshot_path, runtime_dir, sealer, DIM)
        add_seconds = add_in_batches(indexes, ids, texts, vectors)
        expected = indexes.search(texts[7], vectors[7], k=10)

        started = time.perf_counter()
        indexes.save()
        save_seconds = time.perf_counter() - started
        indexes.close()

        started = time.perf_counter()
        indexes = SearchIndexes.open(snapshot_path, runtime_dir, sealer, DIM)
        first = indexes.search(texts[7], vectors[7], k=10)
        restore_seconds = time.perf_counter() - started

        started = time.perf_counter()
        indexes.reconcile(set(ids), lambda wanted: [])
        reconcile_seconds = time.perf_counter() - started

        started = time.perf_counter()
        for n in range(100):
            indexes.search(texts[n], vectors[n], k=10)
        search_ms = (time.perf_counter() - started) * 10
        restored_count = len(indexes)
        indexes.close()

        print(f"chunks                        {count}")
        print(f"add (both indexes)            {add_seconds:8.2f} s")
        print(
            f"save (snapshot + seal)        {save_seconds:8.2f} s   {snapshot_path.stat().st_size / 2**20:.0f} MiB sealed"
        )
        print(f"restore (open + first search) {restore_seconds:8.2f} s")
        print(f"reconcile (nothing missing)   {reconcile_seconds:8.2f} s")
        print(f"search after restore          {search_ms:8.2f} ms each (query: a chunk's own text)")
        print(f"restore / add                 {restore_seconds / add_seconds:8.4f}")
        print(f"same count and results        {restored_count == count and first == expected}")
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)
        shutil.rmtree(disk_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
