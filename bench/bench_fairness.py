"""The owner's work first: the owner's time to first token under peer load, as ratios measured
in one run, on the real default model through the node's model queue (agent.queue).

    python bench/bench_fairness.py [MODELS_DIR] [--repeats N]

1. the owner's time to first token while two peers generate (200 tokens each, submitted just
   before; the first has begun its reply) ÷ the owner's with the queue idle (goal ≤ 1.2);
2. the same with the owner's job in the peers' lane, as the queue was before it had lanes:
   what the owner waited without them (for the record, not a goal);
3. the peers' slowdown caused by making way: the time both peers take with the owner's job
   in the middle, less the time the owner's job itself ran, ÷ the time both take alone; and,
   timed directly, what saving and restoring the peer's place cost per pause (the end-to-end
   ratio carries the machine's noise, the direct time does not);
4. why the peer's place is kept the way it is: with a peer's reply 100 tokens in, the time to
   save and restore its KV cells (agent.runtime._Place), llama-cpp-python's own
   ``save_state``/``load_state``, and prefilling its tokens again.

Before each measure the context holds a peer's reply, so that the owner's prompt is read
from the same point alone as under load. Each figure is the median of N runs, alternated;
the owner's ratio is also given for the fastest run of each side, since other processes on a
shared machine only ever add time. FLURRY_THREADS=1 keeps llama.cpp from fighting them for
cores (with more threads than free cores its threads wait on each other).
"""

from __future__ import annotations

import ctypes
import itertools
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import llama_cpp  # noqa: E402

from agent.models import CATALOG, DEFAULT_CHAT_MODEL, ensure_model  # noqa: E402
from agent.queue import Lane, ModelQueue  # noqa: E402
from agent.runtime import ChatModel, _Place  # noqa: E402

R = TypeVar("R")
PLACE_SECONDS: list[float] = []  # each save and restore of a paused peer's place


def timed(call):
    def run(*args, **kwargs):
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            PLACE_SECONDS.append(time.perf_counter() - start)

    return run


_Place.save = classmethod(timed(_Place.save.__func__))  # type: ignore[assignment, attr-defined]
_Place.restore = timed(_Place.restore)  # type: ignore[method-assign]

PEER_TOKENS = 200
PEERS = [
    [{"role": "user", "content": "Write a long story about a lighthouse keeper and her cat."}],
    [{"role": "user", "content": "Explain in detail how a bicycle gear system works."}],
]
OWNER = [
    {
        "role": "user",
        "content": "From my notes: the dentist appointment is on Tuesday 14 November at 9:30 "
        "with Dr Almeida, and the Lisbon flights are booked with TAP, leaving on the 20th. "
        "When is the dentist appointment, and with whom?",
    }
]


class Bench:
    def __init__(self, model: ChatModel) -> None:
        self.model = model
        self.queue = ModelQueue()

    def work(self, messages: list[dict], max_tokens: int, spans: dict, name: str):
        def run() -> Iterator[str]:
            spans[name + " start"] = time.perf_counter()
            yield from self.model.stream(messages, max_tokens=max_tokens)
            spans[name + " end"] = time.perf_counter()

        return run

    def settle(self) -> None:
        """The context holds a peer's reply, as it does when the owner asks under load."""
        list(self.queue.submit(self.work(PEERS[1], 8, {}, "settle"), lane="peer"))

    def owner_alone(self) -> float:
        self.settle()
        submitted = time.perf_counter()
        job = self.queue.submit(self.work(OWNER, 16, {}, "owner"), lane="owner")
        job.next_piece()
        ttft = time.perf_counter() - submitted
        list(job)
        return ttft

    def peers_alone(self) -> float:
        self.settle()
        start = time.perf_counter()
        jobs = [
            self.queue.submit(self.work(p, PEER_TOKENS, {}, "peer"), lane="peer") for p in PEERS
        ]
        for job in jobs:
            list(job)
        return time.perf_counter() - start

    def under_load(self, owner_lane: Lane) -> tuple[float, float, float]:
        """(the owner's time to first token, both peers' total time, the owner job's run time)."""
        self.settle()
        spans: dict = {}
        start = time.perf_counter()
        jobs = [
            self.queue.submit(self.work(p, PEER_TOKENS, spans, f"peer {n}"), lane="peer")
            for n, p in enumerate(PEERS)
        ]
        read: list = []
        reader = threading.Thread(target=lambda: read.append("".join(jobs[0])))
        jobs[0].next_piece()  # the first peer is generating
        reader.start()
        submitted = time.perf_counter()
        owner = self.queue.submit(self.work(OWNER, 16, spans, "owner"), lane=owner_lane)
        owner.next_piece()
        ttft = time.perf_counter() - submitted
        list(owner)
        list(jobs[1])
        reader.join()
        total = max(spans["peer 0 end"], spans["peer 1 end"]) - start
        return ttft, total, spans["owner end"] - spans["owner start"]


def place_costs(model: ChatModel) -> None:
    llm = model._llm
    pieces = iter(model.stream(PEERS[0], max_tokens=PEER_TOKENS))
    for _ in itertools.islice(pieces, 100):
        pass
    n = llm.n_tokens

    def timed_ms(call: Callable[[], R]) -> tuple[float, R]:
        start = time.perf_counter()
        result = call()
        return (time.perf_counter() - start) * 1e3, result

    save_ms, place = timed_ms(lambda: _Place.save(llm))
    restore_ms, _ = timed_ms(lambda: place.restore(llm))
    state_save_ms, state = timed_ms(llm.save_state)
    state_load_ms, _ = timed_ms(lambda: llm.load_state(state))
    tokens = list(llm.input_ids[:n])
    llm.reset()
    prefill_ms, _ = timed_ms(lambda: llama_cpp.Llama.eval(llm, tokens))
    close = getattr(pieces, "close", None)
    if close is not None:
        close()
    mb = ctypes.sizeof(place.kv) / 1e6
    print(f"a peer's place with {n} tokens in context ({mb:.1f} MB of KV cells):")
    print(f"  _Place save + restore                  {save_ms:8.1f} + {restore_ms:.1f} ms")
    print(f"  Llama.save_state + load_state          {state_save_ms:8.1f} + {state_load_ms:.1f} ms")
    print(f"  prefill its {n} tokens again           {prefill_ms:8.1f} ms")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 5
    if "--repeats" in sys.argv:
        args.remove(str(repeats))
    models = Path(args[0]) if args else Path.home() / ".cache" / "flurry-test-models"
    path = ensure_model(CATALOG[DEFAULT_CHAT_MODEL], models, say=print)
    bench = Bench(ChatModel(path))
    print(f"model {CATALOG[DEFAULT_CHAT_MODEL].filename}, {repeats} runs, peers 2 × {PEER_TOKENS}")
    bench.owner_alone()  # warm up
    alone, loaded, peers_alone, peers_loaded = [], [], [], []
    for _ in range(repeats):
        alone.append(bench.owner_alone())
        ttft, total, owner_ran = bench.under_load("owner")
        loaded.append(ttft)
        peers_loaded.append(total - owner_ran)
        peers_alone.append(bench.peers_alone())
    fifo = bench.under_load("peer")[0]
    made_way = bench.queue.made_way
    bench.queue.close()
    paused_seconds = sum(PLACE_SECONDS)  # before place_costs adds its own
    place_costs(bench.model)
    a, b = statistics.median(alone), statistics.median(loaded)
    pa, pl = statistics.median(peers_alone), statistics.median(peers_loaded)
    print(f"owner's time to first token alone        {a * 1e3:8.1f} ms")
    print(f"  with two peers generating              {b * 1e3:8.1f} ms")
    print(f"  ratio (goal ≤ 1.2)                     {b / a:8.2f}")
    print(f"  ratio of the fastest runs (less noise) {min(loaded) / min(alone):8.2f}")
    print("  runs alone  ms:", " ".join(f"{t * 1e3:.0f}" for t in alone))
    print("  runs loaded ms:", " ".join(f"{t * 1e3:.0f}" for t in loaded))
    print(f"  in the peers' lane, as before lanes    {fifo * 1e3:8.1f} ms  ({fifo / a:.1f} ×)")
    print(f"peers' time alone (2 × {PEER_TOKENS} tokens)        {pa * 1e3:8.1f} ms")
    print(f"  less the owner's job, under load       {pl * 1e3:8.1f} ms")
    print(f"  slowdown caused by making way          {pl / pa:8.3f}")
    print(
        f"  save + restore of the peer's place     {paused_seconds / made_way * 1e3:8.2f} ms a pause"
    )
    print(f"  ÷ the peers' time alone, a pause       {paused_seconds / made_way / pa:8.4f}")
    print(f"times a peer made way: {made_way} (one per loaded run expected: {repeats})")


if __name__ == "__main__":
    main()
