"""What a brokered capability costs a skill: one call through the broker's Unix socket ÷ the
same call made directly in the node's process.

    python bench/bench_broker.py [CALLS]     (default 2000)

The capability is owner.ask answered at once (a terminal prompt that says yes), so what is
timed is the broker itself: connect, JSON line out, token lookup, the permission check against
the skill's grant, JSON line back. Real capabilities add their own work on both sides equally
(a search embeds the query either way). Three rounds, alternating which side goes first;
medians of the per-call latency and their ratio.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skills.broker import SOCKET_ENV, TOKEN_ENV, Broker, BrokerClient, CapabilityFailed


class Answering:
    """The node's side (a NodeCapabilities), reduced to an owner who always says yes at once:
    the bench grants only owner.ask, and anything else is refused."""

    def ask_owner(self, skill: str, question: str) -> bool:
        return True

    def search(self, query: str, k: int, tags: frozenset[str] | None) -> list[dict]:
        raise CapabilityFailed("the bench's node only answers owner.ask")

    def write_note(self, skill: str, title: str, text: str) -> dict:
        raise CapabilityFailed("the bench's node only answers owner.ask")

    def send_to_peer(self, skill: str, peer: str, text: str) -> str:
        raise CapabilityFailed("the bench's node only answers owner.ask")

    def http_request(
        self, skill: str, method: str, url: str, body: str | None, address: str
    ) -> dict:
        raise CapabilityFailed("the bench's node only answers owner.ask")

    def publish_nostr(self, skill: str, text: str) -> dict:
        raise CapabilityFailed("the bench's node only answers owner.ask")


def main(calls: int = 2000, rounds: int = 3) -> None:
    node = Answering()
    broker = Broker(
        node,
        Path(tempfile.mkdtemp(prefix="flurry-bench-broker-")),
        granted=lambda skill: ("owner.ask",),
    )
    env = broker.environment("bench")
    client = BrokerClient(env[SOCKET_ENV], env[TOKEN_ENV])
    assert client.call("owner.ask", {"question": "ok?"}) is True
    hop: list[float] = []  # seconds per call, one entry a round
    direct: list[float] = []

    def brokered() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            client.call("owner.ask", {"question": "ok?"})
        return (time.perf_counter() - start) / calls

    def in_process() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            node.ask_owner("bench", "ok?")
        return (time.perf_counter() - start) / calls

    try:
        for r in range(rounds):
            for side in (brokered, in_process) if r % 2 == 0 else (in_process, brokered):
                (hop if side is brokered else direct).append(side())
    finally:
        broker.close()
    h, d = statistics.median(hop), statistics.median(direct)
    print(f"broker round trip: {h * 1e3:.3f} ms/call ({1 / h:,.0f} calls/s)")
    print(f"in-process call:   {d * 1e6:.3f} µs/call")
    print(f"ratio broker ÷ in-process: {h / d:,.0f}×")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
