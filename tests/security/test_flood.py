"""Issue 12, item 3: any stranger could lock everyone out. Every self-made did:key signs
validly, each such request took a slot in the one replay cache before any authorisation, and
once it was full the owner's own requests got 401 replay_cache_full."""

from __future__ import annotations

import concurrent.futures
import time

from agent.grants import Grant
from identity.did_key import verification_method_id
from identity.errors import SignatureRejected
from identity.replay_cache import ReplayCache
from identity.signing_client import signed_client
from node.limits import Limits, StrangerGate

from .conftest import Someone, serve

STRANGERS = 60


def _flood(url: str, strangers: list[Someone], requests_each: int) -> list[int]:
    """Every stranger sends ``requests_each`` signed requests, eight at a time."""

    def one(someone: Someone) -> list[int]:
        with someone.client(url) as client:
            return [client.get("/api/whoami").status_code for _ in range(requests_each)]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return [code for codes in pool.map(one, strangers) for code in codes]


def _owner_and_peer_during(
    flood, node, url: str, peer: Someone
) -> tuple[list[int], list[int], list[int]]:
    """Run ``flood`` while the owner and a granted peer keep asking: the three lists of statuses."""
    owner_codes: list[int] = []
    peer_codes: list[int] = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        flooding = pool.submit(flood)
        with (
            signed_client(
                node.keys.owner_key,
                verification_method_id(node.keys.owner_did),
                base_url=url,
                timeout=30,
            ) as owner,
            peer.client(url) as granted,
        ):
            while not flooding.done() or len(owner_codes) < 20:
                owner_codes.append(owner.get("/api/whoami").status_code)
                peer_codes.append(granted.get("/api/whoami").status_code)
        return owner_codes, peer_codes, flooding.result()


def test_a_flood_of_strangers_fills_only_their_own_part_of_the_replay_cache(node):
    # The rate limit is lifted here, so that every stranger's signature is checked and
    # remembered: their part of the cache (100 here, 10 000 by default) fills many times over.
    limits = Limits(
        stranger_rate=1e9, stranger_burst=10**9, stranger_checks=1000, stranger_nonces=100
    )
    peer = Someone()
    node.grants.add(Grant(peer.did, frozenset({"ask"})))
    served = serve(node, limits=limits)
    try:
        strangers = [Someone() for _ in range(STRANGERS)]
        owner, granted, flood = _owner_and_peer_during(
            lambda: _flood(served.url, strangers, 10), node, served.url, peer
        )
        assert len(flood) == STRANGERS * 10 and set(flood) == {
            200
        }  # strangers are not refused either: their oldest nonces go
        assert set(owner) == {200} and set(granted) == {200}
        cache = served.app.state.replay_cache
        assert cache.tier_size("stranger") == 100
        assert cache.tier_size("owner") == len(owner) and cache.tier_size("known") == len(granted)
    finally:
        served.stop()
        node.grants.remove(peer.did)


def test_strangers_at_one_address_are_rate_limited_and_the_owner_is_not(node):
    peer = Someone()
    node.grants.add(Grant(peer.did, frozenset({"ask"})))
    served = serve(node, limits=Limits())  # as `flurry serve` runs
    try:
        strangers = [Someone() for _ in range(STRANGERS)]
        started = time.monotonic()
        owner, granted, flood = _owner_and_peer_during(
            lambda: _flood(served.url, strangers, 5), node, served.url, peer
        )
        elapsed = time.monotonic() - started
        assert set(owner) == {200} and set(granted) == {200}
        assert set(flood) <= {200, 429, 503} and flood.count(429) > len(flood) / 2
        # What got through is the bucket's: its burst and its rate over the flood, no more.
        limits = Limits()
        assert flood.count(200) <= limits.stranger_burst + limits.stranger_rate * elapsed
        assert served.app.state.replay_cache.tier_size("stranger") == flood.count(200)
        with strangers[0].client(served.url) as client:
            refused = next(
                r for r in (client.get("/api/whoami") for _ in range(200)) if r.status_code != 200
            )
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.headers["content-type"] == "application/problem+json"
    finally:
        served.stop()
        node.grants.remove(peer.did)


def test_a_false_claim_to_be_the_owner_does_not_escape_the_rate_limit(node):
    # A stranger who puts the owner's keyid on its own signature is refused (401) and its
    # address is charged all the same, so claiming to be someone known buys nothing.
    served = serve(node, limits=Limits(stranger_rate=0.01, stranger_burst=3))
    try:
        forger = Someone()
        forger.keyid = verification_method_id(node.keys.owner_did)
        with forger.client(served.url) as client:
            codes = [client.get("/api/whoami").status_code for _ in range(5)]
        assert codes == [401] * 5
        with Someone().client(served.url) as honest_stranger:
            assert honest_stranger.get("/api/whoami").status_code == 429
    finally:
        served.stop()


def test_replay_cache_tiers_keep_the_owner_apart_from_strangers():
    tiers = {"did:key:owner": "owner", "did:key:peer": "known"}
    cache = ReplayCache(
        max_entries=3, classify=lambda keyid: tiers.get(keyid, "stranger"), stranger_entries=2
    )
    for n in range(50):
        cache.remember(f"did:key:stranger{n}", "nonce", until=1000, now=0)
    assert cache.tier_size("stranger") == 2
    for n in range(3):
        cache.remember("did:key:owner", f"n{n}", until=1000, now=0)
    try:
        cache.remember("did:key:owner", "n3", until=1000, now=0)
        raise AssertionError("a full owner's tier must refuse, not forget a live nonce")
    except SignatureRejected as rejected:
        assert rejected.reason == "replay_cache_full"
    cache.remember("did:key:peer", "n0", until=1000, now=0)  # its own budget, untouched by either
    try:
        cache.remember(
            "did:key:stranger49", "nonce", until=1000, now=0
        )  # still remembered: the newest
        raise AssertionError("a stranger's live nonce replayed")
    except SignatureRejected as rejected:
        assert rejected.reason == "replayed_nonce"


def test_only_a_few_strangers_are_checked_at_once(node):
    # As if the flood came from many addresses (no rate limit): what the node cannot check at
    # once is refused at the door (503), rather than queued ahead of the owner.
    peer = Someone()
    node.grants.add(Grant(peer.did, frozenset({"ask"})))
    served = serve(node, limits=Limits(stranger_rate=1e9, stranger_burst=10**9, stranger_checks=1))
    try:
        strangers = [Someone() for _ in range(STRANGERS)]
        owner, granted, flood = _owner_and_peer_during(
            lambda: _flood(served.url, strangers, 5), node, served.url, peer
        )
        assert set(owner) == {200} and set(granted) == {200}
        assert 503 in flood and 200 in flood and set(flood) <= {200, 503}
    finally:
        served.stop()
        node.grants.remove(peer.did)


def test_the_stranger_gate_refills_and_stays_bounded():
    gate = StrangerGate(rate=2.0, burst=2, max_sources=3)
    assert gate.take("a", now=0) is None and gate.take("a", now=0) is None
    assert gate.take("a", now=0) == 0.5
    assert gate.take("a", now=0.5) is None
    for source in "bcdef":
        gate.take(source, now=1)
    assert len(gate._buckets) == 3
    checks = StrangerGate(rate=1, burst=1, checks=2)
    assert checks.begin_check() and checks.begin_check() and not checks.begin_check()
    checks.end_check()
    assert checks.begin_check()
