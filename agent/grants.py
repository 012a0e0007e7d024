"""Who may ask the node for what: grants per DID, quotas, and pod access modes.

Peers are identified by a DID that the signature check has already verified; this module
only decides. ``Grants.authorize`` is the one place that answers "may this DID do this
now?", and it counts quota use as it answers, so a caller cannot forget to.

Everything lives in the vault as small sealed records, found by an HMAC of their key, so
neither DIDs nor token names nor tokens reach the disk in the clear:

- ``grant``  key = DID   → {did, allow, tags, quota, note, created_at, pod: {container: modes}}
- ``pod-public`` key = "rules" → {container: modes}: what anyone may do in the pod (read only)
- ``usage``  key = DID   → {times: [epoch seconds of recent authorised calls]}
- ``token-usage`` key = DID → {spent: [[epoch seconds, tokens, reservation id]]}: model tokens
  (prompt + generated) charged to the grant's token quotas (the ``infer`` operation)
- ``pod-usage`` key = DID → {writes: [epoch seconds], bytes: [[epoch seconds, size]]}: recent pod writes

Quota counting and token-name uniqueness are read-modify-writes guarded by an in-process
lock: keep one ``Grants`` per vault, as two instances would not share it. The bearer tokens of
the owner's local apps are ``agent.tokens``'s; they share this module's operation names.
"""

from __future__ import annotations

import builtins
import math
import re
import threading
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

from agent.errors import AgentError
from store.records import Records

# "ask", "chat", "send", "infer", "pod-read" … or "tool:<name>"; "*" means every operation (the owner's grant).
_OPERATION = re.compile(r"^(?:[a-z][a-z0-9-]*|tool:[a-z0-9][a-z0-9_.-]*)$")
EVERY_OPERATION = "*"
# The use of the node's model alone: a peer's prompt goes to the model as it is, with no
# retrieval and no tools, metered in tokens against the grant's token quotas (node.infer).
INFER = "infer"
_WINDOWS = {"hour": 3600.0, "day": 86400.0}


class InvalidGrant(AgentError, ValueError):
    """A grant, operation name or quota is malformed; the message says which part."""


class AccessDenied(AgentError):
    """The caller may not do what it asked (HTTP 403 or 429)."""


class NotGranted(AccessDenied):
    """The DID has no grant, or its grant does not include the operation."""


class QuotaExceeded(AccessDenied):
    """The DID used its quota for the current window; ``retry_after`` is seconds until a slot frees."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TokenQuotaExceeded(QuotaExceeded):
    """The request's worst case (prompt tokens + max_tokens) does not fit in what is left of
    a token quota: ``left`` tokens remain in the window, ``needed`` were asked for."""

    def __init__(self, message: str, retry_after: float, *, left: int, needed: int) -> None:
        super().__init__(message, retry_after)
        self.left, self.needed = left, needed


def check_operation(name: str) -> str:
    # fullmatch: with match, the pattern's "$" would let a name end in a line break
    if name != EVERY_OPERATION and not _OPERATION.fullmatch(name):
        raise InvalidGrant(
            f"{name!r} is not an operation name: use lowercase words like 'ask' or 'chat', or 'tool:<name>'"
        )
    return name


@dataclass(frozen=True)
class Quota:
    count: int
    per: Literal["day", "hour"]

    def __post_init__(self) -> None:
        if self.per not in _WINDOWS:
            raise InvalidGrant(f"a quota is counted per 'day' or per 'hour', not per {self.per!r}")
        if not isinstance(self.count, int) or self.count < 1:
            raise InvalidGrant(f"a quota must allow at least one call, got {self.count!r}")

    @classmethod
    def parse(cls, text: str) -> Quota:
        """``"20/day"`` or ``"5/hour"``."""
        count, slash, per = text.strip().partition("/")
        if not slash or not count.strip().isdigit():
            raise InvalidGrant(
                f"quota {text!r}: expected '<count>/day' or '<count>/hour', e.g. '20/day'"
            )
        return cls(int(count), per.strip())  # type: ignore[arg-type]  # checked in __post_init__

    @property
    def window(self) -> float:
        return _WINDOWS[self.per]

    def __str__(self) -> str:
        return f"{self.count}/{self.per}"


# What a peer may write to the pod unless its grant says otherwise: every write is stored,
# sealed, and its text embedded in the background, so it costs the owner disk and model time.
POD_WRITES = Quota(100, "hour")
POD_BYTES = Quota(64 * 1024 * 1024, "day")  # counted in bytes


@dataclass(frozen=True)
class Grant:
    did: str
    allow: frozenset[str]
    tags: frozenset[str] | None = (
        None  # vault tags a question may draw on: None = all, empty = none
    )
    quota: Quota | None = None
    note: str = ""
    created_at: float = field(default_factory=time.time)
    # Pod access in the style of Solid WAC: container path → modes (see `pod_modes`).
    pod: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Writes (PUT, POST, DELETE) to the pod, and bytes written, per window.
    pod_writes: Quota = POD_WRITES
    pod_bytes: Quota = POD_BYTES
    # The model's tokens (prompt + generated) per window, for "infer": () = not metered.
    tokens: tuple[Quota, ...] = ()
    # The most tokens one "infer" request may ask the model to generate (None: the node's own cap).
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.did, str) or not self.did.startswith("did:"):
            raise InvalidGrant(f"a grant is given to a DID ('did:key:z6Mk…'), not {self.did!r}")
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if len({q.per for q in self.tokens}) != len(self.tokens):
            raise InvalidGrant("give at most one token quota per window: one per hour, one per day")
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool)
            or not isinstance(self.max_tokens, int)
            or self.max_tokens < 1
        ):
            raise InvalidGrant(
                f"max_tokens must be a whole number, 1 or more, not {self.max_tokens!r}"
            )
        object.__setattr__(
            self,
            "pod",
            MappingProxyType(
                {check_container(c): check_modes(m) for c, m in dict(self.pod).items()}
            ),
        )
        # Sets and lists are accepted for convenience; stored as frozensets so a grant cannot change.
        object.__setattr__(self, "allow", frozenset(check_operation(op) for op in self.allow))
        if self.tags is not None:
            tags = frozenset(self.tags)
            if any(not isinstance(t, str) or not t for t in tags):
                raise InvalidGrant("vault tags must be non-empty strings")
            object.__setattr__(self, "tags", tags)

    def allows(self, operation: str) -> bool:
        return EVERY_OPERATION in self.allow or operation in self.allow

    def to_record(self) -> dict:
        return {
            "did": self.did,
            "allow": sorted(self.allow),
            "tags": None if self.tags is None else sorted(self.tags),
            "quota": None if self.quota is None else str(self.quota),
            "note": self.note,
            "created_at": self.created_at,
            "pod": {container: sorted(modes) for container, modes in sorted(self.pod.items())},
            "pod_writes": str(self.pod_writes),
            "pod_bytes": str(self.pod_bytes),
            "tokens": [str(q) for q in self.tokens],
            "max_tokens": self.max_tokens,
        }

    @classmethod
    def from_record(cls, r: dict) -> Grant:
        return cls(
            did=r["did"],
            allow=frozenset(r["allow"]),
            tags=None if r["tags"] is None else frozenset(r["tags"]),
            quota=None if r["quota"] is None else Quota.parse(r["quota"]),
            note=r["note"],
            created_at=r["created_at"],
            pod={
                c: frozenset(m) for c, m in (r.get("pod") or {}).items()
            },  # grants made before the pod have none
            # grants made before pod quotas get the defaults
            pod_writes=Quota.parse(r["pod_writes"]) if r.get("pod_writes") else POD_WRITES,
            pod_bytes=Quota.parse(r["pod_bytes"]) if r.get("pod_bytes") else POD_BYTES,
            # grants made before "infer" have no token quota and no cap of their own
            tokens=tuple(Quota.parse(q) for q in r.get("tokens") or ()),
            max_tokens=r.get("max_tokens"),
        )


class Grants:
    """The grants of this node, kept sealed in the vault."""

    def __init__(self, records: Records) -> None:
        self._records = records
        # The records API has no read-modify-write transaction, so this lock is what keeps two
        # concurrent calls from both reading the same quota use and both being let through.
        self._lock = threading.Lock()

    def add(self, grant: Grant) -> None:
        """Give ``grant.did`` this grant, replacing any it had (its quota use so far is kept)."""
        with self._lock:
            self._records.put_record("grant", grant.did, grant.to_record())

    def remove(self, did: str) -> bool:
        """Withdraw the DID's grant; False if it had none."""
        with self._lock:
            self._records.delete_record("usage", did)
            self._records.delete_record("pod-usage", did)
            self._records.delete_record("token-usage", did)
            return self._records.delete_record("grant", did)

    def get(self, did: str) -> Grant | None:
        with self._lock:
            record = self._records.get_record("grant", did)
        return None if record is None else Grant.from_record(record)

    def list(self) -> list[Grant]:
        with self._lock:
            records = self._records.records("grant")
        return [Grant.from_record(value) for _, value in records]

    def authorize(
        self, did: str, operation: str, *, owner_did: str, now: float | None = None
    ) -> Grant:
        """The grant under which ``did`` may do ``operation`` now, using one unit of its quota.

        The owner holds every grant and has no quota. Raises NotGranted or QuotaExceeded.
        """
        if did == owner_did:
            return Grant(did, frozenset({EVERY_OPERATION}), tags=None, quota=None, note="owner")
        now = time.time() if now is None else now
        with self._lock:
            record = self._records.get_record("grant", did)
            if record is None:
                raise NotGranted(
                    f"{did} has no grant on this node; ask its owner to grant it {operation!r}"
                )
            grant = Grant.from_record(record)
            if not grant.allows(operation):
                allowed = ", ".join(sorted(grant.allow)) or "nothing"
                raise NotGranted(
                    f"{did} may not {operation!r} on this node; its grant allows: {allowed}"
                )
            if grant.quota is not None:
                self._use_quota(did, grant.quota, now)
        return grant

    # --- the pod ---------------------------------------------------------------------------

    def set_pod_modes(self, did: str, container: str, modes: Collection[str] | None) -> Grant:
        """Give ``did`` these modes on ``container`` and below (None: drop its rule there, so
        the rule of the container above applies again). A DID without a grant gets one that
        allows only this; its other operations, tags and quota are kept."""
        container, modes = check_container(container), None if modes is None else check_modes(modes)
        with self._lock:
            record = self._records.get_record("grant", did)
            grant = Grant(did, frozenset()) if record is None else Grant.from_record(record)
            rules = dict(grant.pod)
            if modes is None:
                rules.pop(container, None)
            else:
                rules[container] = modes
            grant = replace(grant, pod=rules)
            if not grant.allow and not grant.pod:  # a grant that allows nothing is no grant
                self._records.delete_record("usage", did)
                self._records.delete_record("grant", did)
            else:
                self._records.put_record("grant", did, grant.to_record())
        return grant

    def set_public_modes(self, container: str, modes: Collection[str] | None) -> None:
        """What anyone, signed or not, may do on ``container`` and below (None: drop the rule)."""
        container, modes = check_container(container), None if modes is None else check_modes(modes)
        if modes and modes != {"read"}:
            raise InvalidGrant(
                "only 'read' can be public: a change must be signed, so that it has a DID to answer for"
            )
        with self._lock:
            rules = self._public_rules()
            if modes is None:
                rules.pop(container, None)
            else:
                rules[container] = sorted(modes)
            self._records.put_record("pod-public", "rules", rules)

    def public_rules(self) -> dict[str, frozenset[str]]:
        with self._lock:
            return {c: frozenset(m) for c, m in self._public_rules().items()}

    def _public_rules(self) -> dict[str, builtins.list[str]]:  # the class's list() hides list
        return dict(self._records.get_record("pod-public", "rules") or {})

    def pod_access(self, did: str | None, path: str, *, owner_did: str) -> PodAccess:
        """The modes ``did`` (None: an unsigned request) has on the pod ``path``, and the public's."""
        public = pod_modes(self.public_rules(), path)
        if did is not None and did == owner_did:
            return PodAccess(frozenset(POD_MODES), public)
        grant = self.get(did) if did is not None else None
        own = pod_modes(grant.pod, path) if grant is not None else frozenset()
        return PodAccess(own | public, public)

    def use_pod_write(
        self, did: str | None, size: int, *, owner_did: str, now: float | None = None
    ) -> None:
        """Count one write of ``size`` bytes to the pod by ``did`` against its grant's pod
        quotas; QuotaExceeded (nothing counted) when either is spent. The owner has none."""
        if did == owner_did:
            return
        if did is None:  # only 'read' can be public: an unsigned write is refused before this
            raise AccessDenied(
                "an unsigned request may not write to the pod: no DID to count it against"
            )
        now = time.time() if now is None else now
        with self._lock:
            record = self._records.get_record("grant", did)
            grant = Grant.from_record(record) if record is not None else None
            writes_quota = grant.pod_writes if grant else POD_WRITES
            bytes_quota = grant.pod_bytes if grant else POD_BYTES
            usage = self._records.get_record("pod-usage", did) or {"writes": [], "bytes": []}
            writes = sorted(t for t in usage["writes"] if t > now - writes_quota.window)
            sizes = sorted((t, n) for t, n in usage["bytes"] if t > now - bytes_quota.window)
            if len(writes) >= writes_quota.count:
                retry_after = max(writes[-writes_quota.count] + writes_quota.window - now, 0.0)
                raise QuotaExceeded(
                    f"{did} has used its pod quota of {writes_quota.count} writes per {writes_quota.per}; try again in {_duration(retry_after)}",
                    retry_after,
                )
            over = sum(n for _, n in sizes) + size - bytes_quota.count
            if over > 0:
                if size > bytes_quota.count:  # waiting would not help
                    raise QuotaExceeded(
                        f"a write of {size} bytes is more than {did}'s whole pod quota of {bytes_quota.count} bytes per {bytes_quota.per}",
                        bytes_quota.window,
                    )
                freed, retry_after = 0, 0.0
                for t, n in sizes:  # the oldest writes leave the window first
                    freed += n
                    retry_after = t + bytes_quota.window - now
                    if freed >= over:
                        break
                raise QuotaExceeded(
                    f"{did} has used its pod quota of {bytes_quota.count} bytes per {bytes_quota.per}; try again in {_duration(retry_after)}",
                    max(retry_after, 0.0),
                )
            writes.append(now)
            sizes.append((now, size))
            self._records.put_record(
                "pod-usage",
                did,
                {"writes": writes[-writes_quota.count :], "bytes": [list(x) for x in sizes]},
            )

    # --- model tokens ("infer") ---------------------------------------------------------------

    def reserve_tokens(
        self, did: str, worst: int, *, owner_did: str, now: float | None = None
    ) -> str | None:
        """Charge ``worst`` tokens (the request's prompt tokens + its max_tokens) to ``did``'s
        token quotas before the model runs, and return the reservation's id for
        `settle_tokens`; None for the owner or a grant with no token quota (nothing to settle).
        TokenQuotaExceeded, with nothing charged, when the worst case does not fit in what is
        left of any window: so no request can be served past a quota, even run side by side."""
        if did == owner_did:
            return None
        now = time.time() if now is None else now
        with self._lock:
            record = self._records.get_record("grant", did)
            if record is None:
                raise NotGranted(f"{did} has no grant on this node")
            grant = Grant.from_record(record)
            if not grant.tokens:
                return None
            spent = self._spent(did, grant, now)
            for quota in grant.tokens:
                in_window = sorted((t, n) for t, n, _ in spent if t > now - quota.window)
                left = max(quota.count - sum(n for _, n in in_window), 0)
                if worst <= left:
                    continue
                if worst > quota.count:  # waiting would not help
                    raise TokenQuotaExceeded(
                        f"this request may use up to {worst} tokens (its prompt and max_tokens), more than "
                        f"{did}'s whole quota of {quota.count} tokens per {quota.per}: send a shorter prompt or a lower max_tokens",
                        quota.window,
                        left=left,
                        needed=worst,
                    )
                freed, retry_after = 0, 0.0
                for t, n in in_window:  # the oldest use leaves the window first
                    freed += n
                    retry_after = t + quota.window - now
                    if left + freed >= worst:
                        break
                retry_after = max(retry_after, 0.0)
                raise TokenQuotaExceeded(
                    f"{did} has {left} of its {quota.count} tokens per {quota.per} left and this request may use up to "
                    f"{worst} (its prompt and max_tokens); enough frees in {_duration(retry_after)}",
                    retry_after,
                    left=left,
                    needed=worst,
                )
            reservation = uuid.uuid4().hex
            spent.append([now, worst, reservation])
            self._records.put_record("token-usage", did, {"spent": spent})
        return reservation

    def settle_tokens(self, did: str, reservation: str | None, used: int) -> None:
        """Replace the reservation's worst case by the tokens really ``used`` (never more than
        reserved: a count above it is kept at the reservation, which was what was allowed)."""
        if reservation is None:
            return
        with self._lock:
            usage = self._records.get_record("token-usage", did)
            if usage is None:  # the grant was withdrawn meanwhile: nothing left to settle
                return
            for entry in usage["spent"]:
                if entry[2] == reservation:
                    entry[1] = min(max(int(used), 0), entry[1])
                    break
            self._records.put_record("token-usage", did, usage)

    def tokens_left(self, did: str, *, now: float | None = None) -> dict[str, int]:
        """What is left of each of ``did``'s token quotas now: {"hour": n, "day": n}."""
        now = time.time() if now is None else now
        with self._lock:
            record = self._records.get_record("grant", did)
            if record is None:
                return {}
            grant = Grant.from_record(record)
            spent = self._spent(did, grant, now)
        return {
            q.per: max(q.count - sum(n for t, n, _ in spent if t > now - q.window), 0)
            for q in grant.tokens
        }

    def _spent(self, did: str, grant: Grant, now: float) -> builtins.list[builtins.list]:
        # Only what the longest window still counts is kept, so the record stays bounded by
        # the requests one day allows.
        longest = max((q.window for q in grant.tokens), default=0.0)
        usage = self._records.get_record("token-usage", did) or {"spent": []}
        return [list(e) for e in usage["spent"] if e[0] > now - longest]

    def _use_quota(self, did: str, quota: Quota, now: float) -> None:
        # A sliding window: the times of the last `count` calls within the window. Unlike a
        # fixed window it allows no burst of 2×count across a window boundary, and it stays
        # small because it never holds more than `count` times.
        usage = self._records.get_record("usage", did) or {"times": []}
        times = sorted(t for t in usage["times"] if t > now - quota.window)
        if len(times) >= quota.count:
            # The slot frees when the oldest of the last `count` calls leaves the window.
            retry_after = max(times[-quota.count] + quota.window - now, 0.0)
            raise QuotaExceeded(
                f"{did} has used its quota of {quota}; try again in {_duration(retry_after)}",
                retry_after,
            )
        times.append(now)
        self._records.put_record("usage", did, {"times": times[-quota.count :]})


# --- pod access modes, after Solid WAC (https://solidproject.org/TR/wac) ------------------------

POD_ROOT = "/pod/"
# WAC's modes. write includes append (WAC §4.2); control (changing who may do what) is the
# owner's alone for now: it is kept and shown in WAC-Allow, but no route lets a peer use it.
POD_MODES = ("read", "append", "write", "control")


@dataclass(frozen=True)
class PodAccess:
    user: frozenset[str]  # what this caller may do (the public's modes included)
    public: frozenset[str]  # what anyone may do

    def allows(self, mode: str) -> bool:
        return mode in self.user

    def header(self) -> str:
        """The WAC-Allow header value (WAC §6.1): ``user="read write",public="read"``."""
        return f'user="{" ".join(m for m in POD_MODES if m in self.user)}",public="{" ".join(m for m in POD_MODES if m in self.public)}"'


def check_modes(modes: Collection[str]) -> frozenset[str]:
    if isinstance(modes, str):
        modes = [modes]
    unknown = sorted(set(modes) - set(POD_MODES))
    if unknown:
        raise InvalidGrant(
            f"unknown pod access mode {', '.join(map(repr, unknown))}: use {', '.join(POD_MODES)}"
        )
    found = frozenset(modes)
    return found | {"append"} if "write" in found else found


def check_container(path: str) -> str:
    """A container path as rules name it: '/pod/' or '/pod/contacts/', segments decoded."""
    if not isinstance(path, str) or not path.startswith(POD_ROOT) or not path.endswith("/"):
        raise InvalidGrant(
            f"pod access is given on a container, a path like '/pod/contacts/' (with the slash), not {path!r}"
        )
    if (
        any(seg in ("", ".", "..") for seg in path[len(POD_ROOT) : -1].split("/"))
        and path != POD_ROOT
    ):
        raise InvalidGrant(f"{path!r} has an empty, '.' or '..' segment")
    return path


def pod_modes(rules: Mapping[str, frozenset[str]], path: str) -> frozenset[str]:
    """The modes of the nearest rule at or above ``path``: a rule covers its container and
    everything below it, until a rule further down overrides it (with fewer modes, or none)."""
    nearest = max((c for c in rules if path.startswith(c)), key=len, default=None)
    return frozenset() if nearest is None else frozenset(rules[nearest])


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{math.ceil(seconds)} s"
    hours, minutes = divmod(math.ceil(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
