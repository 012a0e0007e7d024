"""The lexical index: BM25 over chunk text with SQLite FTS5, held entirely in memory.

The database is ``:memory:`` with ``temp_store=MEMORY``, so neither the index nor SQLite's
temporary files touch the disk; it persists only as a sealed snapshot (``store.retrieval``).

Tokenizer: ``porter unicode61 remove_diacritics 2``. unicode61 folds case and, with
remove_diacritics, lets "cafe" find "café". The Porter stemmer strips English suffixes, so
"meeting" finds "meetings" and "running" finds "run": an owner's questions rarely use the
exact word form of their notes. It is English-only, but it stems the query and the text the
same way, so in other languages it at worst merges a few word forms; names and codes, the
lexical side's real job, are stemmed alike on both sides and still match.
"""

from __future__ import annotations

import re
import sqlite3

from store.errors import StoreError

_SCHEMA = """
CREATE TABLE chunk_rows (rowid INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE);
CREATE VIRTUAL TABLE chunk_text USING fts5(
    text, tokenize = 'porter unicode61 remove_diacritics 2'
);
"""
# A query is an OR of its words; beyond this many, more words only slow it down.
_MAX_QUERY_TERMS = 64
_WORD = re.compile(r"\w+")


class LexicalIndexError(StoreError):
    """The lexical snapshot is not a flurry lexical index."""


class LexicalIndex:
    """Chunk texts ranked by BM25. Build with ``create`` or ``restore``."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._ids = {chunk_id for (chunk_id,) in db.execute("SELECT chunk_id FROM chunk_rows")}

    @classmethod
    def create(cls) -> LexicalIndex:
        db = _connect()
        db.executescript(_SCHEMA)
        return cls(db)

    @classmethod
    def restore(cls, snapshot: bytes) -> LexicalIndex:
        db = _connect()
        try:
            db.deserialize(snapshot)
            tables = {
                name
                for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if not {"chunk_rows", "chunk_text"} <= tables:
                raise LexicalIndexError("the lexical snapshot does not hold a flurry lexical index")
            return cls(db)
        except sqlite3.DatabaseError as error:
            db.close()
            raise LexicalIndexError(
                f"the lexical snapshot is not a SQLite database: {error}"
            ) from error
        except BaseException:
            db.close()
            raise

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> set[str]:
        return set(self._ids)

    def add(self, items: list[tuple[str, str]]) -> None:
        """Add or replace chunks given as (chunk id, text)."""
        added: set[str] = set()
        with self._db:  # one transaction: all of them or none
            for chunk_id, text in items:
                if chunk_id in self._ids or chunk_id in added:
                    self._delete_one(chunk_id)
                (rowid,) = self._db.execute(
                    "INSERT INTO chunk_rows (chunk_id) VALUES (?) RETURNING rowid", (chunk_id,)
                ).fetchone()
                self._db.execute(
                    "INSERT INTO chunk_text (rowid, text) VALUES (?, ?)", (rowid, text)
                )
                added.add(chunk_id)
        self._ids |= added

    def delete(self, ids: list[str]) -> None:
        known = [chunk_id for chunk_id in ids if chunk_id in self._ids]
        with self._db:
            for chunk_id in known:
                self._delete_one(chunk_id)
        self._ids.difference_update(known)

    def _delete_one(self, chunk_id: str) -> None:
        (rowid,) = self._db.execute(
            "SELECT rowid FROM chunk_rows WHERE chunk_id = ?", (chunk_id,)
        ).fetchone()
        self._db.execute("DELETE FROM chunk_text WHERE rowid = ?", (rowid,))
        self._db.execute("DELETE FROM chunk_rows WHERE rowid = ?", (rowid,))

    def query(self, text: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` best chunks for the words of ``text`` as (id, BM25 score), best first.

        Any text is safe: it is reduced to quoted words, so FTS5 operators typed by the user
        are searched for as words and never parsed.
        """
        words = self._informative(query_words(text))
        if not words or k <= 0:
            return []
        rows = self._db.execute(
            """
            SELECT chunk_rows.chunk_id, hits.score
            FROM (SELECT rowid, rank AS score FROM chunk_text WHERE chunk_text MATCH ? ORDER BY rank LIMIT ?) AS hits
            JOIN chunk_rows ON chunk_rows.rowid = hits.rowid
            ORDER BY hits.score
            """,
            (match_expression(words), k),
        ).fetchall()
        # FTS5's bm25() is negative, lower is better; flip it so higher is better like cosine.
        return [(chunk_id, -score) for chunk_id, score in rows]

    def _informative(self, words: list[str]) -> list[str]:
        """Drop the words found in half the chunks or more, unless no other word is left.

        FTS5's bm25() gives such a word an IDF of 1e-6, next to nothing, yet scoring every
        chunk it matches is most of a query's cost ("the" matches most chunks: 100+ ms at
        100k chunks). Without them the ranking moves by that 1e-6 at most.
        """
        if len(words) < 2:
            return words
        frequencies = {
            word: self._db.execute(
                "SELECT count(*) FROM chunk_text WHERE chunk_text MATCH ?",
                (match_expression([word]),),
            ).fetchone()[0]
            for word in words
        }
        rare = [word for word in words if 2 * frequencies[word] < len(self._ids)]
        return rare or words

    def snapshot(self) -> bytes:
        """The whole database as bytes (plaintext: the caller seals it)."""
        return self._db.serialize()

    def close(self) -> None:
        self._db.close()


def query_words(text: str) -> list[str]:
    """The distinct words of ``text``, at most 64: punctuation, operators' symbols and emoji go."""
    return list(dict.fromkeys(word.casefold() for word in _WORD.findall(text)))[:_MAX_QUERY_TERMS]


def match_expression(words: list[str]) -> str:
    """An FTS5 query matching any of ``words``, each quoted so that none is read as an operator."""
    # \w+ never holds a double quote, so a word cannot break out of its quotes.
    return " OR ".join(f'"{word}"' for word in words)


def _connect() -> sqlite3.Connection:
    # The caller (SearchIndexes) serialises access with a lock, so any one thread may use it.
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.execute("PRAGMA temp_store = MEMORY")  # sorts and temp tables never spill to a file
    return db
