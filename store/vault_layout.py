"""The vault's layout on disk: its SQL schema and version, the associated data that binds each
sealed field to its place, and the row types the vault hands out.

Plaintext columns hold only what the owner did not write (random ids, a chunk's position,
keyed tags); the associated-data strings here name the table, the row and the field (and, for
child rows, their parent and position), so a ciphertext moved elsewhere no longer opens. The
operations on this layout are ``store.vault.Vault``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# 2: chunks gained a sealed `meta` (citation metadata: an email's sender, an event's start).
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    path_tag BLOB NOT NULL UNIQUE,      -- HMAC of the absolute path: find a document without storing its path
    content_tag BLOB NOT NULL,          -- HMAC of the bytes: notice an unchanged file without storing a plain hash
    meta BLOB NOT NULL                  -- sealed JSON: path as given, absolute path, size, mtime, title, added_at
);
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY,
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    text BLOB NOT NULL,                 -- sealed UTF-8
    embedding BLOB NOT NULL,            -- sealed float32 vector: lets the indexes catch up without re-embedding
    meta BLOB                           -- sealed JSON: what a citation shows (sender, date, page, heading); NULL before schema 2
);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks(document_id, seq);
CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, meta BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL                  -- sealed JSON: role, content, sources, at
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, seq);
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,                 -- what other parts keep here: "grant", "token", "peer", "audit", …
    tag BLOB NOT NULL,                  -- HMAC of the record's key (a DID, a token name): found, not shown
    seq INTEGER NOT NULL,               -- order of first insertion within the kind
    body BLOB NOT NULL,                 -- sealed JSON
    PRIMARY KEY (kind, tag)
);
CREATE UNIQUE INDEX IF NOT EXISTS records_by_seq ON records(kind, seq);
"""


@dataclass(frozen=True)
class Document:
    id: str
    path: str  # as the owner gave it to `flurry add`, joined with the file's relative path
    abs_path: str
    size: int
    mtime: float
    chunk_count: int
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChunkRecord:
    id: str
    document_id: str
    seq: int
    path: str
    text: str
    tags: tuple[str, ...] = ()  # the document's tags: grants limit peers to some of them
    meta: dict[str, Any] = field(default_factory=dict)  # citation metadata of the chunk


@dataclass(frozen=True)
class NewChunk:
    text: str
    embedding: np.ndarray
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class PutResult:
    document_id: str
    chunk_ids: list[str]
    removed_chunk_ids: list[str]  # chunks of the version this one replaced


def chunk_aad(chunk_id: str, doc_id: str, seq: int, field: str) -> str:
    return f"chunks/{chunk_id}/{doc_id}/{seq}/{field}"


def record_aad(kind: str, tag: bytes, seq: int) -> str:
    # The sequence number is bound too: an audit entry cannot be moved to another place in the chain.
    return f"records/{kind}/{tag.hex()}/{seq}"
