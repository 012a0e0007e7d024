"""One queue for all model work, because a llama.cpp context is not safe across threads.

Jobs run one at a time on a worker thread. A job is a function that yields text pieces;
whoever submitted it reads the pieces from the job as they come. Cancelling a job (the
client went away) removes it if it still waits, or stops its generation at the next piece.

The owner's work goes first. Jobs wait in three lanes, each in arrival order: the owner's
(the CLI, the TUI, the owner's API calls), peers' (A2A, Nostr, /v1 from peers, ``infer``),
and background (indexing what peers wrote to the pod, kept short by its submitter). A job
starts only when no lane before its own holds a waiting job. Who a job is for is decided by
the caller's identity where the job is submitted (``lane_for``), never by a field a peer sends.

A running peer job also makes way between two tokens: the model code calls ``make_way``
after each token, and when owner work waits it saves the peer's place (the KV cells of its
sequence, which ``agent.runtime`` copies in a few milliseconds), runs the owner's jobs right
there on the worker thread, puts the peer's place back and goes on with the next token. The
peer's reply is the one it would have had alone (greedy decoding is deterministic once its
state is restored); it only arrives later by the owner's jobs' time.

The owner's and peers' lanes are each bounded: when ``max_waiting`` jobs already wait in a
lane, ``submit`` raises ``QueueFull`` with a retry-after estimate, which the API turns into
503 + Retry-After. Peers filling their lane never refuse the owner.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, Literal, TypeVar

from agent.errors import AgentError

Work = Callable[[], Iterator[str]]  # text work: an answer, streamed
T = TypeVar("T")  # what a job's pieces are: text, or the events and results the API queues
S = TypeVar("S")  # what a paused generation saved of the model's state

Lane = Literal["owner", "peer", "background"]
LANES: tuple[Lane, ...] = ("owner", "peer", "background")  # the order lanes are served in


def lane_for(owner: bool) -> Lane:
    """The lane for a job asked by the owner (True) or by anyone else: the caller's checked
    identity decides (the owner's DID or key, an owner-made token), nothing the caller wrote."""
    return "owner" if owner else "peer"


_END = object()


class QueueFull(AgentError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the model is busy; try again in about {retry_after} s")
        self.retry_after = retry_after


class JobCancelled(AgentError):
    """The job was cancelled before or while it ran."""


class Job(Generic[T]):
    def __init__(
        self, work: Callable[[], Iterator[T]], model_queue: ModelQueue, lane: Lane = "peer"
    ) -> None:
        self._work = work
        self._queue = model_queue
        self.lane: Lane = lane
        self._pieces: queue.Queue = queue.Queue()
        self.cancelled = threading.Event()
        self.started = threading.Event()
        self.error: BaseException | None = None

    @property
    def work(self) -> Callable[[], Iterator[T]]:
        """What this job runs (an object may carry what it made, e.g. a receipt)."""
        return self._work

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


_on_worker = threading.local()  # .queue: the ModelQueue whose worker thread this is


def make_way(pause: Callable[[], S], resume: Callable[[S], None]) -> bool:
    """Between two tokens of a generation: when the job running on this thread is a peer's
    (or background) job and owner work waits, ``pause()`` saves the model's state, the owner's
    jobs run now, then ``resume(saved)`` puts the state back. True when it made way.

    Called from anywhere but a queue's worker thread, or from an owner's job, it does nothing."""
    model_queue: ModelQueue | None = getattr(_on_worker, "queue", None)
    if model_queue is None:
        return False
    return model_queue._make_way(pause, resume)


class ModelQueue:
    def __init__(self, max_waiting: int = 8) -> None:
        self.max_waiting = max_waiting
        self._lanes: dict[Lane, deque[Job]] = {lane: deque() for lane in LANES}
        self._running: Job | None = None
        self._paused: list[Job] = []  # peer jobs that made way, the latest last
        self._lock = threading.Condition()
        self._average_seconds = 5.0  # a first guess, then a moving average of real jobs
        self._closed = False
        self.made_way = 0  # how many times a running job paused for the owner's work
        self._worker = threading.Thread(target=self._serve, name="flurry-model", daemon=True)
        self._worker.start()

    def submit(
        self,
        work: Callable[[], Iterator[T]],
        *,
        lane: Lane = "peer",
        background: bool = False,
    ) -> Job[T]:
        """Queue ``work`` in ``lane``: "owner" (the owner's CLI, TUI and API calls), "peer"
        (anything a peer asked, and the default: work nobody marked gets no priority), or
        "background" (also ``background=True``), which is not counted against ``max_waiting``
        (its submitters keep one job at a time). The submitter sets the lane from the caller's
        checked identity (``lane_for``)."""
        if background:
            lane = "background"
        if lane not in LANES:
            raise ValueError(f"no lane {lane!r}: one of {', '.join(LANES)}")
        with self._lock:
            if self._closed:
                raise QueueFull(retry_after=60)
            if lane != "background" and len(self._lanes[lane]) >= self.max_waiting:
                raise QueueFull(retry_after=self._retry_after(lane))
            job = Job(work, self, lane)
            self._lanes[lane].append(job)
            self._lock.notify()
            return job

    def position(self, job: Job) -> int:
        """0 while running, n when n-1 jobs wait ahead of it, -1 when finished or cancelled.
        A peer job that made way waits ahead of the peers' lane, behind the owner's."""
        with self._lock:
            if job is self._running:
                return 0
            ahead = 0
            if job in self._paused:
                return len(self._lanes["owner"]) + 1
            for lane in LANES:
                jobs = self._lanes[lane]
                if job in jobs:
                    return ahead + jobs.index(job) + 1
                ahead += len(jobs)
                if lane == "owner":
                    ahead += len(self._paused)
            return -1

    def discard(self, job: Job) -> None:
        with self._lock:
            for lane in self._lanes.values():
                if job in lane:
                    lane.remove(job)
                    job.error = JobCancelled("cancelled while waiting")
                    job._pieces.put(_END)

    @property
    def busy(self) -> bool:
        """A job runs or waits."""
        with self._lock:
            return self._running is not None or any(self._lanes.values())

    @property
    def waiting(self) -> int:
        """Jobs waiting in the owner's and peers' lanes (background work is not counted)."""
        with self._lock:
            return len(self._lanes["owner"]) + len(self._lanes["peer"])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for lane in self._lanes.values():
                for job in lane:
                    job.error = JobCancelled("the node is shutting down")
                    job._pieces.put(_END)
                lane.clear()
            self._lock.notify()

    def _retry_after(self, lane: Lane) -> int:
        ahead = len(self._lanes["owner"]) + (len(self._lanes["peer"]) if lane == "peer" else 0)
        return max(1, round((ahead + 1) * self._average_seconds))

    def _next(self) -> Job | None:
        """The first waiting job of the first lane that has one (under the lock)."""
        for lane in LANES:
            if self._lanes[lane]:
                return self._lanes[lane].popleft()
        return None

    def _serve(self) -> None:
        _on_worker.queue = self
        while True:
            with self._lock:
                while not any(self._lanes.values()) and not self._closed:
                    self._lock.wait()
                if self._closed and not any(self._lanes.values()):
                    return
                job = self._next()
                assert job is not None
                self._running = job
            self._run(job)

    def _run(self, job: Job) -> None:
        started = time.monotonic()
        job._run()
        with self._lock:
            self._running = None
            if job.lane != "background":  # what a question waits for; retry-after follows it
                self._average_seconds = 0.8 * self._average_seconds + 0.2 * (
                    time.monotonic() - started
                )

    def _make_way(self, pause: Callable[[], S], resume: Callable[[S], None]) -> bool:
        with self._lock:
            paused = self._running
            if paused is None or paused.lane == "owner" or not self._lanes["owner"]:
                return False
            self._paused.append(paused)
            self.made_way += 1
        saved = pause()
        try:
            while True:
                with self._lock:
                    owners = self._lanes["owner"]
                    if not owners:
                        self._running = paused
                        self._paused.remove(paused)
                        break
                    job = owners.popleft()
                    self._running = job
                self._run(job)
        finally:
            resume(saved)
        return True
