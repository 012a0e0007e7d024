"""The vector index: chunk ids and their embeddings in an embedded chromadb.

Embeddings can be inverted back to text, so chromadb's folder lives in a memory-backed
``runtime_dir`` (``/dev/shm``) and reaches the disk only as a sealed snapshot, which
``store.retrieval`` writes. chromadb is given ids and vectors only: no documents, no metadata.

One process opens the folder (chromadb's embedded client is not safe across processes).
"""

from __future__ import annotations

import gc
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import cast

import chromadb
import numpy as np
from chromadb.api.client import Client
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings

from store.bundle import BundleWriter
from store.errors import StoreError

_COLLECTION = "chunks"
# 1: the ids in the manifest (JSON); 2: the ids in a file of their own, one a line.
_SNAPSHOT_FORMAT = 2
MANIFEST = "index.json"
_IDS = "ids"
# The private folder's name carries the owner's pid, so ``sweep_stale`` can tell a dead node's
# leftovers (plaintext embeddings in RAM-backed storage until reboot) from a live node's.
_FOLDER_PREFIX = "flurry-"
_FOLDER_NAME = re.compile(r"flurry-(\d+)-.+")


class VectorIndexError(StoreError):
    """The vector index is inconsistent or its snapshot cannot be restored."""


class VectorIndex:
    """Chunk ids and embeddings, cosine space. Build with ``create`` or ``restore``."""

    def __init__(self, folder: Path, dim: int, ids: set[str]) -> None:
        self._folder = folder
        self.dim = dim
        self._ids = ids  # kept here: asking chromadb for 100k ids is slow
        self._client: Client | None = None
        self._collection: Collection | None = None

    @classmethod
    def create(cls, runtime_dir: Path, dim: int) -> VectorIndex:
        index = cls(make_private_folder(runtime_dir), dim, set())
        try:
            index._client = _open_client(index._chroma_dir)
            index._collection = index._client.create_collection(
                _COLLECTION,
                configuration={"hnsw": {"space": "cosine"}},
                embedding_function=None,  # never let chromadb embed (or download a model) itself
            )
        except BaseException:
            index.close()
            raise
        return index

    @classmethod
    def restore(cls, runtime_dir: Path, snapshot: bytes) -> VectorIndex:
        """Unpack a snapshot of the first format (one tar in memory); nothing is re-added."""
        folder = make_private_folder(runtime_dir)
        try:
            with tarfile.open(fileobj=io.BytesIO(snapshot), mode="r:") as tar:
                tar.extractall(folder, filter="data")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return cls.adopt(folder)

    @classmethod
    def adopt(cls, folder: Path) -> VectorIndex:
        """Open the index whose snapshot (``write_snapshot``) was unpacked into ``folder``, a
        ``make_private_folder``; the index owns the folder from now on, and removes it when it
        closes (or here, if it does not open)."""
        index = cls(folder, 0, set())
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            (folder / MANIFEST).unlink()
            if manifest.get("format") not in (1, _SNAPSHOT_FORMAT):
                raise VectorIndexError(f"unknown vector snapshot format {manifest.get('format')!r}")
            if manifest["format"] == 1:
                ids = manifest["ids"]
            else:  # one id a line: a million ids parse in a tenth of the time JSON takes
                ids_blob = (folder / _IDS).read_bytes()
                (folder / _IDS).unlink()
                ids = ids_blob.decode().split("\n") if ids_blob else []
            index.dim, index._ids = int(manifest["dim"]), set(ids)
            if len(index._ids) != len(ids):
                raise VectorIndexError("the vector snapshot lists an id twice")
            index._open()
            _, collection = index._opened()
            if collection.count() != len(index._ids):
                raise VectorIndexError(
                    f"vector snapshot holds {collection.count()} vectors but lists {len(index._ids)} ids"
                )
        except BaseException:
            index.close()
            raise
        return index

    @property
    def _chroma_dir(self) -> Path:
        return self._folder / "chroma"

    def _open(self) -> None:
        self._client = _open_client(self._chroma_dir)
        self._collection = self._client.get_collection(_COLLECTION, embedding_function=None)

    def _opened(self) -> tuple[Client, Collection]:
        if self._client is None or self._collection is None:
            raise VectorIndexError("the vector index is closed")
        return self._client, self._collection

    def _release(self) -> None:
        """Close chromadb so that no handle into its folder is left open."""
        self._collection = None
        if self._client is not None:
            self._client.close()
            self._client = None
        # The client and chromadb's Rust bindings sit in reference cycles: closing alone leaves
        # SQLite handles open until the cycle collector runs, so run it now.
        gc.collect()

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> set[str]:
        return set(self._ids)

    def add(self, ids: list[str], embeddings: np.ndarray) -> None:
        """Add or replace the vectors of ``ids`` (one row of ``embeddings`` each)."""
        if any("\n" in chunk_id for chunk_id in ids):  # the snapshot lists ids one a line
            raise ValueError("a chunk id holds no line break")
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape != (len(ids), self.dim):
            raise ValueError(
                f"expected {len(ids)} embeddings of {self.dim} values, got shape {embeddings.shape}"
            )
        client, collection = self._opened()
        batch = client.get_max_batch_size()
        for start in range(0, len(ids), batch):
            batch_ids = list(ids[start : start + batch])
            # upsert: re-adding a chunk (reconcile after a crash) replaces it rather than failing
            collection.upsert(ids=batch_ids, embeddings=embeddings[start : start + batch])
            self._ids.update(batch_ids)

    def delete(self, ids: list[str]) -> None:
        known = [chunk_id for chunk_id in ids if chunk_id in self._ids]
        client, collection = self._opened()
        batch = client.get_max_batch_size()
        for start in range(0, len(known), batch):
            batch_ids = known[start : start + batch]
            collection.delete(ids=batch_ids)
            self._ids.difference_update(batch_ids)

    def query(self, embedding: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The ``k`` nearest chunks as (id, cosine similarity), best first."""
        k = min(k, len(self._ids))
        if k <= 0:
            return []
        query = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
        _, collection = self._opened()
        result = collection.query(query_embeddings=query, n_results=k, include=["distances"])
        distances = result["distances"]
        assert distances is not None, "asked for in include"
        # chromadb's cosine distance is 1 - cosine similarity
        return [
            (chunk_id, 1.0 - float(distance))
            for chunk_id, distance in zip(result["ids"][0], distances[0], strict=True)
        ]

    def write_snapshot(self, bundle: BundleWriter) -> None:
        """Add the index to ``bundle`` (plaintext: the caller seals it): ``MANIFEST``, the ids,
        and chromadb's folder; ``adopt`` opens them again once unpacked."""
        # chromadb keeps SQLite and HNSW files open and writes them when it chooses; copying
        # them under an open client could catch a half-written page. Close it, check that no
        # handle is left, copy, then open again.
        self._release()
        try:
            _check_nothing_open(self._folder)
            manifest = {"format": _SNAPSHOT_FORMAT, "dim": self.dim}
            bundle.add_bytes(MANIFEST, json.dumps(manifest).encode())
            bundle.add_bytes(_IDS, "\n".join(sorted(self._ids)).encode())
            bundle.add_folder(self._chroma_dir, "chroma")
        finally:
            self._open()

    def close(self) -> None:
        """Close chromadb and remove the private folder with everything in it."""
        self._release()
        shutil.rmtree(self._folder, ignore_errors=True)


def sweep_stale(runtime_dir: Path) -> list[Path]:
    """Remove the private folders of nodes that died without closing; return what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(runtime_dir))
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = _FOLDER_NAME.fullmatch(entry.name)
        if not match or not entry.is_dir(follow_symlinks=False):
            continue
        if not _process_alive(int(match.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":  # signal 0 means something else on Windows: never sweep there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def make_private_folder(runtime_dir: Path) -> Path:
    """A new folder for one index's files, in ``runtime_dir``, that only this user can read."""
    # mkdtemp: a random suffix and mode 0700, so other users cannot read the embeddings
    return Path(tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}{os.getpid()}-", dir=runtime_dir))


def _open_client(path: Path) -> Client:
    # No telemetry: the node makes no outbound traffic its owner did not configure.
    settings = Settings(anonymized_telemetry=False, allow_reset=False)
    # Declared as the ClientAPI protocol; the object is a Client, which also has close().
    return cast(Client, chromadb.PersistentClient(path=str(path), settings=settings))


def _check_nothing_open(folder: Path) -> None:
    """Fail rather than copy files this process still holds open (checked where /proc exists)."""
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return
    prefix = str(folder.resolve()) + os.sep
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:
            continue
        if target.startswith(prefix):
            raise VectorIndexError(
                f"chromadb still holds {target} open; refusing to snapshot a live index"
            )
