"""Metering under load: several peers × many requests against one node's model, and whether
the books balance (issue 15).

    python bench/bench_metering.py [REQUESTS_PER_PEER] [PEERS]     (default 100 and 3)

Real parts throughout: a provider node B behind uvicorn on 127.0.0.1, PEERS requester nodes
(each its own sealed vault and node key) that pin B and run prompts on it, half over A2A
(`flurry infer`'s path: node.infer.infer_at_peer) and half over signed /v1 (the requester
records the usage B reports, node.infer.record_used), four at a time per peer. The model is
the real SmolLM2-135M with max_tokens 8: the subject is metering, not the model. Each peer's
grant is set low (1200 tokens an hour, 2000 a day) so that most requests are refused.

Afterwards: B's ledger ("served for") against each requester's ("used at"), in jobs and
tokens, and against what B's quota was charged (goal: 0 difference); tokens B served past any peer's quota (goal: 0); what was
refused and how. Figures are counts, not times: nothing here is timed except the run itself.

Measured on the 2-core dev box (shared), 3 peers × 100: 81 served (27 per peer, 1176–1181
tokens each of 1200), 216 refused 429 (token quota), 3 refused 503 (queue full, their
reservations given back); ledgers differ by 0 tokens and 0 jobs, quota charged = ledger,
0 tokens served past a quota; 149 s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import Served  # noqa: E402

from agent.grants import Grant, Quota
from identity.did_key import verification_method_id
from identity.signing_client import signed_client
from node import infer
from node.errors import OwnerError
from node.home import Home
from node.ledger import Ledger
from node.node import Node
from node.owner import LocalOwner

PASSPHRASE = "bench metering passphrase"
HOUR, DAY, MAX_TOKENS = 1200, 2000, 8
PROMPTS = [
    "Name a colour.",
    "What is two plus two?",
    "Say hello in French.",
    "Give me one word that rhymes with cat.",
    "What day comes after Monday?",
]


def _node(root: Path, name: str) -> Node:
    home = Home(root / name)
    Node.init(home, PASSPHRASE)
    return Node.open(home, PASSPHRASE, say=lambda line: None)


def main(per_peer: int = 100, peers: int = 3) -> None:
    root = Path(tempfile.mkdtemp(prefix="flurry-bench-metering-"))
    os.environ.setdefault("FLURRY_MODELS", str(Path.home() / ".cache" / "flurry-test-models"))
    b = _node(root, "b")
    provider = Served(b)  # as `flurry serve` serves it, strangers' rate lifted
    url = provider.url
    requesters = [_node(root, f"a{i}") for i in range(peers)]
    for a in requesters:
        b.grants.add(
            Grant(
                did=a.keys.node_did,
                allow=frozenset({"infer"}),
                tokens=(Quota(HOUR, "hour"), Quota(DAY, "day")),
                max_tokens=MAX_TOKENS,
            )
        )
        asyncio.run(LocalOwner(a).add_peer(url, "b"))
    model = b.local_chat_model.path  # loaded once before the clock starts
    digest = b.local_chat_model.model_sha256
    outcomes: dict[str, int] = {}
    lock = threading.Lock()

    def count(what: str) -> None:
        with lock:
            outcomes[what] = outcomes.get(what, 0) + 1

    def one(a: Node, i: int) -> None:
        prompt = random.choice(PROMPTS)
        if i % 2 == 0:  # A2A
            try:
                asyncio.run(LocalOwner(a).infer("b", prompt, MAX_TOKENS, 0.7))
                count("a2a served")
            except OwnerError as refused:
                count("a2a refused 429" if "429" in str(refused) else f"a2a other: {refused}")
            return
        keys = a.keys
        with signed_client(
            keys.node_key,
            verification_method_id(keys.node_did),
            keys.owner_did,
            base_url=url,
            timeout=300,
        ) as http:
            response = http.post(
                "/v1/chat/completions",
                json={
                    "model": "flurry",
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": MAX_TOKENS,
                },
            )
        if response.status_code == 200:
            usage = response.json()["usage"]
            infer.record_used(
                a.vault,
                b.keys.node_did,
                {**usage, "model": model.name, "model_sha256": digest},
                channel="v1",
            )
            count("v1 served")
        else:
            count(f"v1 refused {response.status_code}")

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(4 * peers) as pool:
        jobs = [pool.submit(one, a, i) for i in range(per_peer) for a in requesters]
        for job in jobs:
            job.result()
    elapsed = time.perf_counter() - started

    print(
        f"{peers} peers × {per_peer} requests ({peers * per_peer} in all), 4 at a time per peer, "
        f"max_tokens {MAX_TOKENS}, quotas {HOUR}/hour and {DAY}/day per peer; {elapsed:.1f} s"
    )
    for what, n in sorted(outcomes.items()):
        print(f"  {what}: {n}")
    ledger = Ledger(b.vault)
    worst_gap = worst_over = 0
    for i, a in enumerate(requesters):
        served = ledger.entries(peer=a.keys.node_did, direction="served")
        used = Ledger(a.vault).entries(peer=b.keys.node_did, direction="used")
        served_tokens, used_tokens = sum(e.tokens for e in served), sum(e.tokens for e in used)
        over = max(served_tokens - HOUR, 0)  # all within one hour: the tighter window
        # What the quota was charged is what was served: every refused or dropped request's
        # reservation came back, every served one was settled to its real count.
        charged = HOUR - b.grants.tokens_left(a.keys.node_did)["hour"]
        worst_gap = max(worst_gap, abs(charged - served_tokens))
        worst_gap = max(worst_gap, abs(served_tokens - used_tokens), abs(len(served) - len(used)))
        worst_over = max(worst_over, over)
        print(
            f"  peer a{i}: B served {len(served)} jobs / {served_tokens} tokens; a{i} recorded "
            f"{len(used)} jobs / {used_tokens} tokens; difference {served_tokens - used_tokens}; "
            f"past the quota {over}; quota charged {charged}"
        )
    print(
        f"ledgers differ by {worst_gap} (goal 0); tokens served past a quota: {worst_over} (goal 0)"
    )
    provider.stop()
    for each in (b, *requesters):
        each.close()
    if worst_gap or worst_over:
        sys.exit(1)


if __name__ == "__main__":
    args = [int(x) for x in sys.argv[1:3]]
    main(*args)
