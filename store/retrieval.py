"""Hybrid retrieval: the vector and lexical indexes together, fused by reciprocal rank.

The vault is the source of truth; these indexes are a cache of it. While the node is unlocked
they live in memory (chromadb in a memory-backed ``runtime_dir``, the BM25 index as numpy arrays); they
reach the disk only as one sealed snapshot file, which unlock restores instead of re-adding
every vector (re-adding 100k vectors takes minutes). ``reconcile`` then catches the indexes up
with the vault, from the vault's sealed texts and embeddings, without re-embedding anything.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import shutil
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from store.bundle import BundleWriter, unpack_bundle
from store.errors import StoreError
from store.lexical_index import LexicalIndex, LexicalIndexOutdated
from store.sealing import STREAM_MAGIC, Sealer, SealError
from store.vector_index import VectorIndex, make_private_folder, sweep_stale

SNAPSHOT_AAD = "index-snapshot"
# The snapshot file is a sealed stream (``Sealer.stream_writer``) of one bundle of files
# (``store.bundle``): the lexical snapshot as this file, then the vector index's
# (``VectorIndex.write_snapshot``).
_LEXICAL_MEMBER = "lexical.snapshot"
# The first format, still read: one sealed value holding, once unsealed, this magic, two
# big-endian lengths, then the two snapshots.
_SNAPSHOT_MAGIC = b"flurry index snapshot v1\n"
_LENGTHS = struct.Struct(">QQ")
# How many missing chunks reconcile asks the vault for at a time.
_RECONCILE_BATCH = 1000


class IndexSnapshotError(StoreError):
    """The sealed index snapshot exists but cannot be restored.

    Nothing was rebuilt: the caller decides whether to delete the snapshot and rebuild the
    indexes from the vault.
    """


def reciprocal_rank_fusion(rankings: list[list[str]], k: int = 60) -> list[tuple[str, float]]:
    """Fuse rankings (ids, best first) by reciprocal rank (Cormack, Clarke, Büttcher 2009).

    Each id scores the sum of 1 / (k + rank) over the rankings it appears in, rank counted
    from 1. Best first; equal scores keep the order in which ids were first seen.
    """
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: pair[1], reverse=True)


class SearchIndexes:
    """The vector and lexical indexes of one unlocked node. Build with ``open``.

    Safe to call from several threads: every method holds one lock, so a snapshot never
    closes chromadb under a running query.
    """

    def __init__(
        self, vector: VectorIndex, lexical: LexicalIndex, snapshot_path: Path, sealer: Sealer
    ) -> None:
        self._vector = vector
        self._lexical = lexical
        self._snapshot_path = snapshot_path
        self._sealer = sealer
        self._lock = threading.RLock()
        self.dirty = False  # changed since the snapshot on disk

    @classmethod
    def open(
        cls, snapshot_path: Path, runtime_dir: Path, sealer: Sealer, dim: int
    ) -> SearchIndexes:
        """Restore the indexes from the sealed snapshot, or start empty when there is none.

        Raises ``IndexSnapshotError`` when the snapshot exists but cannot be restored.
        """
        sweep_stale(runtime_dir)
        if not snapshot_path.exists():
            return cls(
                VectorIndex.create(runtime_dir, dim), LexicalIndex.create(), snapshot_path, sealer
            )
        try:
            if _is_stream(snapshot_path):
                vector, lexical_snapshot = _unpack_stream(snapshot_path, sealer, runtime_dir)
            else:  # the first format: one sealed value holding both snapshots
                vector_snapshot, lexical_snapshot = _unpack(
                    sealer.read_file(snapshot_path, SNAPSHOT_AAD)
                )
                vector = VectorIndex.restore(runtime_dir, vector_snapshot)
        except (SealError, IndexSnapshotError) as error:
            raise IndexSnapshotError(f"{snapshot_path}: {error}") from error
        except Exception as error:
            raise IndexSnapshotError(
                f"{snapshot_path}: the vector index does not restore: {error}"
            ) from error
        try:
            lexical = LexicalIndex.restore(lexical_snapshot)
        except LexicalIndexOutdated:
            # Made by an older tokenizer: empty now, and reconcile adds every chunk's text again
            # from the vault (the vectors stay as they are).
            lexical = LexicalIndex.create()
        except Exception as error:
            vector.close()
            raise IndexSnapshotError(
                f"{snapshot_path}: the lexical index does not restore: {error}"
            ) from error
        if vector.dim != dim:
            vector.close()
            lexical.close()
            raise IndexSnapshotError(
                f"{snapshot_path} holds {vector.dim}-value embeddings but the embedding model gives {dim}: "
                "the indexes must be rebuilt from the vault"
            )
        return cls(vector, lexical, snapshot_path, sealer)

    def __len__(self) -> int:
        return len(self._vector)

    @property
    def dim(self) -> int:
        """How many values each embedding holds."""
        return self._vector.dim

    def counts(self) -> tuple[int, int]:
        """(chunks in the vector index, chunks in the lexical index): equal unless a crash split them."""
        with self._lock:
            return len(self._vector), len(self._lexical)

    def add(self, ids: list[str], texts: list[str], embeddings: np.ndarray) -> None:
        """Add or replace chunks in both indexes."""
        if not len(ids) == len(texts) == len(embeddings):
            raise ValueError(f"{len(ids)} ids, {len(texts)} texts and {len(embeddings)} embeddings")
        if not ids:
            return
        with self._lock:
            self.dirty = True
            self._vector.add(list(ids), embeddings)
            self._lexical.add(list(zip(ids, texts, strict=True)))

    def delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        if not ids:
            return
        with self._lock:
            self.dirty = True
            self._vector.delete(ids)
            self._lexical.delete(ids)

    def reconcile(
        self,
        vault_ids: set[str],
        load: Callable[[list[str]], Iterable[tuple[str, str, np.ndarray]]],
    ) -> tuple[int, int]:
        """Make both indexes hold exactly ``vault_ids``; return (added, removed).

        ``load(ids)`` yields (id, text, embedding) from the vault; it is called with at most
        1000 ids at a time. A snapshot older than the vault (the node was killed before it
        saved) catches up here without re-embedding anything.
        """
        with self._lock:
            vector_ids, lexical_ids = self._vector.ids(), self._lexical.ids()
            extra = sorted((vector_ids | lexical_ids) - vault_ids)
            # Each index gets what it lacks: after a crash between the two adds, or a lexical
            # index made again, the other one is not redone (at 1M vectors, that is an hour).
            missing_vectors, missing_texts = vault_ids - vector_ids, vault_ids - lexical_ids
            missing = sorted(missing_vectors | missing_texts)
            self.delete(extra)
            added = 0
            for start in range(0, len(missing), _RECONCILE_BATCH):
                rows = list(load(missing[start : start + _RECONCILE_BATCH]))
                if not rows:
                    continue
                self.dirty = True
                vectors = [(i, e) for i, _, e in rows if i in missing_vectors]
                if vectors:
                    self._vector.add([i for i, _ in vectors], np.stack([e for _, e in vectors]))
                self._lexical.add([(i, t) for i, t, _ in rows if i in missing_texts])
                added += len(rows)
            return added, len(extra)

    def search(
        self, query_text: str, query_embedding: np.ndarray, k: int, candidates: int = 50
    ) -> list[tuple[str, float]]:
        """The ``k`` best chunks as (id, fused score), best first.

        Each index proposes its ``candidates`` best; reciprocal rank fusion merges them, so a
        chunk both indexes rank well beats one only a single index likes.
        """
        candidates = max(candidates, k)
        with self._lock:
            by_meaning = [
                chunk_id for chunk_id, _ in self._vector.query(query_embedding, candidates)
            ]
            by_words = [chunk_id for chunk_id, _ in self._lexical.query(query_text, candidates)]
        return reciprocal_rank_fusion([by_meaning, by_words])[:k]

    def save(self) -> None:
        """Write the sealed snapshot if anything changed; atomic, so a crash keeps the old one.

        Streamed: the bundle is sealed a frame at a time as it is written, so saving holds no
        copy of the indexes in memory (at a million chunks they are about 2 GB)."""
        with self._lock:
            if not self.dirty:
                return
            lexical_snapshot = self._lexical.snapshot()
            with self._sealer.stream_writer(self._snapshot_path, SNAPSHOT_AAD) as sealed:
                bundle = BundleWriter(sealed)
                bundle.add_bytes(_LEXICAL_MEMBER, lexical_snapshot)
                del lexical_snapshot
                self._vector.write_snapshot(bundle)
                bundle.close()
            self.dirty = False

    def close(self) -> None:
        """Drop both indexes from memory. Does not save: call ``save`` first.

        (Unsaved changes are not lost: the vault holds them and ``reconcile`` restores them.)
        """
        with self._lock:
            self._vector.close()
            self._lexical.close()


@contextlib.contextmanager
def open_snapshot_plaintext(path: Path, sealer: Sealer) -> Iterator[io.RawIOBase | io.BytesIO]:
    """The snapshot file's plaintext as a stream, whichever its format: a backup keeps it as it
    is, a frame at a time (2 GB at a million chunks), and ``write_snapshot_plaintext`` seals it
    again. Raises ``SealError`` where it does not open, also while it is read."""
    if _is_stream(path):
        with sealer.stream_reader(path, SNAPSHOT_AAD) as stream:
            yield stream
        return
    if path.stat().st_size == 0:  # mmap refuses an empty file
        raise SealError(f"not a sealed value ({SNAPSHOT_AAD})")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        # The first format, one sealed value under 2 GiB: opened from the mapping, with no
        # copy of it before the one AES-GCM makes.
        view = memoryview(mapped)
        try:
            plaintext = sealer.unseal(view, SNAPSHOT_AAD)
        finally:
            view.release()
    yield io.BytesIO(plaintext)


def write_snapshot_plaintext(path: Path, sealer: Sealer, pieces: Iterable[bytes]) -> None:
    """Seal what ``open_snapshot_plaintext`` gave, in pieces, in the format it came from; a
    failure while the pieces come leaves no file."""
    pieces = iter(pieces)
    first = next(pieces, b"")
    if first.startswith(_SNAPSHOT_MAGIC):  # the first format: one value, held whole
        sealer.write_file(path, b"".join([first, *pieces]), SNAPSHOT_AAD)
        return
    with sealer.stream_writer(path, SNAPSHOT_AAD) as stream:
        stream.write(first)
        for piece in pieces:
            stream.write(piece)


def _is_stream(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(STREAM_MAGIC)) == STREAM_MAGIC


def _unpack_stream(path: Path, sealer: Sealer, runtime_dir: Path) -> tuple[VectorIndex, bytes]:
    """(the vector index, the lexical snapshot) of a sealed stream, unpacked frame by frame
    into a private folder in ``runtime_dir`` (memory-backed): never the whole in memory."""
    folder = make_private_folder(runtime_dir)
    try:
        with sealer.stream_reader(path, SNAPSHOT_AAD) as sealed:
            unpack_bundle(sealed, folder)
        lexical_path = folder / _LEXICAL_MEMBER
        if not lexical_path.is_file():
            raise IndexSnapshotError("the index snapshot holds no lexical index")
        lexical_snapshot = lexical_path.read_bytes()
        lexical_path.unlink()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return VectorIndex.adopt(folder), lexical_snapshot


def _unpack(data: bytes) -> tuple[bytes, bytes]:
    header = len(_SNAPSHOT_MAGIC) + _LENGTHS.size
    if not data.startswith(_SNAPSHOT_MAGIC) or len(data) < header:
        raise IndexSnapshotError("not a flurry index snapshot (or a newer format)")
    vector_length, lexical_length = _LENGTHS.unpack_from(data, len(_SNAPSHOT_MAGIC))
    if header + vector_length + lexical_length != len(data):
        raise IndexSnapshotError("the index snapshot is truncated")
    view = memoryview(data)
    return bytes(view[header : header + vector_length]), bytes(view[header + vector_length :])
