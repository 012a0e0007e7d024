"""One queue for all model work, because a llama.cpp context is not safe across threads.

Jobs run one at a time on a worker thread, in arrival order. A job is a function that yields
text pieces; whoever submitted it reads the pieces from the job as they come. The queue is
bounded: when ``max_waiting`` jobs already wait, ``submit`` raises ``QueueFull`` with a
retry-after estimate, which the API turns into 503 + Retry-After. Cancelling a job (the
client went away) removes it if it still waits, or stops its generation at the next piece.

Background jobs (indexing what peers wrote to the pod) wait in a lane of their own and run
only when no other job waits: a question never queues behind them for longer than the one
background job that may be running, which their submitter keeps short (a batch of chunks).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from agent.errors import AgentError

Work = Callable[[], Iterator[str]]  # text work: an answer, streamed
T = TypeVar("T")  # what a job's pieces are: text, or the events and results the API queues

_END = object()


class QueueFull(AgentError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the model is busy; try again in about {retry_after} s")
        self.retry_after = retry_after


class JobCancelled(AgentError):
    """The job was cancelled before or while it ran."""


class Job(Generic[T]):
    def __init__(self, work: Callable[[], Iterator[T]], model_queue: ModelQueue) -> None:
        self._work = work
        self._queue = model_queue
        self._pieces: queue.Queue = queue.Queue()
        self.cancelled = threading.Event()
        self.started = threading.Event()
        self.error: BaseException | None = None

    @property
    def position(self) -> int:
        """0 while running, n when n-1 jobs are ahead of it, -1 when finished or cancelled."""
        return self._queue.position(self)

    def cancel(self) -> None:
        self.cancelled.set()
        self._queue.discard(self)

    def next_piece(self, timeout: float | None = None) -> T | None:
        """The next piece, or None at the end; raises what the work raised, or JobCancelled."""
        item = self._pieces.get(timeout=timeout)
        if item is _END:
            self._pieces.put(_END)  # later calls see the end again
            if self.error is not None:
                raise self.error
            return None
        return item

    def __iter__(self) -> Iterator[T]:
        while (piece := self.next_piece()) is not None:
            yield piece

    def _run(self) -> None:
        self.started.set()
        pieces = None
        try:
            if self.cancelled.is_set():
                raise JobCancelled("cancelled before it started")
            pieces = self._work()
            for piece in pieces:
                if self.cancelled.is_set():
                    raise JobCancelled("cancelled while running")
                self._pieces.put(piece)
        except BaseException as error:  # handed to the reader, never lost on the worker thread
            self.error = error
        finally:
            if pieces is not None and hasattr(pieces, "close"):
                pieces.close()  # stops llama.cpp's generator at once
            self._pieces.put(_END)


class ModelQueue:
    def __init__(self, max_waiting: int = 8) -> None:
        self.max_waiting = max_waiting
        self._waiting: deque[Job] = deque()
        self._background: deque[Job] = deque()
        self._running: Job | None = None
        self._lock = threading.Condition()
        self._average_seconds = 5.0  # a first guess, then a moving average of real jobs
        self._closed = False
        self._worker = threading.Thread(target=self._serve, name="flurry-model", daemon=True)
        self._worker.start()

    def submit(self, work: Callable[[], Iterator[T]], *, background: bool = False) -> Job[T]:
        """Queue ``work``; ``background`` work runs only when nothing else waits, and is not
        counted against ``max_waiting`` (its submitters keep one job at a time)."""
        with self._lock:
            if self._closed:
                raise QueueFull(retry_after=60)
            if not background and len(self._waiting) >= self.max_waiting:
                raise QueueFull(retry_after=self._retry_after())
            job = Job(work, self)
            (self._background if background else self._waiting).append(job)
            self._lock.notify()
            return job

    def position(self, job: Job) -> int:
        with self._lock:
            if job is self._running:
                return 0
            if job in self._waiting:
                return self._waiting.index(job) + 1
            if job in self._background:
                return len(self._waiting) + self._background.index(job) + 1
            return -1

    def discard(self, job: Job) -> None:
        with self._lock:
            for lane in (self._waiting, self._background):
                if job in lane:
                    lane.remove(job)
                    job.error = JobCancelled("cancelled while waiting")
                    job._pieces.put(_END)

    @property
    def busy(self) -> bool:
        """A job runs or waits."""
        with self._lock:
            return self._running is not None or bool(self._waiting) or bool(self._background)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for job in (*self._waiting, *self._background):
                job.error = JobCancelled("the node is shutting down")
                job._pieces.put(_END)
            self._waiting.clear()
            self._background.clear()
            self._lock.notify()

    def _retry_after(self) -> int:
        return max(1, round((len(self._waiting) + 1) * self._average_seconds))

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._background and not self._closed:
                    self._lock.wait()
                if self._closed and not self._waiting:
                    return
                background = not self._waiting
                job = (self._background if background else self._waiting).popleft()
                self._running = job
            started = time.monotonic()
            job._run()
            with self._lock:
                self._running = None
                if not background:  # what a question waits for; the retry-after estimate follows it
                    self._average_seconds = 0.8 * self._average_seconds + 0.2 * (
                        time.monotonic() - started
                    )
