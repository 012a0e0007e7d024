"""Key rotation statements: the signed word that a node's keys were replaced, and by which.

`flurry keys rotate` replaces the owner key and the node key (new did:key DIDs) and keeps the
data key. What lets anyone who knew the old DIDs trust the new ones is a *rotation statement*,
a JSON object signed with the project's one JWS format (identity.jws: detached, over the RFC
8785 form of the object without its ``signatures``):

    {
      "type": "flurry-key-rotation", "version": "1", "issued": "2026-12-02T03:10:00Z",
      "previous": {"owner": "did:key:z6Mk…", "node": "did:key:z6Mk…"},
      "next": {"owner": "did:key:z6Mk…", "node": "did:key:z6Mk…",
               "nostr": "<64 hex>", "nostr_proof": "<the new Nostr key's NIP-78 event naming next.node>"},
      "signatures": [four JWS: by previous.owner, previous.node, next.owner and next.node]
    }

Why four signatures. The previous keys say "these are my successors"; the next keys say "I
agree to be named so" (without that, a thief of the old keys could name someone else's DID as
its successor and have it take the blame, or a stranger's statement could name ours). Both
the owner key and the node key sign because peers know a node by its *node* DID (it signs the
agent card and every request the node makes), while people know the owner by the owner DID:
each must be vouched for by its own key, or an owner key could claim any node DID as its own.
The Nostr key follows the node seed (identity.nostr_key), so it turns over too; the statement
names the new one with the key's own proof, and that is how peers learn it.

Every value is a string: the chain also travels inside the agent card, an A2A protobuf whose
JSON ``Struct`` would turn a number into a float and change the signed bytes.

A *chain* is the list of a node's statements, oldest first: each one's ``previous`` is the one
before's ``next``. Peers that pinned any DID in it follow it to the latest keys. Chains come
from strangers, so they are bounded before they are read (bytes, then links, then the size of
each statement), and every link is checked: four valid signatures by exactly the four DIDs it
names, issue times in order and not in the future, no DID twice (no loops).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity.did_key import (
    InvalidDID,
    did_key_from_ed25519_public,
    ed25519_public_from_did_key,
    verification_method_id,
)
from identity.errors import IdentityError
from identity.jws import JWSRejected, canonical_json, sign_json, verify_json
from identity.nostr_key import NostrKey, identity_proof, verify_identity_proof

STATEMENT_TYPE = "flurry-key-rotation"
CHAIN_TYPE = "flurry-key-rotations"
STATEMENT_VERSION = "1"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# A statement is about 2.6 KB (four signatures, four DIDs, the Nostr proof). The bounds leave
# room and keep a hostile chain cheap to refuse: at most MAX_LINKS rotations in a node's life
# (`flurry keys rotate` refuses past it), each at most MAX_STATEMENT_BYTES in canonical form.
MAX_LINKS = 32
MAX_STATEMENT_BYTES = 4096
MAX_CHAIN_BYTES = MAX_LINKS * MAX_STATEMENT_BYTES + 1024  # the list around them
# Clocks disagree a little; a statement from further ahead than this is refused.
CLOCK_SKEW = timedelta(minutes=5)

_PREVIOUS_FIELDS = {"owner", "node"}
_NEXT_FIELDS = {"owner", "node", "nostr", "nostr_proof"}
_FIELDS = {"type", "version", "issued", "previous", "next", "signatures"}


class RotationRejected(IdentityError):
    """A rotation statement or chain does not hold; ``reason`` is a short code for machines.

    Reasons: too_large, malformed, too_many_links, bad_signature, wrong_signers, broken_chain,
    out_of_order, future, loop, bad_nostr_proof.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Link:
    """One verified rotation: the DIDs before and after, and when."""

    previous_owner: str
    previous_node: str
    next_owner: str
    next_node: str
    next_nostr: str  # the new Nostr public key, hex
    issued: datetime


@dataclass(frozen=True)
class Chain:
    """A verified chain of rotations, oldest first."""

    links: tuple[Link, ...]
    statements: tuple[dict[str, Any], ...]

    @property
    def owner(self) -> str:
        """The latest owner DID."""
        return self.links[-1].next_owner

    @property
    def node(self) -> str:
        """The latest node DID."""
        return self.links[-1].next_node

    @property
    def nostr(self) -> str:
        return self.links[-1].next_nostr

    def retired(self) -> list[str]:
        """Every DID the chain rotated away from, oldest first (owner and node DIDs)."""
        found: list[str] = []
        for link in self.links:
            found += [link.previous_owner, link.previous_node]
        return found

    def successor(self, did: str) -> str | None:
        """The latest DID in ``did``'s role (owner or node) if ``did`` is retired here; else None."""
        for link in self.links:
            if did == link.previous_owner:
                return self.owner
            if did == link.previous_node:
                return self.node
        return None


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def make_statement(
    previous_owner: Ed25519PrivateKey,
    previous_node: Ed25519PrivateKey,
    next_owner: Ed25519PrivateKey,
    next_node: Ed25519PrivateKey,
    *,
    issued: datetime | None = None,
) -> dict[str, Any]:
    """The statement that the ``previous`` keys are replaced by the ``next`` ones, signed by all four."""
    next_node_did = _did_of(next_node)
    nostr = NostrKey.from_node_seed(next_node.private_bytes_raw())
    statement: dict[str, Any] = {
        "type": STATEMENT_TYPE,
        "version": STATEMENT_VERSION,
        "issued": (issued or _now()).strftime(TIME_FORMAT),
        "previous": {"owner": _did_of(previous_owner), "node": _did_of(previous_node)},
        "next": {
            "owner": _did_of(next_owner),
            "node": next_node_did,
            "nostr": nostr.public_key_hex,
            "nostr_proof": identity_proof(nostr, next_node_did),
        },
    }
    statement["signatures"] = [
        sign_json(statement, key, kid=verification_method_id(_did_of(key)))
        for key in (previous_owner, previous_node, next_owner, next_node)
    ]
    return statement


def chain_document(statements: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What a node serves (and pushes) about its rotations: its chain, oldest first."""
    return {"type": CHAIN_TYPE, "statements": list(statements)}


def parse_chain(raw: bytes, *, now: datetime | None = None) -> Chain:
    """A chain document's bytes (``chain_document``), bounded, parsed and verified."""
    if len(raw) > MAX_CHAIN_BYTES:
        raise RotationRejected(
            "too_large", f"a rotation chain is at most {MAX_CHAIN_BYTES} bytes, not {len(raw)}"
        )
    try:
        document = json.loads(
            raw,
            object_pairs_hook=_no_duplicates,
            parse_float=_no_numbers,
            parse_int=_no_numbers,
            parse_constant=_no_numbers,
        )
    except (ValueError, RecursionError):
        raise RotationRejected("malformed", "the rotation chain is not JSON of strings") from None
    if not isinstance(document, dict) or document.get("type") != CHAIN_TYPE:
        raise RotationRejected("malformed", f"not a rotation chain (type {CHAIN_TYPE!r})")
    statements = document.get("statements")
    if not isinstance(statements, list):
        raise RotationRejected("malformed", "a rotation chain holds a list of statements")
    return verify_chain(statements, now=now)


def verify_chain(statements: object, *, now: datetime | None = None) -> Chain:
    """The verified chain of ``statements`` (oldest first); RotationRejected at the first fault."""
    if not isinstance(statements, list) or not statements:
        raise RotationRejected("malformed", "a rotation chain is a non-empty list of statements")
    if len(statements) > MAX_LINKS:
        raise RotationRejected(
            "too_many_links",
            f"a rotation chain has at most {MAX_LINKS} links, not {len(statements)}",
        )
    # The cheap checks on every statement before any signature is checked.
    for n, statement in enumerate(statements, start=1):
        try:
            size = len(canonical_json(statement))
        except (ValueError, TypeError, RecursionError):
            raise RotationRejected("malformed", f"statement {n} is not plain JSON") from None
        if size > MAX_STATEMENT_BYTES:
            raise RotationRejected(
                "too_large", f"statement {n} is {size} bytes; at most {MAX_STATEMENT_BYTES}"
            )
    # Then how the links fit together, still without a signature checked; the signatures last.
    latest = (now or _now()) + CLOCK_SKEW
    links: list[Link] = []
    seen: set[str] = set()
    for n, statement in enumerate(statements, start=1):
        link = _read_statement(statement, f"statement {n}")
        if links:
            before = links[-1]
            if (link.previous_owner, link.previous_node) != (before.next_owner, before.next_node):
                raise RotationRejected(
                    "broken_chain",
                    f"statement {n} rotates away from {link.previous_node}, "
                    f"but statement {n - 1} rotated to {before.next_node}",
                )
            if link.issued < before.issued:
                raise RotationRejected(
                    "out_of_order", f"statement {n} was issued before statement {n - 1}"
                )
        else:
            seen |= {link.previous_owner, link.previous_node}
        if link.issued > latest:
            raise RotationRejected(
                "future", f"statement {n} says it was issued at {link.issued:%Y-%m-%d %H:%M}Z"
            )
        if {link.next_owner, link.next_node} & seen:
            raise RotationRejected(
                "loop", f"statement {n} rotates to a DID the chain already rotated away from"
            )
        seen |= {link.next_owner, link.next_node}
        links.append(link)
    for n, (statement, link) in enumerate(zip(statements, links, strict=True), start=1):
        _check_signatures(statement, link, f"statement {n}")
    return Chain(tuple(links), tuple(statements))


def verify_statement(statement: object, *, where: str = "the statement") -> Link:
    """One statement's shape and its four signatures; the Link it states."""
    link = _read_statement(statement, where)
    assert isinstance(statement, dict)  # _read_statement refused anything else
    _check_signatures(statement, link, where)
    return link


def _read_statement(statement: object, where: str) -> Link:
    """The Link a statement states, from its shape alone: nothing it says is verified yet."""
    if not isinstance(statement, dict) or set(statement) != _FIELDS:
        raise RotationRejected("malformed", f"{where} does not have the fields {sorted(_FIELDS)}")
    previous, next_ = statement["previous"], statement["next"]
    if (
        statement["type"] != STATEMENT_TYPE
        or statement["version"] != STATEMENT_VERSION
        or not isinstance(previous, dict)
        or set(previous) != _PREVIOUS_FIELDS
        or not isinstance(next_, dict)
        or set(next_) != _NEXT_FIELDS
        or not all(isinstance(v, str) for v in [*previous.values(), *next_.values()])
    ):
        raise RotationRejected("malformed", f"{where} is not a {STATEMENT_TYPE} statement")
    try:
        issued = datetime.strptime(str(statement["issued"]), TIME_FORMAT).replace(tzinfo=UTC)
        dids = [previous["owner"], previous["node"], next_["owner"], next_["node"]]
        for did in dids:
            ed25519_public_from_did_key(did)
            if "#" in did:  # a bare DID, not a DID URL: DIDs are compared as strings
                raise InvalidDID(f"{did!r} is a DID URL, not a DID")
    except ValueError as error:  # a bad time, or InvalidDID
        raise RotationRejected("malformed", f"{where}: {error}") from None
    if len(set(dids)) != 4:
        raise RotationRejected("loop", f"{where} names one DID twice")
    return Link(
        previous_owner=previous["owner"],
        previous_node=previous["node"],
        next_owner=next_["owner"],
        next_node=next_["node"],
        next_nostr=next_["nostr"],
        issued=issued,
    )


def _check_signatures(statement: dict[str, Any], link: Link, where: str) -> None:
    """The four signatures, by exactly the four DIDs of ``link``, and the new Nostr key's proof."""
    dids = [link.previous_owner, link.previous_node, link.next_owner, link.next_node]
    signatures = statement["signatures"]
    if not isinstance(signatures, list) or len(signatures) != 4:
        raise RotationRejected("wrong_signers", f"{where} must carry exactly four signatures")
    try:
        signers = [verify_json(statement, signature) for signature in signatures]
    except JWSRejected as rejected:
        raise RotationRejected(
            "bad_signature", f"{where}: a signature does not verify ({rejected.reason})"
        ) from None
    if sorted(signers) != sorted(dids):
        raise RotationRejected(
            "wrong_signers",
            f"{where} must be signed by the two keys it retires and the two it names, "
            "and by no one else",
        )
    try:
        nostr = verify_identity_proof(statement["next"]["nostr_proof"], link.next_node)
    except ValueError as error:
        raise RotationRejected("bad_nostr_proof", f"{where}: {error}") from None
    if nostr != link.next_nostr:
        raise RotationRejected("bad_nostr_proof", f"{where}: the Nostr proof is by another key")


def _did_of(key: Ed25519PrivateKey) -> str:
    return did_key_from_ed25519_public(key.public_key().public_bytes_raw())


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError("a name appears twice in one object")
    return dict(pairs)


def _no_numbers(text: str) -> Any:
    raise ValueError(f"{text}: a rotation chain holds no numbers")
