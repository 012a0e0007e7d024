"""Indexing the pod's RDF resources for search, in the background, within a budget per resource.

A write to the pod is stored and answered at once; making its text searchable (embedding
every chunk) comes after, here, on one thread of its own. Whoever may write to the pod (a
peer with a grant) must not be able to make the owner wait, so:

- the model work is handed to ``run`` a small batch at a time; under `flurry serve` that is
  the model queue's background lane, which yields to every question;
- a resource gets at most ``budget.max_chunks`` chunks and ``budget.seconds`` of model time;
  over either, it is not indexed and what was indexed of an older version is removed
  (nothing partial is ever stored: the document is committed whole at the end);
- a newer write or a delete of the same resource cancels what is pending for the older one,
  and stops its indexing between two batches.

Without a model queue (the command line, where the writer waits anyway) ``run`` calls
directly. Pending work is in memory only: if the node stops first, the index shows the older
version until the resource is written again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from store.ingest import AddReport, Ingestor
from store.parse_process import Budget, chunks_of, too_many_chunks
from store.parsers import Record, Section

Embed = Callable[[list[str]], np.ndarray]
Run = Callable[[Callable[[], object]], object]

# A contact, a bookmark list or a note is a few chunks; a thousand is some 150,000 words.
POD_BUDGET = Budget(seconds=60.0, seconds_per_mib=0.0, max_chunks=1000)
BATCH = 8  # chunks embedded per model job: the longest a question waits behind this indexing
_KEPT_OUTCOMES = 256


def document_key(path: str) -> str:
    """The document key of a resource's text in the vault: apart from any file path."""
    return "pod:" + path


@dataclass
class _Change:
    path: str
    text: str | None  # None: the resource is gone (or no longer RDF)
    cancelled: threading.Event = field(default_factory=threading.Event)


class PodIndexer:
    def __init__(
        self,
        ingestor: Callable[[], Ingestor],
        embed: Callable[[], Embed],
        budget: Budget = POD_BUDGET,
    ) -> None:
        """``ingestor`` and ``embed`` are called only inside ``run`` (they may load the model)."""
        self._ingestor = ingestor
        self._embed = embed
        self.budget = budget
        self._run: Run | None = None
        self._pending: OrderedDict[str, _Change] = OrderedDict()
        self._running: _Change | None = None
        self._log: deque[tuple[str, str]] = deque(maxlen=_KEPT_OUTCOMES)  # (path, outcome), oldest
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None

    def run_model_work_with(self, run: Run | None) -> None:
        """Where model work runs from now on (None: in the writer's thread, at once)."""
        self._run = run

    def changed(self, path: str, text: str | None) -> None:
        """``path`` now holds a resource whose text is ``text`` (None: gone, or not RDF)."""
        change = _Change(path, text)
        if self._run is None:
            outcome = self._index(change, lambda call: call())
            with self._lock:
                self._log.append((path, outcome))
            return
        with self._lock:
            older = self._pending.pop(path, None)
            if older is not None:
                self._log.append((path, "cancelled: a newer version was written"))
            if self._running is not None and self._running.path == path:
                self._running.cancelled.set()
            self._pending[path] = change
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="flurry-pod-index", daemon=True
                )
                self._thread.start()
            self._lock.notify_all()

    def outcome(self, path: str) -> str | None:
        """What became of the last change to ``path``: "pending", "indexing", "indexed",
        "removed", or why it was not indexed; None when nothing is known."""
        with self._lock:
            if path in self._pending:
                return "pending"
            if self._running is not None and self._running.path == path:
                return "indexing"
            return next((o for p, o in reversed(self._log) if p == path), None)

    def history(self, path: str) -> list[str]:
        """The outcomes kept for ``path``, oldest first (of the last few hundred changes)."""
        with self._lock:
            return [o for p, o in self._log if p == path]

    def settle(self, timeout: float) -> bool:
        """Wait until nothing is pending or running; False if that took longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending or self._running is not None:
                if not self._lock.wait(max(0.0, deadline - time.monotonic())):
                    return not (self._pending or self._running is not None)
        return True

    # --- inside -------------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._pending:
                    self._lock.wait()
                _, change = self._pending.popitem(last=False)
                self._running = change
            run = self._run or (lambda call: call())
            try:
                outcome = self._index(change, run)
            except Exception as e:  # the model queue closed (the node stops), a failing disk
                outcome = f"not indexed: {e}"
            with self._lock:
                self._running = None
                self._log.append((change.path, outcome))
                self._lock.notify_all()

    def _index(self, change: _Change, run: Run) -> str:
        key = document_key(change.path)
        if change.text is None:
            run(lambda: self._ingestor().remove(key))
            return "removed"
        # The path first: a question about "my contacts" finds the contacts container's resources.
        text = f"{change.path}\n{change.text}"
        pieces = [piece for piece, _ in chunks_of(Record([Section(text)], format="text"))]
        if len(pieces) > self.budget.max_chunks:
            run(lambda: self._ingestor().remove(key))  # the older version must not be found either
            return f"not indexed: {too_many_chunks(self.budget.max_chunks)}"
        vectors: list[np.ndarray] = []
        spent = 0.0
        for start in range(0, len(pieces), BATCH):
            if change.cancelled.is_set():
                return "cancelled: a newer version was written"
            if spent > self.budget.seconds:
                run(lambda: self._ingestor().remove(key))
                return f"not indexed: took more than {self.budget.seconds:.0f} s of model time"
            batch = pieces[start : start + BATCH]

            def embed(batch: list[str] = batch) -> tuple[np.ndarray, float]:
                began = time.monotonic()  # model time only: waiting behind questions is not counted
                return self._embed()(batch), time.monotonic() - began

            # run hands back what embed returned
            found, seconds = cast(tuple[np.ndarray, float], run(embed))
            vectors.extend(found)
            spent += seconds
        if change.cancelled.is_set():
            return "cancelled: a newer version was written"
        report = cast(
            AddReport,
            run(
                lambda: self._ingestor().add_text(
                    change.path, key, text, vectors=np.stack(vectors) if vectors else None
                )
            ),
        )
        return f"not indexed: {report.skipped[0].reason}" if report.skipped else "indexed"
