"""The lexical index: BM25 over chunk text, an inverted index held in memory as numpy arrays.

Why not SQLite FTS5 any more (issue 21): FTS5 computes bm25() for every row that matches any
word of an OR query, one row at a time; over 100k chunks an 8-word question cost 160 ms, and
the cost grows with how many chunks hold a common word (seconds at 1M). Here a query gathers
the postings of its words as arrays and scores them in a few vectorised numpy operations
(BM25 as FTS5 computes it, k1 = 1.2, b = 0.75), so its cost is a few arrays' length, not a
row-by-row loop; words in half the chunks or more (BM25 gives them next to nothing) are left
out first, as before.

Layout, in the manner of Lucene's segments: each ``add`` builds one small immutable segment
(the term hashes it holds, sorted, with offsets into its postings: chunk row, term frequency);
segments of similar size are merged eight at a time, so adding costs the same per chunk into
an empty index as into a full one (a posting is rewritten about log₈(N / batch) times) and a
query reads a few dozen segments at most. A deleted chunk is marked dead at once and its
postings are dropped at the next merge. Terms are kept as 64-bit hashes of their text (BLAKE2b),
not as strings: no dictionary of every word ever seen, in memory or in the snapshot.

Nothing touches the disk: the index persists only as the bytes ``snapshot`` returns, which
the caller seals (``store.retrieval``); an older snapshot (an FTS5 database) is read and
re-indexed from its texts at restore.

Tokenizer, as FTS5's ``porter unicode61 remove_diacritics 2`` was: words are runs of letters
and digits (an underscore separates, as in unicode61), folded to lower case with diacritics
removed, so "cafe" finds "café", then stemmed by the Porter algorithm (snowballstemmer's
"porter", the same algorithm FTS5 implements), so "meeting" finds "meetings"; as in FTS5,
words under 3 bytes or over 64 are kept as they are. English-only,
but query and text are stemmed alike, so in other languages it at worst merges a few forms.
"""

from __future__ import annotations

import hashlib
import io
import re
import sqlite3
import unicodedata
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import snowballstemmer

from store.errors import StoreError

K1, B = 1.2, 0.75  # FTS5's bm25() defaults
# A query is an OR of its words; beyond this many, more words only slow it down.
_MAX_QUERY_TERMS = 64
_QUERY_WORD = re.compile(r"\w+")
_TOKEN = re.compile(r"[^\W_]+")  # letters and digits: "_" separates, as in unicode61
MERGE_FANOUT = 8  # segments of one size merged at a time
# v3: words under 3 or over 64 bytes are no longer stemmed (as FTS5 does). A v2 snapshot holds
# "is" under the term "i": it is refused as outdated and made again from the vault's texts.
_MAGIC = b"flurry lexical index v3\n"
_OUTDATED_MAGIC = b"flurry lexical index v2\n"
_SQLITE_MAGIC = b"SQLite format 3\x00"  # a snapshot made before this index: FTS5
# FTS5's porter tokenizer passes shorter and longer tokens through unstemmed (in bytes).
_STEMMED_BYTES = range(3, 65)


class LexicalIndexError(StoreError):
    """The lexical snapshot is not a flurry lexical index."""


class LexicalIndexOutdated(LexicalIndexError):
    """The lexical snapshot was made by an older tokenizer: make the index again from the texts."""


@dataclass(frozen=True)
class _Segment:
    """Postings of a batch of chunks: ``terms`` sorted (uint64 hashes, no repeats), the
    postings of ``terms[i]`` at ``starts[i]:starts[i + 1]`` in ``rows`` / ``tfs``."""

    terms: np.ndarray  # uint64
    starts: np.ndarray  # int64, len(terms) + 1
    rows: np.ndarray  # int64: chunk rows
    tfs: np.ndarray  # float32: how often the term is in that chunk

    @property
    def size(self) -> int:
        return len(self.rows)


class _Tokenizer:
    """Text → stemmed term hashes. Each distinct word is folded, stemmed and hashed once; the
    words of a life's notes repeat (Zipf), so after the first thousand chunks nearly every
    word is a dictionary lookup. The cache is dropped when it grows past ``limit`` words."""

    def __init__(self, limit: int = 500_000) -> None:
        self._stemmer = snowballstemmer.stemmer("porter")
        self._cache: dict[str, int] = {}
        self._limit = limit

    def term(self, word: str) -> int:
        found = self._cache.get(word)
        if found is None:
            if len(self._cache) >= self._limit:
                self._cache.clear()
            folded = "".join(
                c
                for c in unicodedata.normalize("NFKD", word.casefold())
                if not unicodedata.combining(c)
            )
            # As FTS5: without this, Porter makes "is" into "i" and "as" into "a", and a
            # question with "is" in it finds every chunk that says "I".
            stem = (
                self._stemmer.stemWord(folded) if len(folded.encode()) in _STEMMED_BYTES else folded
            )
            found = int.from_bytes(hashlib.blake2b(stem.encode(), digest_size=8).digest(), "little")
            self._cache[word] = found
        return found

    def terms(self, text: str) -> list[int]:
        return [self.term(word) for word in _TOKEN.findall(text)]


class LexicalIndex:
    """Chunk texts ranked by BM25. Build with ``create`` or ``restore``."""

    def __init__(self) -> None:
        self._tokenizer = _Tokenizer()
        self._levels: list[list[_Segment]] = [[]]  # by size: level i merges MERGE_FANOUT of i - 1
        self._restored: list[_Segment] = []  # the snapshot's one segment (restore)
        self._chunk_ids: list[str] = []  # row → chunk id (a dead row keeps its id until compacted)
        self._rows: dict[str, int] = {}  # chunk id → its live row
        # row → words in the chunk, and whether it is live; with room for more rows than there
        # are (those are not live)
        self._lengths = np.zeros(0, dtype=np.float64)
        self._alive = np.zeros(0, dtype=bool)
        self._total_length = 0.0  # of the live rows
        # BM25's length norm of every row, K1 (1 - B + B length / average), made again at the
        # first query after a change: one array op then, instead of four per posting
        self._norms = np.zeros(0, dtype=np.float64)
        self._changes = 0  # adds and deletes so far
        self._norms_for = -1  # the count of changes the norms were made for

    @classmethod
    def create(cls) -> LexicalIndex:
        return cls()

    @classmethod
    def restore(cls, snapshot: bytes) -> LexicalIndex:
        if snapshot.startswith(_SQLITE_MAGIC):
            return cls._from_fts5(snapshot)
        if snapshot.startswith(_OUTDATED_MAGIC):
            raise LexicalIndexOutdated("the lexical snapshot was made by an older tokenizer")
        if not snapshot.startswith(_MAGIC):
            raise LexicalIndexError("the lexical snapshot does not hold a flurry lexical index")
        try:
            with np.load(io.BytesIO(snapshot[len(_MAGIC) :]), allow_pickle=False) as arrays:
                parts = {name: arrays[name] for name in arrays.files}
            ids_blob = bytes(parts["chunk_ids"])
            chunk_ids = ids_blob.decode().split("\n") if ids_blob else []
            segment = _Segment(parts["terms"], parts["starts"], parts["rows"], parts["tfs"])
            lengths = parts["lengths"].astype(np.float64)
        except (KeyError, ValueError, OSError, zipfile.BadZipFile, UnicodeDecodeError) as error:
            raise LexicalIndexError(f"the lexical snapshot is damaged: {error}") from error
        if len(chunk_ids) != len(lengths) or len(segment.starts) != len(segment.terms) + 1:
            raise LexicalIndexError("the lexical snapshot is damaged: its parts disagree")
        index = cls()
        index._chunk_ids = chunk_ids
        index._rows = {chunk_id: row for row, chunk_id in enumerate(chunk_ids)}
        index._lengths = lengths
        index._alive = np.ones(len(chunk_ids), dtype=bool)
        index._total_length = float(lengths.sum())
        # Its own level, above the cascade: merged again only into the next snapshot, so adding
        # to a restored index costs what adding to a new one does.
        index._restored = [segment] if segment.size else []
        return index

    @classmethod
    def _from_fts5(cls, snapshot: bytes) -> LexicalIndex:
        """The index of an older snapshot (SQLite FTS5), made again from the texts it holds."""
        db = sqlite3.connect(":memory:")
        try:
            db.deserialize(snapshot)
            rows = db.execute(
                "SELECT chunk_rows.chunk_id, chunk_text.text FROM chunk_rows "
                "JOIN chunk_text ON chunk_text.rowid = chunk_rows.rowid ORDER BY chunk_rows.rowid"
            ).fetchall()
        except sqlite3.DatabaseError as error:
            raise LexicalIndexError(f"the lexical snapshot is not readable: {error}") from error
        finally:
            db.close()
        index = cls()
        for start in range(0, len(rows), 10_000):
            index.add(rows[start : start + 10_000])
        return index

    def __len__(self) -> int:
        return len(self._rows)

    def ids(self) -> set[str]:
        return set(self._rows)

    def add(self, items: list[tuple[str, str]]) -> None:
        """Add or replace chunks given as (chunk id, text)."""
        latest = dict(items)  # the same id twice in one call: its last text wins
        if not latest:
            return
        self.delete([chunk_id for chunk_id in latest if chunk_id in self._rows])
        first = len(self._chunk_ids)
        rows, terms = [], []
        lengths = np.zeros(len(latest), dtype=np.float64)
        for offset, (chunk_id, text) in enumerate(latest.items()):
            if "\n" in chunk_id:
                raise ValueError(f"a chunk id holds no line break: {chunk_id!r}")
            found = self._tokenizer.terms(text)
            lengths[offset] = len(found)
            terms.extend(found)
            rows.extend([first + offset] * len(found))
            self._rows[chunk_id] = first + offset
            self._chunk_ids.append(chunk_id)
        end = first + len(latest)
        if end > len(self._alive):
            # Room for as many rows again: copying every row's arrays on each add would make
            # adding to a big index cost more per chunk than adding to a small one.
            room = max(end, 2 * len(self._alive)) - len(self._alive)
            self._lengths = np.concatenate([self._lengths, np.zeros(room)])
            self._alive = np.concatenate([self._alive, np.zeros(room, dtype=bool)])
        self._lengths[first:end] = lengths
        self._alive[first:end] = True
        self._total_length += float(lengths.sum())
        self._changes += 1
        if terms:
            self._levels[0].append(
                _segment(np.array(terms, dtype=np.uint64), np.array(rows, dtype=np.int64))
            )
            self._merge()

    def delete(self, ids: Iterable[str]) -> None:
        for chunk_id in ids:
            row = self._rows.pop(chunk_id, None)
            if row is not None:
                self._alive[row] = False
                self._total_length -= float(self._lengths[row])
                self._changes += 1

    def _merge(self) -> None:
        """A new segment joins level 0; a level holding ``MERGE_FANOUT`` segments is merged
        into one of the level above (which may cascade). A posting is thus rewritten once per
        level, log₈(N / batch) times in all, whatever N is."""
        for level, segments in enumerate(self._levels):
            if len(segments) < MERGE_FANOUT:
                return
            merged = self._merged(segments)
            segments.clear()
            if level + 1 == len(self._levels):
                self._levels.append([])
            if merged.size:
                self._levels[level + 1].append(merged)

    @property
    def _segments(self) -> list[_Segment]:
        return self._restored + [segment for segments in self._levels for segment in segments]

    def _merged(self, segments: list[_Segment]) -> _Segment:
        """One segment from several, the dead rows' postings dropped."""
        terms = np.concatenate([np.repeat(s.terms, np.diff(s.starts)) for s in segments])
        rows = np.concatenate([s.rows for s in segments])
        tfs = np.concatenate([s.tfs for s in segments])
        live = self._alive[rows]
        terms, rows, tfs = terms[live], rows[live], tfs[live]
        order = np.lexsort((rows, terms))
        terms, rows, tfs = terms[order], rows[order], tfs[order]
        return _from_sorted(terms, rows, tfs)

    def query(self, text: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` best chunks for the words of ``text`` as (id, BM25 score), best first.

        Any text is safe: it is only split into words, never parsed."""
        if k <= 0 or not self._rows:
            return []
        terms = np.array(
            sorted({self._tokenizer.term(w) for w in _TOKEN.findall(" ".join(query_words(text)))}),
            dtype=np.uint64,
        )
        if not len(terms):
            return []
        # Each term's postings in each segment, found for all terms at once.
        found: list[tuple[int, np.ndarray, np.ndarray]] = []  # (term index, rows, tfs)
        df = np.zeros(len(terms), dtype=np.int64)
        for segment in self._segments:
            at = np.searchsorted(segment.terms, terms)
            inside = at < len(segment.terms)
            hit = np.zeros(len(terms), dtype=bool)
            hit[inside] = segment.terms[at[inside]] == terms[inside]
            for index in np.flatnonzero(hit):
                start, end = segment.starts[at[index]], segment.starts[at[index] + 1]
                found.append((int(index), segment.rows[start:end], segment.tfs[start:end]))
                df[index] += end - start  # dead postings counted until merged, as Lucene does
        if not found:
            return []
        n = len(self._rows)
        # Words in half the chunks or more: BM25 (as FTS5 clamps it) gives them 1e-6; scoring
        # every chunk they are in would be most of the query's cost. Kept if nothing else is.
        informative = (df > 0) & (2 * df < n)
        if not informative.any():
            informative = df > 0
        df = np.minimum(df, n)  # dead postings not merged away yet may count past n
        idf = np.log((n - df + 0.5) / (df + 0.5))
        idf = np.where(idf > 0, idf, 1e-6)
        lists: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        for term, rows, tfs in found:
            if informative[term]:
                lists.setdefault(term, []).append((rows, tfs))
        # Every posting of the kept words is scored: tried, MaxScore (the rare words first, the
        # common ones looked up only in chunks still in the race) halved the median at 1M
        # chunks but doubled the slowest queries, whose common words could still lift others.
        # What is cut instead is the ranking: only rows that reach a bound are sorted.
        return self._best(*self._summed(lists, idf, k), k)

    def _summed(
        self, lists: dict[int, list[tuple[np.ndarray, np.ndarray]]], idf: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(live rows, their BM25 score) for the rows that may be among the ``k`` best of those
        holding one of the terms of ``lists``: each posting's part by FTS5's formula (k1 = 1.2,
        b = 0.75) in one pass over them all, then summed per row."""
        pairs = [(t, r, f) for t, found in lists.items() for r, f in found]
        which = np.repeat([t for t, r, _ in pairs], [len(r) for _, r, _ in pairs])
        rows = np.concatenate([r for _, r, _ in pairs])
        tfs = np.concatenate([f for _, _, f in pairs])
        gained = idf[which] * tfs * (K1 + 1) / (tfs + self._length_norms()[rows])
        if len(rows) * 16 <= len(self._chunk_ids):
            candidates, inverse = np.unique(rows, return_inverse=True)
            scores = np.bincount(inverse, weights=gained)
            live = self._alive[candidates]
            return candidates[live], scores[live]
        # Many postings: summing into one slot per row costs less than sorting them. Most rows
        # then hold a common word's small part; rather than list and rank them all, find a
        # score the k-th best reaches for sure, the k-th best among the rows of the rarest
        # words (any rows give a bound; theirs give a tight one), and keep what reaches it.
        all_scores = np.bincount(rows, weights=gained, minlength=len(self._chunk_ids))
        rare_rows, gathered = [], 0
        for _, found_rows, _ in sorted(pairs, key=lambda pair: len(pair[1])):
            rare_rows.append(found_rows)
            gathered += len(found_rows)
            if gathered >= 4 * k:
                break
        sample = np.unique(np.concatenate(rare_rows))  # a row twice would count twice
        sample = sample[self._alive[sample]]
        if len(sample) < k:  # too few live rows to bound by: keep every row that scored
            threshold = np.nextafter(0, 1)
        else:
            sample_scores = all_scores[sample]
            threshold = np.partition(sample_scores, len(sample_scores) - k)[-k]
        candidates = np.flatnonzero(all_scores >= threshold)
        live = self._alive[candidates]
        return candidates[live], all_scores[candidates[live]]

    def _length_norms(self) -> np.ndarray:
        if self._norms_for != self._changes:
            average = self._total_length / len(self._rows) if self._total_length > 0 else 1.0
            self._norms = K1 * (1 - B + B * self._lengths / average)
            self._norms_for = self._changes
        return self._norms

    def _best(self, candidates: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[str, float]]:
        if len(scores) > k:
            top = np.argpartition(-scores, k - 1)[:k]
            candidates, scores = candidates[top], scores[top]
        order = np.lexsort((candidates, -scores))  # best first; ties: the older chunk first
        return [(self._chunk_ids[candidates[i]], float(scores[i])) for i in order]

    def snapshot(self) -> bytes:
        """The whole index as bytes (plaintext: the caller seals it), compacted: live rows
        only, renumbered, in one segment."""
        live_rows = np.flatnonzero(self._alive)
        renumber = np.full(len(self._alive), -1, dtype=np.int64)
        renumber[live_rows] = np.arange(len(live_rows))
        merged = (
            self._merged(self._segments)
            if self._segments
            else _segment(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64))
        )
        chunk_ids = "\n".join(self._chunk_ids[row] for row in live_rows)
        buffer = io.BytesIO()
        np.savez(
            buffer,
            terms=merged.terms,
            starts=merged.starts,
            rows=renumber[merged.rows],
            tfs=merged.tfs,
            lengths=self._lengths[live_rows],
            chunk_ids=np.frombuffer(chunk_ids.encode(), dtype=np.uint8),
        )
        return _MAGIC + buffer.getvalue()

    def close(self) -> None:
        self._levels, self._restored = [[]], []
        self._chunk_ids, self._rows = [], {}


def _segment(terms: np.ndarray, rows: np.ndarray) -> _Segment:
    """A segment from one posting per word occurrence: (term, row) pairs counted into tfs."""
    order = np.lexsort((rows, terms))
    terms, rows = terms[order], rows[order]
    if len(terms):
        first = np.ones(len(terms), dtype=bool)
        first[1:] = (terms[1:] != terms[:-1]) | (rows[1:] != rows[:-1])
        starts = np.flatnonzero(first)
        tfs = np.diff(np.append(starts, len(terms))).astype(np.float32)
        terms, rows = terms[starts], rows[starts]
    else:
        tfs = np.zeros(0, dtype=np.float32)
    return _from_sorted(terms, rows, tfs)


def _from_sorted(terms: np.ndarray, rows: np.ndarray, tfs: np.ndarray) -> _Segment:
    """A segment from postings sorted by term, one per (term, row)."""
    if not len(terms):
        return _Segment(terms, np.zeros(1, dtype=np.int64), rows, tfs)
    first = np.ones(len(terms), dtype=bool)
    first[1:] = terms[1:] != terms[:-1]
    starts = np.flatnonzero(first)
    return _Segment(terms[starts], np.append(starts, len(terms)).astype(np.int64), rows, tfs)


def query_words(text: str) -> list[str]:
    """The distinct words of ``text``, at most 64: punctuation, operators' symbols and emoji go."""
    return list(dict.fromkeys(word.casefold() for word in _QUERY_WORD.findall(text)))[
        :_MAX_QUERY_TERMS
    ]
