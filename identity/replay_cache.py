"""The replay cache of signed requests: which (keyid, nonce) pairs were accepted, until when.

Owns remembering them in bounded, per-tier budgets (owner, known, stranger) and refusing a
nonce seen before. ``identity.http_signatures.verify_request`` and the node's NIP-98 check
(``node.nostr_peers``) feed it; the node keeps one per process.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from identity.errors import SignatureRejected

DEFAULT_REPLAY_CACHE_SIZE = 100_000
# Strangers' nonces: a smaller budget of their own, oldest forgotten first (see ReplayCache).
DEFAULT_STRANGER_ENTRIES = 10_000


class ReplayCache:
    """The (keyid, nonce) pairs of accepted signatures, each kept until its signature expires.

    Bounded and thread-safe, in separate budgets ("tiers") so that strangers cannot deny
    anyone else: ``classify(keyid)`` names the tier of a signer, "owner", "known" (a DID with
    a grant or a pinned peer) or "stranger"; without it every signer shares one tier.

    When the owner's or the known tier is full of pairs that have not expired yet, it refuses
    new signatures ("replay_cache_full") instead of forgetting old ones: a forgotten live nonce
    is a signature that can be replayed until it expires, silently, while a refusal is loud
    and lasts at most one signature lifetime. The strangers' tier instead forgets its oldest
    pair: a stranger holds no grant, so a replayed stranger's request can only do what anyone
    may (read what is public, ask who it is), and a flood of self-made did:keys then costs the
    node a bounded amount of memory and costs no one else a refusal.
    """

    TIERS = ("owner", "known", "stranger")

    def __init__(
        self,
        max_entries: int = DEFAULT_REPLAY_CACHE_SIZE,
        *,
        classify: Callable[[str], str] | None = None,
        stranger_entries: int = DEFAULT_STRANGER_ENTRIES,
    ) -> None:
        if max_entries < 1 or stranger_entries < 1:
            raise ValueError("a replay cache needs room for at least one entry")
        self.max_entries = max_entries
        self.classify = classify
        self._tiers = {
            "owner": _Tier(max_entries, evict=False),
            "known": _Tier(max_entries, evict=False),
            "stranger": _Tier(stranger_entries, evict=True),
        }
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(tier.until) for tier in self._tiers.values())

    def tier_size(self, tier: str) -> int:
        with self._lock:
            return len(self._tiers[tier].until)

    def remember(self, keyid: str, nonce: str, until: float, now: float) -> None:
        """Record a nonce as used until ``until``; raise SignatureRejected if it already is."""
        # Classified outside the lock: it may read the grants.
        name = "owner" if self.classify is None else self.classify(keyid)
        tier = self._tiers[name]
        entry = (keyid, nonce)
        with self._lock:
            tier.evict_expired(now)
            if entry in tier.until:
                raise SignatureRejected("replayed_nonce", "this signature's nonce was already used")
            if len(tier.until) >= tier.max_entries:
                if not tier.evict:
                    raise SignatureRejected(
                        "replay_cache_full", "too many live signatures; retry in a few minutes"
                    )
                tier.evict_oldest()
            tier.until[entry] = until
            heapq.heappush(tier.by_expiry, (until, entry))


@dataclass
class _Tier:
    max_entries: int
    evict: bool  # forget the oldest pair when full (strangers) rather than refuse
    until: dict[tuple[str, str], float] = field(default_factory=dict)
    by_expiry: list[tuple[float, tuple[str, str]]] = field(default_factory=list)  # a heap

    def evict_expired(self, now: float) -> None:
        while self.by_expiry and self.by_expiry[0][0] < now:
            self._pop()

    def evict_oldest(self) -> None:
        while self.by_expiry and not self._pop():
            pass

    def _pop(self) -> bool:
        until, entry = heapq.heappop(self.by_expiry)
        if self.until.get(entry) == until:
            del self.until[entry]
            return True
        return False
