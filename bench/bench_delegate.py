"""Delegating through Contract Net against asking the winner directly (issue 18).

    python bench/bench_delegate.py [--rounds 3]

Six real nodes behind uvicorn on loopback: a buyer and five sellers (all granted contract and
ask; the cheapest holds the travel notes). Each round: ``delegate`` (cfps to five, bids,
the award, the rejects, the result, its receipt checked, the conversation verified and kept
sealed), timed from the cfp to the verified result, less the bidding window
(``bidding_seconds``: every seller answered); the baseline, in the same run: the same
question asked directly of the winner (node.peering.send_to_peer, its receipt checked). The
real model (SmolLM2) answers both: its answer is most of either time.

Measured here (2 shared cores, 2026-12-02, --rounds 3): bidding 384 ms (excluded);
cfp → verified result less bidding 982 ms, the same question asked directly 941 ms
(medians): ratio 1.04 (goal ≤ 1.3).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import Served, new_node  # noqa: E402

from agent.grants import Grant  # noqa: E402
from node import contracts_seller  # noqa: E402
from node.contracts_buyer import delegate  # noqa: E402
from node.owner import LocalOwner  # noqa: E402
from node.peering import send_to_peer  # noqa: E402

TASK = "Which airline are the Lisbon flights booked with?"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    models = Path(
        os.environ.get("FLURRY_TEST_MODELS") or Path.home() / ".cache" / "flurry-test-models"
    )
    root = Path(tempfile.mkdtemp(prefix="bench-delegate-"))
    buyer = new_node(root / "buyer", models)
    sellers = [new_node(root / f"s{i}", models, notes=(i == 0)) for i in range(5)]
    served = [Served(n) for n in sellers]
    owner = LocalOwner(buyer)
    for i, (node, one) in enumerate(zip(sellers, served, strict=True)):
        node.grants.add(Grant(did=buyer.keys.node_did, allow=frozenset({"contract", "ask"})))
        contracts_seller.set_policy(
            node,
            buyer.keys.node_did,
            {**contracts_seller.DEFAULT_POLICY, "fixed": 1 + 5 * i, "max_open": 100},
        )
        asyncio.run(owner.add_peer(one.url, f"s{i}"))
    names = [f"s{i}" for i in range(5)]
    asyncio.run(send_to_peer(buyer, "s0", TASK))  # warm the winner's model and index
    market, direct, bidding = [], [], []
    try:
        for _ in range(args.rounds):
            started = time.perf_counter()
            outcome = asyncio.run(delegate(buyer, TASK, names, budget=100, deadline=30))
            total = time.perf_counter() - started
            assert outcome["winner"] == "s0" and outcome["state"] == "result", outcome
            assert outcome["receipt"] is not None
            market.append(total - outcome["bidding_seconds"])
            bidding.append(outcome["bidding_seconds"])
            started = time.perf_counter()
            reply = asyncio.run(send_to_peer(buyer, "s0", TASK))
            direct.append(time.perf_counter() - started)
            assert reply.get("receipt_id"), reply
    finally:
        for one in served:
            one.stop()
    m, d, b = (statistics.median(x) for x in (market, direct, bidding))
    print(f"rounds {args.rounds}; five sellers, the cheapest wins")
    print(f"bidding (excluded): {b * 1000:.0f} ms median")
    print(f"cfp → verified result, less bidding: {m * 1000:.0f} ms median")
    print(f"the same question asked directly of the winner: {d * 1000:.0f} ms median")
    print(f"ratio: {m / d:.2f}")


if __name__ == "__main__":
    main()
