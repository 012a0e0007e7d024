"""Parsing in a process that can be stopped, with a budget of time and of output per file.

A parser is third-party code (pypdf, BeautifulSoup, icalendar, rdflib) reading bytes that
someone else made: a 9 KB calendar, a page of nested tags or a PDF with one compressed
stream can keep it busy for minutes, and a thread cannot be stopped from outside. So parsing
runs in worker processes, and a file that is not done within its time budget has its
worker killed and is skipped with the reason; a fresh worker takes the next file. A file
whose text would be more chunks than its output budget is skipped too, so nothing partial
is ever stored.

Workers are fresh interpreters (``python -m store.parse_process``), not forks: forking this
process, which runs llama.cpp's threads, could copy a held lock, and multiprocessing's own
workers would import the parent's main module (the whole node) again. They are kept between
files and between ingestions, so the parsing libraries are imported once per worker, and
the cost per file is one round trip on a socket.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from store.chunking import chunk_with_headings
from store.errors import StoreError
from store.parsers import Record, Skip
from store.parsers.registry import BY_NAME, Parser

MiB = 1024 * 1024


@dataclass(frozen=True)
class Budget:
    """What one file may cost. The time grows with the input, so a large legitimate mbox is
    not cut short, while a small file that explodes is; the output is counted in chunks,
    what the embedding model would have to read."""

    seconds: float = 20.0
    seconds_per_mib: float = 2.0
    max_chunks: int = 20_000

    def seconds_for(self, size: int) -> float:
        return self.seconds + self.seconds_per_mib * size / MiB


DEFAULT_BUDGET = Budget()


class OverBudget(StoreError):
    """The work did not finish within its budget; the message is the skip reason."""


def took_too_long(seconds: float) -> str:
    return f"took longer than {seconds:.0f} s to read; stopped and skipped"


def too_many_chunks(limit: int) -> str:
    return f"more than {limit} chunks of text; skipped, nothing of it stored"


# --- what runs in a worker ---------------------------------------------------------------------


def chunks_of(record: Record) -> list[tuple[str, dict[str, Any]]]:
    """(text, citation metadata) of each chunk of a record, following its structure."""
    if record.chunks is not None:
        return list(record.chunks)
    out: list[tuple[str, dict[str, Any]]] = []
    for section in record.sections:
        for heading, piece in chunk_with_headings(section.text, markdown=section.markdown):
            meta = {**section.meta, "heading": heading} if heading else dict(section.meta)
            out.append((f"{section.context}\n{piece}" if section.context else piece, meta))
    return out


def parse_within(parser: Parser, content: bytes, name: str, max_chunks: int) -> list[Record] | Skip:
    """``parser.run``, then cut into chunks, which are counted against ``max_chunks``: a file
    whose text would be more is skipped whole. The records carry their chunks."""
    parsed = parser.run(content, name)
    if isinstance(parsed, Skip):
        return parsed
    out: list[Record] = []
    count = 0
    for record in parsed:
        pieces = tuple(chunks_of(record))
        count += len(pieces)
        if count > max_chunks:
            return Skip(too_many_chunks(max_chunks))
        out.append(dataclasses.replace(record, chunks=pieces))
    return out


def parse_job(parser_name: str, content: bytes, name: str, max_chunks: int) -> list[Record] | Skip:
    """``parse_within`` in a worker: the parser is found again by name (lambdas do not pickle)."""
    return parse_within(BY_NAME[parser_name], content, name, max_chunks)


# --- one worker --------------------------------------------------------------------------------


def _serve(conn: Connection) -> None:
    """A worker's loop: (function, args) in, ("ok", result) or ("error", exception) out.
    The parsers were imported with this module, before "ready": not on a file's time."""
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        fn, args = job
        try:
            reply = ("ok", fn(*args))
        except BaseException as e:  # handed back, so the caller decides what a failure means
            reply = ("error", e)
        try:
            conn.send(reply)
        except Exception as e:  # the result does not pickle
            conn.send(
                ("error", RuntimeError(f"the result could not be sent back ({type(e).__name__})"))
            )


class Worker:
    """One worker process that runs one call at a time and can be killed mid-call."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "store.parse_process", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        self._conn = Connection(ours.detach())
        self._ready = False
        self.busy_since: float | None = None

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def start(self, fn: Callable[..., Any], *args: Any) -> None:
        """Send a call; ``fn`` must be a module-level function (it is pickled by name). The
        call's time counts from here, once the worker has started (on a busy machine a new
        interpreter can take seconds, which are not the file's)."""
        if not self._ready:
            with contextlib.suppress(EOFError, OSError):
                self._ready = self._conn.poll(_STARTUP_SECONDS) and self._conn.recv() == "ready"
            if not self._ready:
                self.kill()
                raise RuntimeError("the parser process did not start")
        self._conn.send((fn, args))
        self.busy_since = time.monotonic()

    def result(self, seconds: float) -> Any:
        """What the call returned (or raises what it raised); OverBudget after ``seconds``
        counted from ``start``, with the worker killed: it cannot be trusted to stop."""
        assert self.busy_since is not None, "no call was started"
        remaining = self.busy_since + seconds - time.monotonic()
        try:
            ready = self._conn.poll(max(remaining, 0))
            if not ready:
                self.kill()
                raise OverBudget(took_too_long(seconds))
            status, value = self._conn.recv()
        except (EOFError, OSError):  # the worker died: out of memory, a crash inside a C library
            self.kill()
            raise RuntimeError("the parser process died") from None
        finally:
            self.busy_since = None
        if status == "error":
            raise value
        return value

    def kill(self) -> None:
        if self.alive:
            self._process.kill()
        self._process.wait()
        self._conn.close()

    def close(self) -> None:
        try:
            self._conn.send(None)
            self._process.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


# --- workers kept between calls ----------------------------------------------------------------

_idle: list[Worker] = []
_idle_lock = threading.Lock()
_KEEP_IDLE = 4
_STARTUP_SECONDS = 60.0
# One-off calls (a pod write's RDF) from many request threads at once share these.
_one_off = threading.BoundedSemaphore(2)


def take_worker() -> Worker:
    """An idle worker, or a new one; give it back with ``give_back``."""
    with _idle_lock:
        while _idle:
            worker = _idle.pop()
            if worker.alive:
                return worker
    return Worker()


def give_back(worker: Worker) -> None:
    """Keep ``worker`` for the next call, unless it was killed or enough are kept."""
    if worker.busy_since is not None or not worker.alive:
        worker.kill()
        return
    with _idle_lock:
        if len(_idle) < _KEEP_IDLE:
            _idle.append(worker)
            return
    worker.close()


def run(fn: Callable[..., Any], *args: Any, seconds: float) -> Any:
    """``fn(*args)`` in a worker process, stopped after ``seconds`` (OverBudget)."""
    with _one_off:
        worker = take_worker()
        try:
            worker.start(fn, *args)
            return worker.result(seconds)
        finally:
            give_back(worker)


if __name__ == "__main__":  # a worker: its end of the socket is the one argument
    _serve(Connection(int(sys.argv[1])))
