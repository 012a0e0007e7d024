"""Verified requests per second of `verify_request` alone: a pure function, fresh nonces.

    python bench/bench_signatures.py [REQUESTS]     (default 5000)

Signs REQUESTS distinct POSTs (a small JSON-RPC body, so a Content-Digest too) and, for
contrast, as many GETs without a body, then times only their verification, with a replay
cache that remembers every nonce. The API's goal is ≥ 1,000 verified requests/s end to end;
this is the ceiling the signature check leaves for everything else.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from identity.did_key import did_key_from_ed25519_public, verification_method_id  # noqa: E402
from identity.http_signatures import sign_request, verify_request  # noqa: E402
from identity.replay_cache import ReplayCache  # noqa: E402

URL = "http://127.0.0.1:8766/a2a"
BODY = b'{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"text": "hello"}}}'


def _requests(count: int, method: str, body: bytes) -> list[dict[str, str]]:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    keyid = verification_method_id(did_key_from_ed25519_public(raw))
    headers = {"Host": "127.0.0.1:8766", **({"Content-Type": "application/json"} if body else {})}
    return [
        {**headers, **sign_request(method, URL, headers, body, key, keyid)} for _ in range(count)
    ]


def _rate(method: str, body: bytes, signed: list[dict[str, str]]) -> float:
    cache = ReplayCache(max_entries=len(signed) + 1)
    started = time.perf_counter()
    for headers in signed:
        verify_request(method, URL, headers, body, replay_cache=cache)
    return len(signed) / (time.perf_counter() - started)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    for method, body in (("POST", BODY), ("GET", b"")):
        rates = [_rate(method, body, _requests(count, method, body)) for _ in range(3)]
        print(
            f"{method:4} verify_request: {max(rates):7.0f} verified requests/s (best of 3 × {count}; "
            f"runs {', '.join(f'{rate:.0f}' for rate in rates)})"
        )


if __name__ == "__main__":
    main()
