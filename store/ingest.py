"""Ingestion: files on disk → chunks → embeddings → the vault and the search indexes.

Each document is committed to the vault in one transaction before it is reported as added,
so an interrupted run never leaves half a document; the indexes catch up from the vault at
the next unlock if the run dies before they are saved. The embedding function is handed
in: the store knows nothing about models.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from store.chunking import chunk_text
from store.retrieval import SearchIndexes
from store.vault import NewChunk, Vault

# Suffix → is it Markdown? Other formats arrive with their own parsers (issue 6).
SUPPORTED_SUFFIXES = {".md": True, ".markdown": True, ".txt": False}
# Notes and text files larger than this are almost always logs or dumps, not something to ask about.
MAX_FILE_BYTES = 20 * 1024 * 1024

Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class AddReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    chunks: int = 0


@dataclass(frozen=True)
class Progress:
    done: int      # files finished so far
    total: int
    path: str      # the file just finished
    outcome: str   # "added", "updated", "unchanged" or "skipped"


def absolute(path: str | Path) -> str:
    """The one spelling of a path used to recognise a document again (no symlink resolution
    surprises between `add` and `forget`)."""
    return os.path.abspath(os.path.expanduser(str(path)))


def discover(given: str) -> tuple[list[tuple[Path, str]], list[Skipped]]:
    """Files to read under ``given``, each with its display path (``given`` joined with the
    file's relative path), and the files passed over with the reason."""
    root = Path(given).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{given}: no such file or folder")
    if root.is_file():
        if root.suffix.lower() not in SUPPORTED_SUFFIXES:
            return [], [Skipped(given, f"unsupported file type {root.suffix or '(none)'}; flurry reads .md and .txt")]
        return [(root, given)], []
    found: list[tuple[Path, str]] = []
    skipped: list[Skipped] = []
    base = given.rstrip("/") or "/"
    for dirpath, dirnames, filenames in os.walk(root):
        # Hidden folders (.git, .obsidian, .trash) hold tooling, not the owner's writing.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            shown = os.path.join(base, os.path.relpath(path, root))
            if path.suffix.lower() in SUPPORTED_SUFFIXES:
                found.append((path, shown))
            else:
                skipped.append(Skipped(shown, f"unsupported file type {path.suffix or '(none)'}"))
    return found, skipped


def decode_text(content: bytes) -> str:
    """UTF-8 text, or ValueError with the reason a person would want."""
    if b"\x00" in content[:8192]:
        raise ValueError("binary file, not text")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (byte {e.start})") from None


class Ingestor:
    def __init__(
        self, vault: Vault, indexes: SearchIndexes, embed: Embed, *, tags: tuple[str, ...] = (), index_batch: int = 256
    ) -> None:
        self._vault = vault
        self._tags = tags
        self._indexes = indexes
        self._embed = embed
        self._index_batch = index_batch
        self._pending: tuple[list[str], list[str], list[np.ndarray]] = ([], [], [])

    def add(self, given: str, progress: Callable[[Progress], None] | None = None) -> AddReport:
        files, skipped = discover(given)
        report = AddReport(skipped=list(skipped))
        for done, (path, shown) in enumerate(files, start=1):
            outcome = self._add_file(path, shown, report)
            if progress:
                progress(Progress(done, len(files), shown, outcome))
        self._flush()
        return report

    def _add_file(self, path: Path, shown: str, report: AddReport) -> str:
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise ValueError(f"too large ({size // (1024 * 1024)} MiB; the limit is {MAX_FILE_BYTES // (1024 * 1024)} MiB)")
            content = path.read_bytes()
            mtime = path.stat().st_mtime
        except (OSError, ValueError) as e:
            report.skipped.append(Skipped(shown, _reason(e)))
            return "skipped"
        abs_path = absolute(path)
        if self._vault.is_unchanged(abs_path, content, self._tags):
            report.unchanged.append(shown)
            return "unchanged"
        try:
            text = decode_text(content)
        except ValueError as e:
            report.skipped.append(Skipped(shown, str(e)))
            return "skipped"
        return self._commit(shown, abs_path, content, mtime, text, SUPPORTED_SUFFIXES[path.suffix.lower()], report)

    def add_text(self, shown: str, key: str, text: str) -> AddReport:
        """Index ``text`` that is not a file (a rendering of a pod resource, say) as the
        document ``key``, replacing the one stored under that key before."""
        report = AddReport()
        content = text.encode()
        if not chunk_text(text, markdown=False):
            self.remove(key)  # nothing left to find: the older version must not be found either
            report.skipped.append(Skipped(shown, "no text in it"))
        elif not self._vault.is_unchanged(key, content, self._tags):
            self._commit(shown, key, content, time.time(), text, False, report)
        else:
            report.unchanged.append(shown)
        self._flush()
        return report

    def remove(self, key: str) -> bool:
        """Forget the document stored under ``key`` (a file's absolute path or an add_text key)."""
        removed = self._vault.forget_document_at(key)
        self._indexes.delete(removed)
        return bool(removed)

    def _commit(self, shown: str, abs_path: str, content: bytes, mtime: float, text: str, markdown: bool, report: AddReport) -> str:
        pieces = chunk_text(text, markdown=markdown)
        if not pieces:
            report.skipped.append(Skipped(shown, "no text in it"))
            return "skipped"
        vectors = self._embed(pieces)
        result = self._vault.put_document(
            path=shown,
            abs_path=abs_path,
            content=content,
            mtime=mtime,
            chunks=[NewChunk(text, vec) for text, vec in zip(pieces, vectors)],
            tags=self._tags,
        )
        if result.removed_chunk_ids:
            self._indexes.delete(result.removed_chunk_ids)
            report.updated.append(shown)
            outcome = "updated"
        else:
            report.added.append(shown)
            outcome = "added"
        report.chunks += len(pieces)
        ids, texts, vecs = self._pending
        ids.extend(result.chunk_ids)
        texts.extend(pieces)
        vecs.extend(vectors)
        if len(ids) >= self._index_batch:
            self._flush()
        return outcome

    def _flush(self) -> None:
        ids, texts, vecs = self._pending
        if ids:
            self._indexes.add(ids, texts, np.stack(vecs))
        self._pending = ([], [], [])


def _reason(error: Exception) -> str:
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)
