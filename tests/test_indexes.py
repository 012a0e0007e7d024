"""The vector index, the lexical index and hybrid retrieval, with real chromadb and real FTS5.

``tmp_path`` stands in for the memory-backed runtime folder (/dev/shm).
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import sqlite3
import stat
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.bundle import BundleWriter, unpack_bundle
from store.lexical_index import LexicalIndex, LexicalIndexError, query_words
from store.retrieval import (
    SNAPSHOT_AAD,
    IndexSnapshotError,
    SearchIndexes,
    reciprocal_rank_fusion,
)
from store.sealing import STREAM_MAGIC, Sealer
from store.vector_index import VectorIndex, make_private_folder, sweep_stale

DIM = 32
TEXTS = {
    "c-garden": "Planted tomatoes and basil in the garden on Saturday",
    "c-dentist": "Dentist appointment moved to Thursday at 9:30",
    "c-meeting": "Notes from the budget meetings with Anna and Rafael",
    "c-cafe": "Coffee at the café near the station, résumé review",
    "c-recipe": "Grandmother's recipe: lentil soup with cumin and lemon",
    "c-flight": "Flight LH1234 to Lisbon departs 07:05 from terminal 2",
}


def embeddings_for(ids: list[str], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "shm"
    folder.mkdir()
    return folder


@pytest.fixture
def sealer() -> Sealer:
    return Sealer(os.urandom(32))


@pytest.fixture
def corpus() -> tuple[list[str], list[str], np.ndarray]:
    ids = list(TEXTS)
    return ids, [TEXTS[i] for i in ids], embeddings_for(ids)


def private_folders(runtime_dir: Path) -> list[Path]:
    return [p for p in runtime_dir.iterdir() if p.name.startswith("flurry-")]


# --- vector index ---------------------------------------------------------------------------


def test_vector_add_query_delete(runtime_dir: Path) -> None:
    ids = [f"chunk-{n}" for n in range(40)]
    vectors = embeddings_for(ids)
    index = VectorIndex.create(runtime_dir, DIM)
    try:
        assert index.query(vectors[0], 5) == []  # empty index
        index.add(ids, vectors)
        assert len(index) == 40 and index.ids() == set(ids)

        hits = index.query(vectors[7], 5)
        assert hits[0][0] == "chunk-7" and hits[0][1] == pytest.approx(1.0, abs=1e-5)
        assert [score for _, score in hits] == sorted((score for _, score in hits), reverse=True)
        expected = sorted(ids, key=lambda i: -float(vectors[ids.index(i)] @ vectors[7]))[:5]
        assert [chunk_id for chunk_id, _ in hits] == expected

        assert len(index.query(vectors[0], 1000)) == 40  # k larger than the count

        index.delete(["chunk-7", "chunk-8", "never-added"])
        assert len(index) == 38 and "chunk-7" not in index.ids()
        found = [chunk_id for chunk_id, _ in index.query(vectors[7], 38)]
        assert "chunk-7" not in found and len(found) == 38

        index.add(["chunk-0"], vectors[1:2])  # adding again replaces
        assert len(index) == 38 and index.query(vectors[1], 2)[1][1] == pytest.approx(1.0, abs=1e-5)

        with pytest.raises(ValueError):
            index.add(["x"], np.zeros((1, DIM + 1), dtype=np.float32))
    finally:
        index.close()


def test_vector_folder_is_private_and_removed_on_close(runtime_dir: Path) -> None:
    index = VectorIndex.create(runtime_dir, DIM)
    (folder,) = private_folders(runtime_dir)
    assert folder.name.startswith(f"flurry-{os.getpid()}-")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    index.close()
    assert private_folders(runtime_dir) == []


def test_a_chunk_id_with_a_line_break_is_refused_before_either_index_changes(
    runtime_dir: Path, sealer: Sealer
) -> None:
    """The snapshot lists ids one a line: such an id would split in two at the next unlock."""
    indexes = SearchIndexes.open(runtime_dir.parent / "indexes.sealed", runtime_dir, sealer, DIM)
    try:
        with pytest.raises(ValueError, match="line break"):
            indexes.add(["ok", "bad\nid"], ["one", "two"], embeddings_for(["ok", "bad"]))
        assert indexes.counts() == (0, 0)
    finally:
        indexes.close()


def test_chromadb_is_never_given_text(runtime_dir: Path, sealer: Sealer, corpus) -> None:
    ids, texts, vectors = corpus
    indexes = SearchIndexes.open(runtime_dir.parent / "indexes.sealed", runtime_dir, sealer, DIM)
    try:
        indexes.add(ids, texts, vectors)
        indexes.save()  # snapshot closes and reopens chromadb: all its files are written
        stored = b"".join(p.read_bytes() for p in runtime_dir.rglob("*") if p.is_file())
        for text in texts:
            assert text.encode() not in stored
    finally:
        indexes.close()


def vector_snapshot(index: VectorIndex) -> bytes:
    buffer = io.BytesIO()
    bundle = BundleWriter(buffer)
    index.write_snapshot(bundle)
    bundle.close()
    return buffer.getvalue()


def restored_vector_index(runtime_dir: Path, snapshot: bytes) -> VectorIndex:
    folder = make_private_folder(runtime_dir)
    unpack_bundle(io.BytesIO(snapshot), folder)
    return VectorIndex.adopt(folder)


def first_format(snapshot: bytes, scratch: Path) -> bytes:
    """A vector snapshot as the first format had it: a tar, the ids inside the manifest."""
    unpack_bundle(io.BytesIO(snapshot), scratch)
    ids = (scratch / "ids").read_text().split("\n")
    (scratch / "ids").unlink()
    (scratch / "index.json").write_text(json.dumps({"format": 1, "dim": DIM, "ids": ids}))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(scratch / "index.json", arcname="index.json")
        tar.add(scratch / "chroma", arcname="chroma")
    return buffer.getvalue()


def test_vector_snapshot_restores_identical_results(runtime_dir: Path) -> None:
    ids = [f"chunk-{n}" for n in range(1250)]
    vectors = embeddings_for(ids)
    original = VectorIndex.create(runtime_dir, DIM)
    # chromadb writes its HNSW files every 1000 changes and keeps the rest in its SQLite log:
    # the snapshot must carry both
    original.add(ids[:1200], vectors[:1200])
    original.delete(ids[:10])
    original.add(ids[1200:], vectors[1200:])
    restored = restored_vector_index(runtime_dir, vector_snapshot(original))
    try:
        assert len(restored) == len(original) == 1240 and restored.ids() == original.ids()
        assert restored.dim == DIM
        for probe in (0, 5, 42, 1201, 1249):
            assert restored.query(vectors[probe], 10) == original.query(vectors[probe], 10)
        # the restored copy is independent of the original
        original.add(["only-in-original"], vectors[:1])
        assert "only-in-original" not in {i for i, _ in restored.query(vectors[0], 5)}
    finally:
        original.close()
        restored.close()


# --- lexical index --------------------------------------------------------------------------


def test_lexical_add_query_delete(corpus) -> None:
    ids, texts, _ = corpus
    index = LexicalIndex.create()
    try:
        assert index.query("garden", 5) == []  # empty index
        index.add(list(zip(ids, texts, strict=False)))
        assert len(index) == len(ids) and index.ids() == set(ids)

        assert index.query("tomatoes garden", 5)[0][0] == "c-garden"
        assert index.query("meeting", 5)[0][0] == "c-meeting"  # porter: meeting ~ meetings
        assert index.query("cafe resume", 5)[0][0] == "c-cafe"  # diacritics removed
        assert index.query("LH1234", 5)[0][0] == "c-flight"
        hits = index.query("the", 10)
        assert hits and all(score > 0 for _, score in hits)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)

        index.add([("c-garden", "now about lemons")])  # adding again replaces
        assert index.query("tomatoes", 5) == []
        assert {i for i, _ in index.query("lemon", 5)} == {"c-garden", "c-recipe"}

        index.delete(["c-recipe", "never-added"])
        assert "c-recipe" not in index.ids() and len(index) == len(ids) - 1
        assert [i for i, _ in index.query("lemon", 5)] == ["c-garden"]
    finally:
        index.close()


def test_short_and_long_words_are_not_stemmed_as_in_fts5() -> None:
    """FTS5's porter tokenizer leaves words under 3 bytes and over 64 as they are: "is" must
    not become "i" (or every chunk saying "I" answers a question with "is" in it)."""
    long_word = "x" * 62 + "ings"  # 66 bytes: kept whole
    index = LexicalIndex.create()
    try:
        index.add([("a", "I wrote it"), ("b", "it is done"), ("c", "as planned"), ("d", long_word)])
        assert [i for i, _ in index.query("is", 5)] == ["b"]
        assert [i for i, _ in index.query("I", 5)] == ["a"]
        assert [i for i, _ in index.query("a", 5)] == []
        assert [i for i, _ in index.query(long_word, 5)] == ["d"]
        assert index.query("x" * 62 + "ing", 5) == []  # a stemmer would have made both "...ing"
        assert [i for i, _ in index.query("planning", 5)] == ["c"]  # longer words: stemmed
    finally:
        index.close()


def test_lexical_snapshot_restores_identical_results(corpus) -> None:
    ids, texts, _ = corpus
    original = LexicalIndex.create()
    original.add(list(zip(ids, texts, strict=False)))
    original.delete(["c-dentist"])
    restored = LexicalIndex.restore(original.snapshot())
    try:
        assert restored.ids() == original.ids() and len(restored) == len(original)
        for query in ("garden", "the", "lentil soup", "Thursday"):
            assert restored.query(query, 10) == original.query(query, 10)
        restored.add([("c-new", "a brand new chunk")])  # still writable
        assert restored.query("brand", 1)[0][0] == "c-new"
    finally:
        original.close()
        restored.close()


NASTY_QUERIES = [
    "",
    "   ",
    "?!.,;:-",
    "AND",
    "OR NOT AND",
    "garden AND",
    'say "hello',
    '"unbalanced',
    '""',
    "tomat*",
    "*",
    "NEAR(",
    "NEAR(garden soup, 2",
    "(garden",
    "garden)",
    "((((",
    "text:garden",
    "{text}: garden",
    "^garden",
    "garden + soup - cumin",
    "🍅🌿",
    "🍅 garden",
    "_",
    "a_b __ _x_",
    "\x00\x01 garden",
    "café's résumé",
    "東京 の 会議",
]


@pytest.mark.parametrize("query", NASTY_QUERIES)
def test_lexical_query_never_raises(query: str, corpus) -> None:
    ids, texts, _ = corpus
    index = LexicalIndex.create()
    try:
        index.add(list(zip(ids, texts, strict=False)))
        hits = index.query(query, 5)
        assert isinstance(hits, list)
        if not any(ch.isalnum() for ch in query):
            assert hits == []
    finally:
        index.close()


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_lexical_query_never_raises_on_any_text(query: str) -> None:
    index = LexicalIndex.create()
    try:
        index.add([("c1", "garden tomatoes and basil")])
        index.query(query, 3)
    finally:
        index.close()


def test_query_words_are_words_only() -> None:
    assert query_words('NEAR(garden "soup" AND garden') == ["near", "garden", "soup", "and"]
    assert query_words("🍅 ?!") == []


def test_words_in_most_chunks_are_left_out_when_others_remain() -> None:
    index = LexicalIndex.create()
    try:
        index.add([(f"c{n}", f"the note number {n}") for n in range(10)] + [("c-x", "the zebra")])
        assert [i for i, _ in index.query("the zebra", 20)] == ["c-x"]  # not ten ~0 scores after it
        assert len(index.query("the note", 20)) == 11  # nothing else left: both kept
        assert len(index.query("the", 20)) == 11  # a single word is always kept
    finally:
        index.close()


def _words(n: int, rng: random.Random) -> str:
    return " ".join(f"w{min(int(rng.paretovariate(1.2)), 400)}" for _ in range(n))


def test_many_small_adds_merge_into_the_same_ranking_as_one() -> None:
    """Segments merged eight at a time (three levels here), replaced and deleted chunks
    dropped at merge: once compacted (snapshot), the index ranks exactly as one built from the
    live chunks in a single add; before, only the dead chunks' counts in df differ."""
    rng = random.Random(7)
    texts = {f"c{n}": _words(12, rng) for n in range(3000)}
    batched = LexicalIndex.create()
    for start in range(0, 3000, 10):  # 300 segments' worth
        batched.add([(c, texts[c]) for c in list(texts)[start : start + 10]])
    replaced = {f"c{n}": _words(12, rng) for n in range(0, 3000, 7)}
    batched.add(list(replaced.items()))
    texts.update(replaced)
    gone = [f"c{n}" for n in range(1, 3000, 11)]
    batched.delete(gone)
    for chunk_id in gone:
        del texts[chunk_id]
    assert len(batched._segments) < 3 * 8  # merged, not 300
    whole = LexicalIndex.create()
    whole.add(list(texts.items()))
    compacted = LexicalIndex.restore(batched.snapshot())
    try:
        assert compacted.ids() == whole.ids() == set(texts)
        for query in ("w1 w2 w3", "w17 w250", "w3 w44 w5 w6 w7 w8 w9 w10", texts["c14"]):
            got, expected = compacted.query(query, 20), whole.query(query, 20)
            # the same scores; the same chunks, but for the order of equal scores (the older
            # row first: a replaced chunk is younger in one index than in the other)
            assert [round(s, 9) for _, s in got] == [round(s, 9) for _, s in expected]
            last = expected[-1][1]
            assert {i: round(s, 9) for i, s in got if s > last + 1e-9} == {
                i: round(s, 9) for i, s in expected if s > last + 1e-9
            }
            # live results only, before compaction too, and as many (dead rows fill no place)
            assert not {i for i, _ in batched.query(query, 50)} & set(gone)
            assert len(batched.query(query, 20)) == len(expected)
    finally:
        for index in (batched, whole, compacted):
            index.close()


def _bm25_by_hand(texts: dict[str, str], query: str, k: int) -> list[tuple[str, float]]:
    """BM25 as FTS5 computes it (k1 1.2, b 0.75, idf floored at 1e-6), over every chunk, one
    by one: the reference the index's vectorised query over its segments must equal. Words in half the
    chunks or more are left out unless none other is left, as the index does."""
    docs = {c: t.split() for c, t in texts.items()}
    n, average = len(docs), sum(len(w) for w in docs.values()) / len(docs)
    words = list(dict.fromkeys(query.split()))
    df = {w: sum(1 for d in docs.values() if w in d) for w in words}
    kept = [w for w in words if df[w] > 0 and 2 * df[w] < n] or [w for w in words if df[w]]
    scores = {}
    for chunk_id, doc in docs.items():
        score = 0.0
        for w in kept:
            tf = doc.count(w)
            if tf:
                idf = max(math.log((n - df[w] + 0.5) / (df[w] + 0.5)), 0) or 1e-6
                score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len(doc) / average))
        if score:
            scores[chunk_id] = score
    return sorted(scores.items(), key=lambda p: -p[1])[:k]


def test_a_chunk_replaced_by_one_as_long_is_scored_by_its_own_length() -> None:
    """The length norms are kept between queries: a change that leaves the total length and
    the count as they were must still make them again."""
    texts = {"a": "w1 w2 w3 w4", "b": "w5 w6", "c": "w7 w8 w9 w10 w11 w12", "d": "w13 w14"}
    index = LexicalIndex.create()
    try:
        index.add(list(texts.items()))
        index.query("w1", 5)  # norms made
        index.delete(["b"])
        index.add([("e", "w2 w9")])  # as long as "b": the same total length, the same count
        texts = {c: t for c, t in texts.items() if c != "b"} | {"e": "w2 w9"}
        for query in ("w2", "w9", "w2 w9 w13"):
            got = [(i, round(s, 9)) for i, s in index.query(query, 5)]
            assert got == [(i, round(s, 9)) for i, s in _bm25_by_hand(texts, query, 5)], query
    finally:
        index.close()


def test_the_query_ranks_exactly_as_bm25_by_hand() -> None:
    """Postings gathered from the segments of sixteen adds, scored as arrays, summed per chunk (by sorting
    or by one slot per chunk, as the count goes): the top k is the top k of scoring every
    chunk by hand (scores to 1e-9; the same chunks but for the order of equal scores)."""
    rng = random.Random(11)
    texts = {f"c{n}": _words(rng.randint(3, 30), rng) for n in range(4000)}
    index = LexicalIndex.create()
    try:
        for start in range(0, 4000, 250):
            index.add([(c, texts[c]) for c in list(texts)[start : start + 250]])
        queries = [_words(8, rng) for _ in range(40)] + [texts[f"c{n}"] for n in range(0, 400, 20)]
        for query in queries:
            for k in (1, 5, 50):
                got, expected = index.query(query, k), _bm25_by_hand(texts, query, k)
                assert [round(s, 9) for _, s in got] == [round(s, 9) for _, s in expected], query
                if expected:
                    last = expected[-1][1]
                    assert {i for i, s in got if s > last + 1e-9} == {
                        i for i, s in expected if s > last + 1e-9
                    }
    finally:
        index.close()


def test_an_fts5_snapshot_from_before_is_read_again() -> None:
    """A sealed snapshot made by the FTS5 index (before issue 21) is re-indexed from its texts
    at restore: nothing to rebuild from the vault."""
    db = sqlite3.connect(":memory:")
    db.executescript(
        """
        CREATE TABLE chunk_rows (rowid INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE);
        CREATE VIRTUAL TABLE chunk_text USING fts5(
            text, tokenize = 'porter unicode61 remove_diacritics 2'
        );
        """
    )
    for rowid, (chunk_id, text) in enumerate(
        [("a", "the garden of tomatoes"), ("b", "a café résumé"), ("c", "meetings on Thursday")], 1
    ):
        db.execute("INSERT INTO chunk_rows VALUES (?, ?)", (rowid, chunk_id))
        db.execute("INSERT INTO chunk_text (rowid, text) VALUES (?, ?)", (rowid, text))
    db.commit()
    restored = LexicalIndex.restore(db.serialize())
    db.close()
    try:
        assert restored.ids() == {"a", "b", "c"}
        assert restored.query("cafe", 3)[0][0] == "b" and restored.query("meeting", 3)[0][0] == "c"
    finally:
        restored.close()


@pytest.mark.parametrize(
    "snapshot",
    [
        b"",
        b"not a snapshot",
        b"flurry lexical index v3\n" + b"\x00" * 40,
        b"SQLite format 3\x00junk",
    ],
)
def test_a_damaged_lexical_snapshot_is_refused(snapshot: bytes) -> None:
    with pytest.raises(LexicalIndexError):
        LexicalIndex.restore(snapshot)


# --- sweep ----------------------------------------------------------------------------------


def test_sweep_stale_removes_dead_and_keeps_live(runtime_dir: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(finished.stdout)
    dead = runtime_dir / f"flurry-{dead_pid}-abc123"
    dead.mkdir()
    (dead / "data_level0.bin").write_bytes(b"\x00" * 64)
    live = runtime_dir / f"flurry-{os.getpid()}-def456"
    live.mkdir()
    parent = runtime_dir / f"flurry-{os.getppid()}-ghi789"  # alive: the process that ran pytest
    parent.mkdir()
    unrelated = runtime_dir / "something-else"
    unrelated.mkdir()

    assert sweep_stale(runtime_dir) == [dead]
    assert not dead.exists()
    assert live.exists() and parent.exists() and unrelated.exists()
    assert sweep_stale(runtime_dir / "missing") == []


# --- hybrid retrieval -----------------------------------------------------------------------


def test_reciprocal_rank_fusion_hand_checked() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "d"]], k=60)
    assert [item for item, _ in fused] == ["b", "c", "a", "d"]
    expected = {"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 63 + 1 / 62, "d": 1 / 63}
    for item, score in fused:
        assert score == pytest.approx(expected[item])
    assert reciprocal_rank_fusion([]) == []
    # k=0: the ranks themselves; a tie keeps first-seen order
    assert reciprocal_rank_fusion([["x", "y"], ["y", "x"]], k=0) == [("x", 1.5), ("y", 1.5)]


def test_search_fuses_both_indexes(runtime_dir: Path, sealer: Sealer, corpus) -> None:
    ids, texts, vectors = corpus
    indexes = SearchIndexes.open(runtime_dir.parent / "indexes.sealed", runtime_dir, sealer, DIM)
    try:
        indexes.add(ids, texts, vectors)
        # the words point at the recipe, the embedding at the flight: both come back on top
        hits = indexes.search("lentil soup", vectors[ids.index("c-flight")], k=3)
        assert {hits[0][0], hits[1][0]} == {"c-recipe", "c-flight"}
        assert len(indexes.search("lentil", vectors[0], k=100)) == len(ids)
        # both agree: first by a clear margin
        hits = indexes.search("dentist Thursday", vectors[ids.index("c-dentist")], k=2)
        assert hits[0][0] == "c-dentist" and hits[0][1] > hits[1][1]
        assert indexes.search("", vectors[0], k=2)[0][0] == ids[0]  # words optional
    finally:
        indexes.close()


def test_save_and_open_restore_identical_results(runtime_dir: Path, sealer: Sealer, corpus) -> None:
    ids, texts, vectors = corpus
    snapshot_path = runtime_dir.parent / "indexes.sealed"
    indexes = SearchIndexes.open(snapshot_path, runtime_dir, sealer, DIM)
    assert not indexes.dirty
    indexes.add(ids, texts, vectors)
    assert indexes.dirty
    indexes.save()
    assert not indexes.dirty and snapshot_path.exists()
    before = [indexes.search(text, vectors[n], k=4) for n, text in enumerate(texts)]
    indexes.close()
    assert private_folders(runtime_dir) == []

    reopened = SearchIndexes.open(snapshot_path, runtime_dir, sealer, DIM)
    try:
        assert len(reopened) == len(ids) and not reopened.dirty
        assert reopened.counts() == (len(ids), len(ids)) and reopened.dim == DIM
        assert [reopened.search(text, vectors[n], k=4) for n, text in enumerate(texts)] == before
    finally:
        reopened.close()


def test_sealed_snapshot_holds_no_plaintext(runtime_dir: Path, sealer: Sealer, corpus) -> None:
    ids, texts, vectors = corpus
    snapshot_path = runtime_dir.parent / "indexes.sealed"
    indexes = SearchIndexes.open(snapshot_path, runtime_dir, sealer, DIM)
    indexes.add(ids, texts, vectors)
    indexes.save()
    indexes.close()

    sealed = snapshot_path.read_bytes()
    for text in texts:
        assert text.encode() not in sealed
        for word in text.split():
            if len(word) >= 5:
                assert word.encode() not in sealed
                assert word.lower().encode() not in sealed
    for chunk_id, vector in zip(ids, vectors, strict=False):
        assert chunk_id.encode() not in sealed
        assert vector.tobytes() not in sealed
        assert vector[:2].tobytes() not in sealed  # not even two values of it
    for marker in (b"SQLite format", b"chroma", b"ustar"):
        assert marker not in sealed


def test_reconcile_adds_missing_and_removes_extra(
    runtime_dir: Path, sealer: Sealer, corpus
) -> None:
    ids, texts, vectors = corpus
    vault = {i: (t, v) for i, t, v in zip(ids, texts, vectors, strict=False)}
    requested: list[list[str]] = []

    def load(wanted: list[str]):
        requested.append(list(wanted))
        for chunk_id in wanted:
            yield chunk_id, *vault[chunk_id]

    indexes = SearchIndexes.open(runtime_dir.parent / "indexes.sealed", runtime_dir, sealer, DIM)
    try:
        indexes.add(ids[:4], texts[:4], vectors[:4])
        indexes.add(["c-gone"], ["a chunk the vault deleted"], embeddings_for(["c-gone"], seed=9))
        indexes.save()

        assert indexes.reconcile(set(ids), load) == (2, 1)
        assert requested == [sorted(ids[4:])]
        assert indexes.dirty and len(indexes) == len(ids)
        assert indexes.search("Lisbon", vectors[ids.index("c-flight")], k=1)[0][0] == "c-flight"
        assert "c-gone" not in {i for i, _ in indexes.search("vault deleted", vectors[0], k=10)}

        requested.clear()
        assert indexes.reconcile(set(ids), load) == (0, 0)
        assert requested == []
    finally:
        indexes.close()


def test_reconcile_catches_up_after_a_crash(runtime_dir: Path, sealer: Sealer, corpus) -> None:
    """The node saved, added more, and died: the snapshot is older than the vault."""
    ids, texts, vectors = corpus
    snapshot_path = runtime_dir.parent / "indexes.sealed"
    indexes = SearchIndexes.open(snapshot_path, runtime_dir, sealer, DIM)
    indexes.add(ids[:3], texts[:3], vectors[:3])
    indexes.save()
    indexes.add(ids[3:], texts[3:], vectors[3:])
    indexes.close()  # no save

    def load(wanted: list[str]):
        return [(i, texts[ids.index(i)], vectors[ids.index(i)]) for i in wanted]

    reopened = SearchIndexes.open(snapshot_path, runtime_dir, sealer, DIM)
    try:
        assert len(reopened) == 3
        assert reopened.reconcile(set(ids), load) == (len(ids) - 3, 0)
        assert len(reopened) == len(ids)
    finally:
        reopened.close()


def test_reconcile_loads_in_batches(runtime_dir: Path, sealer: Sealer) -> None:
    ids = [f"chunk-{n:04d}" for n in range(2500)]
    vectors = embeddings_for(ids)
    batches: list[int] = []

    def load(wanted: list[str]):
        batches.append(len(wanted))
        for chunk_id in wanted:
            yield chunk_id, f"text of {chunk_id}", vectors[int(chunk_id[6:])]

    indexes = SearchIndexes.open(runtime_dir.parent / "indexes.sealed", runtime_dir, sealer, DIM)
    try:
        assert indexes.reconcile(set(ids), load) == (2500, 0)
        assert batches == [1000, 1000, 500]
    finally:
        indexes.close()


def test_unopenable_snapshot_raises_and_rebuilds_nothing(
    runtime_dir: Path, sealer: Sealer, corpus
) -> None:
    ids, texts, vectors = corpus
    snapshot_path = runtime_dir.parent / "indexes.sealed"
    indexes = SearchIndexes.open(snapshot_path, runtime_dir, sealer, DIM)
    indexes.add(ids, texts, vectors)
    indexes.save()
    indexes.close()
    good = snapshot_path.read_bytes()

    with pytest.raises(IndexSnapshotError, match="does not open"):
        SearchIndexes.open(snapshot_path, runtime_dir, Sealer(os.urandom(32)), DIM)  # wrong key
    with pytest.raises(IndexSnapshotError, match="embedding model gives 64"):
        SearchIndexes.open(snapshot_path, runtime_dir, sealer, 64)
    assert snapshot_path.read_bytes() == good  # left as it was, not replaced by a rebuild

    snapshot_path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # tampered
    with pytest.raises(IndexSnapshotError):
        SearchIndexes.open(snapshot_path, runtime_dir, sealer, DIM)

    sealer.write_file(snapshot_path, b"not a snapshot", "index-snapshot")
    with pytest.raises(IndexSnapshotError, match="not a flurry index snapshot"):
        SearchIndexes.open(snapshot_path, runtime_dir, sealer, DIM)

    assert private_folders(runtime_dir) == []  # failed restores clean up after themselves


def test_a_snapshot_of_the_first_format_still_opens_and_is_saved_in_the_new_one(
    runtime_dir: Path, sealer: Sealer, corpus
) -> None:
    """Before it was streamed, the snapshot was one sealed value (under 2 GiB, AES-GCM's limit
    in the library): a node updated in place must not have to rebuild its indexes."""
    ids, texts, vectors = corpus
    snapshot_path = runtime_dir.parent / "indexes.sealed"
    vector = VectorIndex.create(runtime_dir, DIM)
    lexical = LexicalIndex.create()
    vector.add(ids, vectors)
    lexical.add(list(zip(ids, texts, strict=True)))
    scratch = runtime_dir.parent / "scratch"
    scratch.mkdir()
    vector_part = first_format(vector_snapshot(vector), scratch)
    lexical_part = lexical.snapshot()
    expected = [
        reciprocal_rank_fusion(
            [[i for i, _ in vector.query(vectors[n], 6)], [i for i, _ in lexical.query(text, 6)]]
        )[:4]
        for n, text in enumerate(texts)
    ]
    vector.close()
    old = b"flurry index snapshot v1\n" + struct.pack(">QQ", len(vector_part), len(lexical_part))
    sealer.write_file(snapshot_path, old + vector_part + lexical_part, SNAPSHOT_AAD)

    indexes = SearchIndexes.open(snapshot_path, runtime_dir, sealer, DIM)
    try:
        assert indexes.counts() == (len(ids), len(ids))
        assert [
            indexes.search(text, vectors[n], k=4, candidates=6) for n, text in enumerate(texts)
        ] == expected
        indexes.add(["c-new"], ["a new note"], embeddings_for(["c-new"], seed=1))
        indexes.save()
    finally:
        indexes.close()
    assert snapshot_path.read_bytes().startswith(STREAM_MAGIC)  # saved in the streamed format
    reopened = SearchIndexes.open(snapshot_path, runtime_dir, sealer, DIM)
    try:
        assert reopened.counts() == (len(ids) + 1, len(ids) + 1)
    finally:
        reopened.close()


def test_a_lexical_snapshot_of_the_older_tokenizer_is_made_again_from_the_vault(
    runtime_dir: Path, sealer: Sealer, corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A v2 lexical snapshot stemmed "is" into "i": its postings cannot be trusted, so it is
    dropped and reconcile adds every text again, and only the texts: the vectors stay."""
    ids, texts, vectors = corpus
    snapshot_path = runtime_dir.parent / "indexes.sealed"
    vector = VectorIndex.create(runtime_dir, DIM)
    vector.add(ids, vectors)
    lexical = LexicalIndex.create()
    lexical.add(list(zip(ids, texts, strict=True)))
    scratch = runtime_dir.parent / "scratch"
    scratch.mkdir()
    vector_part = first_format(vector_snapshot(vector), scratch)
    vector.close()
    current = lexical.snapshot()
    assert current.startswith(b"flurry lexical index v3\n")
    lexical_part = b"flurry lexical index v2\n" + current[len(b"flurry lexical index v3\n") :]
    old = b"flurry index snapshot v1\n" + struct.pack(">QQ", len(vector_part), len(lexical_part))
    sealer.write_file(snapshot_path, old + vector_part + lexical_part, SNAPSHOT_AAD)

    indexes = SearchIndexes.open(snapshot_path, runtime_dir, sealer, DIM)
    try:
        assert indexes.counts() == (len(ids), 0)

        def no_vector_add(*args: object) -> None:
            raise AssertionError("the vectors were added again")

        monkeypatch.setattr(VectorIndex, "add", no_vector_add)
        rows = dict(zip(ids, zip(texts, vectors, strict=True), strict=True))
        added, removed = indexes.reconcile(set(ids), lambda wanted: [(i, *rows[i]) for i in wanted])
        assert (added, removed) == (len(ids), 0) and indexes.dirty
        assert indexes.counts() == (len(ids), len(ids))
        assert indexes._lexical.query("lentil", 1)[0][0] == "c-recipe"
    finally:
        indexes.close()


def test_save_without_changes_writes_nothing(runtime_dir: Path, sealer: Sealer) -> None:
    snapshot_path = runtime_dir.parent / "indexes.sealed"
    indexes = SearchIndexes.open(snapshot_path, runtime_dir, sealer, DIM)
    try:
        indexes.save()
        assert not snapshot_path.exists()
        indexes.delete([])
        indexes.save()
        assert not snapshot_path.exists()
    finally:
        indexes.close()
