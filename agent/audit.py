"""The audit log of everything the node does outward on its owner's behalf.

Each entry is sealed in the vault (records of kind "audit", keyed by its zero-padded
sequence number) and chained: it carries the hash of the entry before it, its own hash
(SHA-256 of the RFC 8785 canonical JSON of the entry without ``hash`` and ``signature``),
and an Ed25519 signature by the node's key over the 32 bytes of that hash. ``verify``
walks the chain and reports every gap, broken link, altered entry and bad signature.

What the chain alone cannot see: entries removed *from the end*. The shorter chain is
still a valid chain. So every append also rewrites a separate head record (kind
"audit-head": the entry count and the last hash), and ``verify`` compares the chain with it.
The head is sealed, so only a holder of the data key can rewrite it, but it is not
anchored outside the vault: restoring an older copy of the whole vault file (old head and
old entries together) still goes unnoticed. Catching that needs the head published
somewhere the node cannot rewrite.

Keep one AuditLog per vault: its lock is what keeps two appends from taking the same
sequence number.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.errors import AgentError
from identity.did_key import verification_method_id
from store.records import Records
from store.sealing import SealError

GENESIS = "0" * 64  # the "previous hash" of the first entry
_KIND = "audit"
_HEAD_KIND = "audit-head"
_HEAD_KEY = "head"
_UNREADABLE = "cannot be opened: its sealed bytes were altered, moved or written under another key"
_ACTION = re.compile(
    r"^[a-z0-9]+(?:[.-][a-z0-9_]+)*$"
)  # "a2a.send", "http.request", "nostr.publish"


class AuditError(AgentError):
    """The audit log cannot record or list entries; the message says why and what to run."""


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str  # RFC 3339, UTC
    action: str
    target: str
    details: dict
    agent_made: bool
    signer: str  # DID URL of the node's signing key
    prev: str  # hash of the previous entry, or GENESIS
    hash: str  # sha-256 hex of the canonical JSON of every field above
    signature: str  # base64url (unpadded) Ed25519 signature over the 32 bytes of `hash`

    def content(self) -> dict:
        """The fields covered by ``hash``."""
        body = asdict(self)
        del body["hash"], body["signature"]
        return body

    @classmethod
    def from_record(cls, record: dict) -> AuditEntry:
        return cls(**record)


@dataclass(frozen=True)
class AuditProblem:
    seq: int | None  # None: a problem of the log as a whole (its head)
    message: str

    def __str__(self) -> str:
        return self.message if self.seq is None else f"entry {self.seq}: {self.message}"


@dataclass(frozen=True)
class AuditReport:
    count: int  # entries found in the vault, readable or not
    problems: list[AuditProblem]

    @property
    def ok(self) -> bool:
        return not self.problems


def content_hash(content: dict) -> str:
    return hashlib.sha256(rfc8785.dumps(content)).hexdigest()


class AuditLog:
    def __init__(
        self,
        records: Records,
        *,
        signer_did: str,
        sign: Callable[[bytes], bytes] | None = None,
        earlier_signers: Sequence[str] = (),
    ) -> None:
        """``signer_did`` is the node's DID (or its key's DID URL); ``sign`` its Ed25519 signing
        function, which only ``append`` needs. ``earlier_signers`` are the node's DIDs before its
        key rotations (`flurry keys rotate`), oldest first: their entries verify, but only
        before any entry of a later key, so a retired key cannot add to the log."""
        self._records = records
        self._sign = sign
        self.signer = signer_did if "#" in signer_did else verification_method_id(signer_did)
        self._signers = [
            *(d if "#" in d else verification_method_id(d) for d in earlier_signers),
            self.signer,
        ]
        self._lock = threading.Lock()

    def append(self, action: str, *, target: str, details: dict) -> AuditEntry:
        """Record an outward action. Raises AuditError, and records nothing, if the log is
        damaged or ``details`` is not plain JSON: the caller should then not act unrecorded."""
        if self._sign is None:
            raise AuditError(
                "this audit log was opened read-only: it has no signing key to append with"
            )
        if not _ACTION.match(action):
            raise AuditError(f"action {action!r}: use lowercase dotted words such as 'a2a.send'")
        try:
            # Hash exactly what the vault will give back: JSON turns tuples into lists, int keys into strings.
            details = json.loads(json.dumps(details, allow_nan=False))
            rfc8785.dumps(details)
        except (TypeError, ValueError) as bad:
            raise AuditError(
                f"audit details must be plain JSON (strings, numbers within ±2^53, lists, objects): {bad}"
            ) from None
        with self._lock:
            seq, prev = self._next_position()
            at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            content: dict[str, Any] = {  # AuditEntry's fields, less hash and signature
                "seq": seq,
                "at": at,
                "action": action,
                "target": target,
                "details": details,
                "agent_made": True,
                "signer": self.signer,
                "prev": prev,
            }
            digest = content_hash(content)
            signature = _b64url(self._sign(bytes.fromhex(digest)))
            entry = AuditEntry(**content, hash=digest, signature=signature)
            # Entry first, then head: a crash in between leaves one entry past the head, which
            # the next append adopts, rather than a head that counts an entry that is not there.
            self._records.put_record(_KIND, _key(seq), asdict(entry))
            self._records.put_record(_HEAD_KIND, _HEAD_KEY, {"count": seq + 1, "last_hash": digest})
        return entry

    def _next_position(self) -> tuple[int, str]:
        """(sequence number, previous hash) for the next entry, read from the vault, so a
        restarted node continues its chain."""
        head = self._records.get_record(_HEAD_KIND, _HEAD_KEY)
        if head is None:
            if self._records.get_record(_KIND, _key(0)) is not None:
                raise AuditError(
                    "the audit log has entries but no head record; run `flurry audit verify`"
                )
            return 0, GENESIS
        seq, prev = head["count"], head["last_hash"]
        interrupted = self._records.get_record(_KIND, _key(seq))
        if interrupted is not None:
            if interrupted.get("prev") != prev:
                raise AuditError(
                    f"audit entry {seq} lies past the head and does not link to it; run `flurry audit verify`"
                )
            seq, prev = seq + 1, interrupted["hash"]
        return seq, prev

    def entries(self) -> list[AuditEntry]:
        """Every entry, oldest first (no checks: that is ``verify``)."""
        try:
            with self._lock:
                records = self._records.records(_KIND)
        except SealError:
            raise AuditError(
                "an audit entry cannot be opened; run `flurry audit verify` to see which"
            ) from None
        return sorted((AuditEntry.from_record(value) for _, value in records), key=lambda e: e.seq)

    def verify(self, public_key_for: Callable[[str], Ed25519PublicKey]) -> AuditReport:
        """Check the whole log: no gaps, every link, hash and signature, and the head.

        ``public_key_for`` resolves a DID URL to its Ed25519 public key (for did:key, the key
        in the DID itself). Entries signed by anyone but this node's key are reported."""
        problems: list[AuditProblem] = []
        with self._lock:  # read a consistent snapshot; checking happens outside the lock
            head, raw = self._read_all(problems)
        present = [seq for seq, value in raw.items() if value is not None]
        last_present = present[-1] if present else -1

        prev: str | None = GENESIS  # None: unknown, after a missing or unreadable entry
        signer_rank = 0  # the key of the latest entry, as its place in self._signers
        for seq, value in raw.items():
            if value is None:
                if seq < last_present:
                    problems.append(AuditProblem(seq, "missing: it was deleted from the vault"))
                prev = None
                continue
            if isinstance(value, SealError):
                problems.append(AuditProblem(seq, _UNREADABLE))
                prev = None
                continue
            try:
                entry = AuditEntry.from_record(value)
            except TypeError:
                problems.append(AuditProblem(seq, "is not an audit entry (wrong fields)"))
                prev = None
                continue
            problems.extend(self._check_entry(seq, entry, prev, public_key_for, signer_rank))
            if entry.signer in self._signers:
                signer_rank = max(signer_rank, self._signers.index(entry.signer))
            prev = entry.hash

        if head is not None:
            count = head["count"]
            if last_present < count - 1:
                first = last_present + 1
                span = f"entry {first}" if first == count - 1 else f"entries {first}-{count - 1}"
                ends = f"the head counts {count} entries but the log ends before {span}"
                problems.append(AuditProblem(None, f"{ends}: entries were removed from the end"))
            elif (
                isinstance(last := raw.get(count - 1), dict)
                and last.get("hash") != head["last_hash"]
            ):
                problems.append(
                    AuditProblem(
                        None,
                        f"entry {count - 1} is not the entry the head recorded last: the log was rewritten",
                    )
                )
            # Entries past the head are not a problem when they chain (checked above): a crash
            # between writing an entry and its head leaves exactly that, and nothing is lost.
        return AuditReport(len(present), problems)

    def _read_all(
        self, problems: list[AuditProblem]
    ) -> tuple[dict | None, dict[int, dict | SealError | None]]:
        """The head, and every entry by sequence number: up to the head's count (None where
        missing) and on past it while entries exist."""
        try:
            head = self._records.get_record(_HEAD_KIND, _HEAD_KEY)
            head_unreadable = False
        except SealError:
            head, head_unreadable = None, True
            problems.append(
                AuditProblem(
                    None,
                    "the head record cannot be opened: it was altered, so truncation cannot be checked",
                )
            )
        expected = 0 if head is None else head["count"]
        raw: dict[int, dict | SealError | None] = {}
        seq = 0
        while True:
            try:
                value: dict | SealError | None = self._records.get_record(_KIND, _key(seq))
            except SealError as unreadable:
                value = unreadable
            if value is None and seq >= expected:
                break
            raw[seq] = value
            seq += 1
        if head is None and raw and not head_unreadable:
            problems.append(
                AuditProblem(
                    None,
                    "the head record is missing, so entries removed from the end cannot be detected",
                )
            )
        return head, raw

    def _check_entry(
        self,
        seq: int,
        entry: AuditEntry,
        prev: str | None,
        public_key_for: Callable[[str], Ed25519PublicKey],
        signer_rank: int = 0,
    ) -> list[AuditProblem]:
        found: list[str] = []
        if entry.seq != seq:
            found.append(f"says it is entry {entry.seq}")
        if prev is not None and entry.prev != prev:
            found.append(
                "does not start the chain (its prev is not 64 zeros)"
                if seq == 0
                else f"does not link to entry {seq - 1} (prev hash differs)"
            )
        try:
            if content_hash(entry.content()) != entry.hash:
                found.append("hash does not match its content")
        except rfc8785.CanonicalizationError:
            found.append("its content is not canonical JSON, so it has no valid hash")
        if entry.signer not in self._signers:
            found.append(f"signed by {entry.signer}, not by this node ({self.signer})")
        elif self._signers.index(entry.signer) < signer_rank:
            found.append(f"signed by {entry.signer}, a key this node had already rotated away from")
        else:
            found.extend(_check_signature(entry, public_key_for))
        return [AuditProblem(seq, message) for message in found]


def _check_signature(
    entry: AuditEntry, public_key_for: Callable[[str], Ed25519PublicKey]
) -> list[str]:
    try:
        key = public_key_for(entry.signer)
    except Exception as unresolved:  # noqa: BLE001 - whatever the resolver raises, the entry cannot be checked
        return [f"the signer {entry.signer} cannot be resolved: {unresolved}"]
    try:
        key.verify(_unb64url(entry.signature), bytes.fromhex(entry.hash))
    except (
        InvalidSignature,
        ValueError,
        TypeError,
        binascii.Error,
    ):  # a malformed hash or signature too
        return ["signature is not valid"]
    return []


def _key(seq: int) -> str:
    return f"{seq:012d}"  # zero-padded, so the keys sort in chain order


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
