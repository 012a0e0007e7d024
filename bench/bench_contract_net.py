"""The Contract Net protocol's cost: offline verification of an exported conversation against
the bare signature checks it cannot avoid.

    python bench/bench_contract_net.py [--rounds 200]

A round with five sellers (five cfps, four bids and a refusal, an award, three rejections, a
result: 15 messages) is made with real keys, exported, and verified --rounds times by
``verify_export`` (parse, shape, size, signature, times, the protocol's rules, hash links).
Baseline, in the same run: ``identity.jws.verify_json`` alone over the same 15 messages. The
ratio says what the protocol adds over the Ed25519 checks. Also: the sizes of the messages.

Measured here (2 shared cores, 2026-12-02, --rounds 200): 15 messages, 14528 bytes exported,
729..1216 bytes a message; verify_export 3.21 ms, the bare signature checks 1.90 ms (medians):
verify_export ÷ signatures alone 1.69 (the rest: JSON parsing, the shape checks, and each
message canonicalised again for its id and its size).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from agent.contract_net import Conversation, make, verify_export  # noqa: E402
from identity.did_key import did_key_from_ed25519_public  # noqa: E402
from identity.jws import canonical_json, verify_json  # noqa: E402

T0 = 1_700_000_000


def _party() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    return key, did_key_from_ed25519_public(key.public_key().public_bytes_raw())


def a_round(sellers: int = 5) -> bytes:
    (bk, buyer), parties = _party(), [_party() for _ in range(sellers)]
    cid = "bench-conversation-01"
    terms = {
        "task": "Summarise this paragraph in three sentences. " * 10,
        "result_spec": "plain text, at most 80 words",
        "deadline": T0 + 60,
        "budget": {"amount": 100, "unit": "credits"},
    }
    conversation = Conversation()
    cfps = [make("cfp", bk, buyer, did, cid, terms, now=T0) for _, did in parties]
    for message in cfps:
        conversation.add(message, T0)
    bids = []
    for i, ((key, did), call) in enumerate(zip(parties, cfps, strict=True)):
        if i == sellers - 1:
            refuse = make("refuse", key, did, buyer, cid, {"reason": "busy"}, call, now=T0 + 5)
            conversation.add(refuse, T0 + 5)
            continue
        fields = {
            "price": {"amount": 10 + i, "unit": "credits"},
            "expected_seconds": 30,
            "model_sha256": "ab" * 32,
            "skills": ["summarise"],
            "expiry": T0 + 200,
        }
        bid = make("propose", key, did, buyer, cid, fields, call, now=T0 + 5)
        conversation.add(bid, T0 + 5)
        bids.append((bid, did))
    (won, seller), losers = bids[0], bids[1:]
    award = make("accept", bk, buyer, seller, cid, {"price": won["price"]}, won, now=T0 + 70)
    conversation.add(award, T0 + 70)
    for bid, did in losers:
        reject = make("reject", bk, buyer, did, cid, {"reason": "lost"}, bid, now=T0 + 70)
        conversation.add(reject, T0 + 70)
    text = "Three sentences. " * 20
    key = parties[0][0]
    result = make(
        "result", key, seller, buyer, cid, {"text": text, "receipt": None}, award, now=T0 + 80
    )
    conversation.add(result, T0 + 80)
    return conversation.export()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    raw = a_round()
    messages = verify_export(raw).messages
    sizes = [len(canonical_json(m.message)) for m in messages]
    protocol, baseline = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        verify_export(raw)
        protocol.append(time.perf_counter() - start)
        start = time.perf_counter()
        for m in messages:
            verify_json(m.message, m.message["signatures"][0])
        baseline.append(time.perf_counter() - start)
    p, b = statistics.median(protocol), statistics.median(baseline)
    print(
        f"{len(messages)} messages, {len(raw)} bytes exported; message sizes {min(sizes)}..{max(sizes)} bytes"
    )
    print(f"verify_export {p * 1000:.2f} ms, bare signature checks {b * 1000:.2f} ms (medians)")
    print(f"verify_export ÷ signatures alone: {p / b:.2f}")


if __name__ == "__main__":
    main()
