"""Gift wraps opened per second: the node's receive path against nostr-sdk's own, in one run.

    python bench/bench_nostr.py [WRAPS]     (default 300)

The node opens gift wraps with identity.nostr_key.unwrap (NIP-44 v2 in Python on
`cryptography`, events checked by nostr-sdk) so that the published vectors test the path it
uses. This measures what that costs against nostr-sdk's UnwrappedGift.from_gift_wrap (all
Rust) on the same wraps, as a ratio; a listener that keeps up with a relay needs far fewer
than either rate.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nostr_sdk  # noqa: E402

from identity.nostr_key import NostrKey, gift_wrap, rumor_json, unwrap  # noqa: E402


def main(count: int) -> None:
    sender, receiver = NostrKey(bytes(31) + b"\x01"), NostrKey(bytes(31) + b"\x02")
    text = "Are you free on Tuesday afternoon? " * 8
    wraps = [
        gift_wrap(sender, receiver.public_key, rumor_json(sender, receiver.public_key, text))
        for _ in range(count)
    ]
    as_json = [w.as_json() for w in wraps]
    sdk_keys = receiver.sdk_keys()

    started = time.perf_counter()
    for w in wraps:
        assert nostr_sdk.UnwrappedGift.from_gift_wrap(sdk_keys, w).rumor().content() == text
    baseline = count / (time.perf_counter() - started)

    started = time.perf_counter()
    for w in as_json:
        assert unwrap(receiver, w).text == text
    ours = count / (time.perf_counter() - started)

    print(f"nostr-sdk UnwrappedGift.from_gift_wrap: {baseline:8.0f} wraps/s (baseline)")
    print(
        f"flurry unwrap (the receive path):       {ours:8.0f} wraps/s  = {ours / baseline:.2f}x the baseline"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
