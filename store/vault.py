"""The vault: the sealed record store, and the source of truth for everything the node knows.

One SQLite file in WAL mode. Plaintext columns hold only what the owner did not write:
random ids, a chunk's position, and keyed tags (HMAC) used to find a path or notice an
unchanged file. Every other field is sealed with AES-256-GCM; the associated data names the
table, the row and the field (and, for child rows, their parent and position), so a
ciphertext moved to another row, field or parent no longer opens.

A document and all its chunks are written in one transaction: after a crash a document is
either wholly present or absent. The search indexes are a cache of this file
(``store.retrieval.SearchIndexes.reconcile``).

This module owns the operations (opening and checking the schema, the per-thread connections,
documents and chunks, conversations, the small records other parts keep, transactions); what
is on disk — the tables, the associated data that binds each sealed field to its place, and the
row types handed out — is ``store.vault_layout``'s.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from store.errors import StoreError
from store.sealing import Sealer
from store.vault_layout import (
    SCHEMA,
    SCHEMA_VERSION,
    ChunkRecord,
    Document,
    NewChunk,
    PutResult,
    chunk_aad,
    record_aad,
)


class VaultError(StoreError):
    """The vault cannot do what was asked; the message says why."""


def new_id() -> str:
    return uuid.uuid4().hex


class Vault:
    def __init__(self, path: Path, sealer: Sealer) -> None:
        self.path = path
        self._sealer = sealer
        # One connection per thread (the API serves requests on several): SQLite then keeps
        # each thread's transaction apart, and WAL lets readers run beside the one writer.
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        # The owner's alone, whatever the umask: created 0600 before SQLite opens it (its -wal
        # and -shm then take the same mode), and a vault made before this is narrowed.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self._db.executescript(SCHEMA)
        self._check_schema()

    @property
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            # isolation_level=None: we open transactions ourselves, so a document is one transaction.
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a document reported as added survives a power cut, not only a killed process.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA temp_store=MEMORY")  # sorts and temp tables never spill to disk
            self._local.db = db
            with self._connections_lock:
                self._connections.append(db)
        return db

    def _check_schema(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) == 1:
            # Schema 1 had no chunk metadata: add the column; old chunks simply cite no metadata.
            with self._transaction():
                columns = {r[1] for r in self._db.execute("PRAGMA table_info(chunks)")}
                if "meta" not in columns:
                    self._db.execute("ALTER TABLE chunks ADD COLUMN meta BLOB")
                self._db.execute(
                    "UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),)
                )
        elif int(row[0]) > SCHEMA_VERSION:
            raise VaultError(
                f"{self.path} has vault schema {row[0]}, newer than this flurry reads ({SCHEMA_VERSION}): upgrade flurry"
            )
        elif int(row[0]) != SCHEMA_VERSION:
            raise VaultError(
                f"{self.path} has vault schema {row[0]}; this flurry reads {SCHEMA_VERSION}"
            )

    def close(self) -> None:
        with self._connections_lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    # --- sealed fields -------------------------------------------------------------------

    def _seal_json(self, value: object, aad: str) -> bytes:
        return self._sealer.seal(json.dumps(value, ensure_ascii=False).encode(), aad)

    def _unseal_json(self, sealed: bytes, aad: str) -> Any:  # what json.loads gives
        return json.loads(self._sealer.unseal(sealed, aad))

    def get_setting(self, key: str) -> object | None:
        """A sealed node setting (e.g. which embedding model filled the indexes)."""
        row = self._db.execute("SELECT value FROM meta WHERE key=?", ("setting:" + key,)).fetchone()
        return None if row is None else self._unseal_json(row[0], f"meta/{key}")

    def set_setting(self, key: str, value: object) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            ("setting:" + key, self._seal_json(value, f"meta/{key}")),
        )

    # --- documents -----------------------------------------------------------------------

    def path_tag(self, abs_path: str) -> bytes:
        return self._sealer.mac(abs_path.encode(), "document-path")

    def content_tag(self, content: bytes, tags: tuple[str, ...] = ()) -> bytes:
        # The tags count as content: adding the same file with other tags is a change.
        return self._sealer.mac(
            content + b"\x00tags:" + "\x00".join(sorted(tags)).encode(), "document-content"
        )

    def is_unchanged(self, abs_path: str, content: bytes, tags: tuple[str, ...] = ()) -> bool:
        row = self._db.execute(
            "SELECT content_tag FROM documents WHERE path_tag=?", (self.path_tag(abs_path),)
        ).fetchone()
        return row is not None and row[0] == self.content_tag(content, tags)

    def put_document(
        self,
        *,
        path: str,
        abs_path: str,
        content: bytes,
        mtime: float,
        chunks: list[NewChunk],
        tags: tuple[str, ...] = (),
        extra: dict[str, Any] | None = None,
    ) -> PutResult:
        """Store a document and its chunks, replacing the previous version of the same path.
        ``extra``: more sealed document metadata (its format, title, an email's headers)."""
        doc_id = new_id()
        meta = {
            **(extra or {}),
            "path": path,
            "abs_path": abs_path,
            "size": len(content),
            "mtime": mtime,
            "added_at": time.time(),
            "tags": sorted(tags),
        }
        chunk_ids = [new_id() for _ in chunks]
        path_tag = self.path_tag(abs_path)
        with self._transaction():
            removed = self._delete_document_by_tag(path_tag)
            self._db.execute(
                "INSERT INTO documents VALUES (?, ?, ?, ?)",
                (
                    doc_id,
                    path_tag,
                    self.content_tag(content, tags),
                    self._seal_json(meta, f"documents/{doc_id}/meta"),
                ),
            )
            self._db.executemany(
                "INSERT INTO chunks (id, document_id, seq, text, embedding, meta) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        cid,
                        doc_id,
                        seq,
                        self._sealer.seal(chunk.text.encode(), chunk_aad(cid, doc_id, seq, "text")),
                        self._sealer.seal(
                            np.asarray(chunk.embedding, dtype=np.float32).tobytes(),
                            chunk_aad(cid, doc_id, seq, "embedding"),
                        ),
                        self._seal_json(chunk.meta or {}, chunk_aad(cid, doc_id, seq, "meta")),
                    )
                    for seq, (cid, chunk) in enumerate(zip(chunk_ids, chunks, strict=True))
                ],
            )
        return PutResult(doc_id, chunk_ids, removed)

    def forget_document(self, doc_id: str) -> list[str]:
        """Remove a document and its chunks; returns the removed chunk ids."""
        with self._transaction():
            ids = [
                r[0]
                for r in self._db.execute("SELECT id FROM chunks WHERE document_id=?", (doc_id,))
            ]
            self._db.execute("DELETE FROM documents WHERE id=?", (doc_id,))
        return ids

    def forget_document_at(self, abs_path: str) -> list[str]:
        """Remove the document stored for ``abs_path``, if any; returns the removed chunk ids."""
        with self._transaction():
            return self._delete_document_by_tag(self.path_tag(abs_path))

    def _delete_document_by_tag(self, path_tag: bytes) -> list[str]:
        row = self._db.execute("SELECT id FROM documents WHERE path_tag=?", (path_tag,)).fetchone()
        if row is None:
            return []
        ids = [
            r[0] for r in self._db.execute("SELECT id FROM chunks WHERE document_id=?", (row[0],))
        ]
        self._db.execute("DELETE FROM documents WHERE id=?", (row[0],))
        return ids

    def documents(self) -> list[Document]:
        counts = dict(
            self._db.execute("SELECT document_id, count(*) FROM chunks GROUP BY document_id")
        )
        docs = []
        for doc_id, sealed in self._db.execute("SELECT id, meta FROM documents"):
            meta = self._unseal_json(sealed, f"documents/{doc_id}/meta")
            docs.append(
                Document(
                    doc_id,
                    meta["path"],
                    meta["abs_path"],
                    meta["size"],
                    meta["mtime"],
                    counts.get(doc_id, 0),
                    tuple(meta.get("tags", ())),
                )
            )
        return sorted(docs, key=lambda d: d.path)

    def counts(self) -> tuple[int, int]:
        (docs,) = self._db.execute("SELECT count(*) FROM documents").fetchone()
        (chunks,) = self._db.execute("SELECT count(*) FROM chunks").fetchone()
        return docs, chunks

    # --- chunks --------------------------------------------------------------------------

    def chunk_ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT id FROM chunks")}

    def load_for_index(self, ids: list[str]) -> Iterator[tuple[str, str, np.ndarray]]:
        """(id, text, embedding) of the given chunks, for the indexes to catch up."""
        for batch in _batches(ids, 500):
            marks = ",".join("?" * len(batch))
            for cid, doc_id, seq, text, emb in self._db.execute(
                f"SELECT id, document_id, seq, text, embedding FROM chunks WHERE id IN ({marks})",
                batch,
            ):
                yield (
                    cid,
                    self._sealer.unseal(text, chunk_aad(cid, doc_id, seq, "text")).decode(),
                    np.frombuffer(
                        self._sealer.unseal(emb, chunk_aad(cid, doc_id, seq, "embedding")),
                        np.float32,
                    ),
                )

    def get_chunks(self, ids: list[str]) -> dict[str, ChunkRecord]:
        """Chunks with their document's path, keyed by id; ids that no longer exist are absent."""
        out: dict[str, ChunkRecord] = {}
        metas: dict[str, dict[str, Any]] = {}
        for batch in _batches(ids, 500):
            marks = ",".join("?" * len(batch))
            rows = self._db.execute(
                f"SELECT c.id, c.document_id, c.seq, c.text, c.meta, d.meta FROM chunks c "
                f"JOIN documents d ON d.id = c.document_id WHERE c.id IN ({marks})",
                batch,
            )
            for cid, doc_id, seq, text, chunk_meta, meta in rows:
                if doc_id not in metas:
                    metas[doc_id] = self._unseal_json(meta, f"documents/{doc_id}/meta")
                plain = self._sealer.unseal(text, chunk_aad(cid, doc_id, seq, "text")).decode()
                cited = (
                    {}
                    if chunk_meta is None
                    else self._unseal_json(chunk_meta, chunk_aad(cid, doc_id, seq, "meta"))
                )
                doc = metas[doc_id]
                out[cid] = ChunkRecord(
                    cid, doc_id, seq, doc["path"], plain, tuple(doc.get("tags", ())), cited
                )
        return out

    # --- conversations -------------------------------------------------------------------

    def create_conversation(self, title: str) -> str:
        conv_id = new_id()
        meta = {"title": title, "created_at": time.time()}
        self._db.execute(
            "INSERT INTO conversations VALUES (?, ?)",
            (conv_id, self._seal_json(meta, f"conversations/{conv_id}/meta")),
        )
        return conv_id

    def append_message(self, conversation_id: str, message: dict[str, Any]) -> None:
        msg_id = new_id()
        with self._transaction():
            (seq,) = self._db.execute(
                "SELECT coalesce(max(seq) + 1, 0) FROM messages WHERE conversation_id=?",
                (conversation_id,),
            ).fetchone()
            aad = f"messages/{msg_id}/{conversation_id}/{seq}/body"
            self._db.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?)",
                (msg_id, conversation_id, seq, self._seal_json(message, aad)),
            )

    def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, seq, body FROM messages WHERE conversation_id=? ORDER BY seq",
            (conversation_id,),
        )
        return [
            self._unseal_json(body, f"messages/{mid}/{conversation_id}/{seq}/body")
            for mid, seq, body in rows
        ]

    def conversations(self) -> list[dict[str, Any]]:
        out = []
        for conv_id, sealed in self._db.execute("SELECT id, meta FROM conversations"):
            meta = self._unseal_json(sealed, f"conversations/{conv_id}/meta")
            out.append({"id": conv_id, **meta})
        return sorted(out, key=lambda c: c["created_at"])

    def rename_conversation(self, conversation_id: str, title: str) -> bool:
        """Give a conversation a new title; False when there is no such conversation."""
        row = self._db.execute(
            "SELECT meta FROM conversations WHERE id=?", (conversation_id,)
        ).fetchone()
        if row is None:
            return False
        aad = f"conversations/{conversation_id}/meta"
        meta = {**self._unseal_json(row[0], aad), "title": title}
        self._db.execute(
            "UPDATE conversations SET meta=? WHERE id=?",
            (self._seal_json(meta, aad), conversation_id),
        )
        return True

    def delete_conversation(self, conversation_id: str) -> bool:
        """Remove a conversation and every message in it; False when there is no such conversation."""
        with self._transaction():
            self._db.execute("DELETE FROM messages WHERE conversation_id=?", (conversation_id,))
            gone = self._db.execute(
                "DELETE FROM conversations WHERE id=?", (conversation_id,)
            ).rowcount
        return gone > 0

    def chunk_text(self, document_id: str, seq: int) -> str | None:
        """The text of one chunk of a document (a cited source, opened in full)."""
        row = self._db.execute(
            "SELECT id, text FROM chunks WHERE document_id=? AND seq=?", (document_id, seq)
        ).fetchone()
        if row is None:
            return None
        return self._sealer.unseal(row[1], chunk_aad(row[0], document_id, seq, "text")).decode()

    # --- small sealed records for the other parts (grants, tokens, peers, audit) ---------

    def put_record(self, kind: str, key: str, value: dict[str, Any]) -> int:
        """Insert or replace the record ``key`` of ``kind``; returns its sequence number."""
        with self._transaction():
            return self._put_record(kind, key, value)

    def write_records(
        self,
        puts: Iterable[tuple[str, str, dict[str, Any]]],
        deletes: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Several (kind, key, value) puts and (kind, key) deletes in one transaction: all or none."""
        with self._transaction():
            for kind, key in deletes:
                tag = self._sealer.mac(key.encode(), f"record/{kind}")
                self._db.execute("DELETE FROM records WHERE kind=? AND tag=?", (kind, tag))
            for kind, key, value in puts:
                self._put_record(kind, key, value)

    def _put_record(self, kind: str, key: str, value: dict[str, Any]) -> int:
        tag = self._sealer.mac(key.encode(), f"record/{kind}")
        row = self._db.execute(
            "SELECT seq FROM records WHERE kind=? AND tag=?", (kind, tag)
        ).fetchone()
        seq: int
        if row is None:
            (seq,) = self._db.execute(
                "SELECT coalesce(max(seq) + 1, 0) FROM records WHERE kind=?", (kind,)
            ).fetchone()
        else:
            seq = row[0]
        body = self._seal_json({"key": key, "value": value}, record_aad(kind, tag, seq))
        self._db.execute(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", (kind, tag, seq, body)
        )
        return seq

    def get_record(self, kind: str, key: str) -> dict[str, Any] | None:
        tag = self._sealer.mac(key.encode(), f"record/{kind}")
        row = self._db.execute(
            "SELECT seq, body FROM records WHERE kind=? AND tag=?", (kind, tag)
        ).fetchone()
        if row is None:
            return None
        value: dict[str, Any] = self._unseal_json(row[1], record_aad(kind, tag, row[0]))["value"]
        return value

    def records(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """(key, value) of every record of ``kind``, in insertion order."""
        rows = self._db.execute(
            "SELECT tag, seq, body FROM records WHERE kind=? ORDER BY seq", (kind,)
        )
        out = []
        for tag, seq, body in rows:
            record = self._unseal_json(body, record_aad(kind, tag, seq))
            out.append((record["key"], record["value"]))
        return out

    def delete_record(self, kind: str, key: str) -> bool:
        tag = self._sealer.mac(key.encode(), f"record/{kind}")
        return (
            self._db.execute("DELETE FROM records WHERE kind=? AND tag=?", (kind, tag)).rowcount > 0
        )

    # --- plumbing ------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _batches(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
