"""The Contract Net conversation (FIPA SC00029H) between flurry nodes: signed, hash-chained
messages, their checks, and the offline verification of an exported conversation.

Pure: no network, no vault, no clock of its own (every check takes ``now``).

**A message** is one JSON object (at most ``MAX_MESSAGE_BYTES`` as RFC 8785 bytes)::

    {"type": "flurry.contract/1", "performative": "cfp" | "propose" | "refuse" | "accept"
     | "reject" | "result" | "failure", "conversation": <16..64 base64url chars, the buyer's>,
     "sender": <bare did:key>, "receiver": <bare did:key>, "nonce": <22..64 base64url chars>,
     "issued_at": <int seconds>, "expires_at": <int seconds>, "in_reply_to": <64 hex> | null,
     ...the performative's own fields (``FIELDS``)..., "signatures": [<one detached JWS>]}

The one signature is ``identity.jws.sign_json`` by ``sender`` (kid: its did:key DID URL) over
the RFC 8785 form of every member but ``signatures``: so the performative, both parties, the
conversation, the times, the nonce, the hash link and every field are signed together. A
message's id (``message_id``) is the sha256 of that same canonical form: it cannot be chosen
apart from the content, and ``in_reply_to`` carries the id of the message answered —
cfp → null; propose/refuse → the cfp; accept/reject → the propose; result/failure → the accept.

**Receivers.** A cfp names one receiver. A buyer asking several sellers sends one cfp to each,
all with the same conversation id and the same terms (task, result spec, deadline, budget;
``Conversation`` refuses a second cfp with other terms or from another buyer). Each seller
answers its own cfp, so every link is one hash to one message, and a seller never learns who
else was asked.

**Times.** ``issued_at`` and ``expires_at`` are the sender's (signed) clock. Live
(``check``/``Conversation.add`` with ``now``): a message past its ``expires_at`` is refused, one
issued more than ``SKEW`` seconds in the future too. Along the chain, and therefore offline as
well: an answer must be issued after the message it answers (less ``SKEW``) and before that
message expired; a propose by the cfp's ``deadline``; an accept by the proposal's ``expiry``.
``verify_export`` checks the chain times and not the wall clock (``now`` only guards against
messages from the future): a third party reading a conversation a year later sees the same
verdict as on the day. A result issued after ``accept.issued_at + propose.expected_seconds``
is **accepted and marked late** (``Conversation.late``): the work was done and signed, and
whether lateness costs anything is the settlement's business, not the protocol's.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.errors import AgentError
from agent.generation import answer_sha256
from agent.receipts import ReceiptRejected, check_signature, receipt_id
from identity.did_key import InvalidDID, ed25519_public_from_did_key, verification_method_id
from identity.jws import JWSRejected, canonical_json, sign_json, verify_json

MESSAGE_TYPE = "flurry.contract/1"
EXPORT_TYPE = "flurry.contract.export/1"
MAX_MESSAGE_BYTES = 64 * 1024
MAX_TASK_CHARS = 16 * 1024
MAX_RESULT_CHARS = 32 * 1024  # with a receipt (16 KiB at most) it still fits one message
MAX_REASON_CHARS = 1024
MAX_SKILLS = 32
MAX_TTL = 7 * 24 * 3600  # a message lives a week at most
MAX_EXPECTED_SECONDS = 30 * 24 * 3600
MAX_AMOUNT = 10**12
MAX_TIME = 1 << 40
SKEW = 60  # seconds two honest clocks may disagree by
DEFAULT_TTL = 300
MAX_EXPORT_MESSAGES = 1024
MAX_EXPORT_BYTES = 16 * 1024 * 1024
UNITS = ("tokens", "credits")
PERFORMATIVES = ("cfp", "propose", "refuse", "accept", "reject", "result", "failure")
# Which performative each one answers (the hash link); a cfp answers nothing.
ANSWERS = {
    "cfp": None,
    "propose": "cfp",
    "refuse": "cfp",
    "accept": "propose",
    "reject": "propose",
    "result": "accept",
    "failure": "accept",
}

_HEX64 = re.compile(r"[0-9a-f]{64}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{22,64}")
_CONVERSATION = re.compile(r"[A-Za-z0-9_-]{16,64}")
_SKILL = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_ENVELOPE = (
    "type",
    "performative",
    "conversation",
    "sender",
    "receiver",
    "nonce",
    "issued_at",
    "expires_at",
    "in_reply_to",
    "signatures",
)


class ContractRefused(AgentError):
    """A message or conversation the protocol forbids. ``code`` is short and stable (see the
    README), ``str(error)`` says why; ``index`` is the message's place in an export, if any."""

    def __init__(self, code: str, message: str, index: int | None = None) -> None:
        super().__init__(message if index is None else f"message {index}: {message}")
        self.code = code
        self.index = index


# --- field checks ----------------------------------------------------------------------------


def _text(max_chars: int) -> Callable[[object], bool]:
    return lambda v: isinstance(v, str) and len(v) <= max_chars


def _int(low: int, high: int) -> Callable[[object], bool]:
    return lambda v: type(v) is int and low <= v <= high


def _price(v: object) -> bool:
    return (
        isinstance(v, dict)
        and set(v) == {"amount", "unit"}
        and type(v["amount"]) is int
        and 0 <= v["amount"] <= MAX_AMOUNT
        and v["unit"] in UNITS
    )


def _hex64(v: object) -> bool:
    return isinstance(v, str) and _HEX64.fullmatch(v) is not None


def _skills(v: object) -> bool:
    return (
        isinstance(v, list)
        and len(v) <= MAX_SKILLS
        and all(isinstance(s, str) and _SKILL.fullmatch(s) for s in v)
        and len(set(v)) == len(v)
    )


def _receipt(v: object) -> bool:
    return v is None or isinstance(v, dict)  # its content: agent.receipts.check_signature


# Each performative's own fields and their checks (all required; nothing else allowed).
FIELDS: dict[str, dict[str, Callable[[object], bool]]] = {
    "cfp": {
        "task": _text(MAX_TASK_CHARS),
        "result_spec": _text(MAX_TASK_CHARS),
        "deadline": _int(0, MAX_TIME),
        "budget": _price,
    },
    "propose": {
        "price": _price,
        "expected_seconds": _int(1, MAX_EXPECTED_SECONDS),
        "model_sha256": _hex64,
        "skills": _skills,
        "expiry": _int(0, MAX_TIME),
    },
    "refuse": {"reason": _text(MAX_REASON_CHARS)},
    "accept": {"price": _price},
    "reject": {"reason": _text(MAX_REASON_CHARS)},
    "result": {"text": _text(MAX_RESULT_CHARS), "receipt": _receipt},
    "failure": {"reason": _text(MAX_REASON_CHARS)},
}


def _bare_did(value: object, name: str) -> str:
    try:
        if not isinstance(value, str) or "#" in value:
            raise InvalidDID("a bare did:key DID is needed")
        ed25519_public_from_did_key(value)
    except InvalidDID as error:
        raise ContractRefused(
            "bad_did", f"{name} {value!r:.80} is not a did:key: {error}"
        ) from None
    return value


# --- one message -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """A message that passed ``check``: well formed, signed by its sender, within its times."""

    message: dict[str, Any]
    id: str
    performative: str
    conversation: str
    sender: str
    receiver: str
    issued_at: int
    expires_at: int
    in_reply_to: str | None

    def __getitem__(self, name: str) -> Any:
        return self.message[name]


def message_id(message: dict[str, Any]) -> str:
    """sha256 (hex) of the message's RFC 8785 form without its signatures: its id, and what the
    answer's ``in_reply_to`` holds."""
    body = {k: v for k, v in message.items() if k != "signatures"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def parse(raw: bytes) -> dict[str, Any]:
    """A message read from bytes (a peer's): size first, then strict JSON (no NaN, no
    duplicate names), then a JSON object. Its content is ``check``'s business."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ContractRefused("too_large", f"a message is at most {MAX_MESSAGE_BYTES} bytes")
    value = _strict_json(raw)
    if not isinstance(value, dict):
        raise ContractRefused("malformed", "a message is a JSON object")
    return value


def check(
    message: object, *, now: int | float | None, expected_sender: str | None = None
) -> Checked:
    """``message`` if the protocol accepts it alone; ContractRefused (with its code) if not.

    In order, and nothing trusted before its turn: the shape (known fields only, each type and
    range, DIDs, hex, nonce), the size, the signature (exactly one, by ``sender``), the times
    (``issued_at`` ≤ ``expires_at`` ≤ ``issued_at`` + ``MAX_TTL``; with ``now``: not expired,
    not issued more than ``SKEW`` in the future), then a result's receipt (signed by the
    seller, for the buyer). ``expected_sender``: the DID the transport authenticated."""
    if not isinstance(message, dict):
        raise ContractRefused("malformed", "a message is a JSON object")
    performative = message.get("performative")
    if performative not in FIELDS:
        raise ContractRefused("malformed", f"performative must be one of {', '.join(FIELDS)}")
    own = FIELDS[performative]
    allowed = set(_ENVELOPE) | set(own)
    if unknown := set(message) - allowed:
        raise ContractRefused(
            "unknown_field",
            f"unknown fields {sorted(map(str, unknown))!r:.200} in a {performative}",
        )
    if missing := allowed - set(message):
        raise ContractRefused("malformed", f"a {performative} lacks {', '.join(sorted(missing))}")
    if message["type"] != MESSAGE_TYPE:
        raise ContractRefused("malformed", f"type must be {MESSAGE_TYPE!r}")
    if not isinstance(message["conversation"], str) or not _CONVERSATION.fullmatch(
        message["conversation"]
    ):
        raise ContractRefused("malformed", "conversation must be 16..64 base64url characters")
    sender = _bare_did(message["sender"], "sender")
    receiver = _bare_did(message["receiver"], "receiver")
    if not isinstance(message["nonce"], str) or not _NONCE.fullmatch(message["nonce"]):
        raise ContractRefused("malformed", "nonce must be 22..64 base64url characters")
    for name in ("issued_at", "expires_at"):
        if not _int(0, MAX_TIME)(message[name]):
            raise ContractRefused("malformed", f"{name} must be whole seconds (an integer)")
    link = message["in_reply_to"]
    if ANSWERS[performative] is None:
        if link is not None:
            raise ContractRefused("malformed", "a cfp answers nothing: in_reply_to must be null")
    elif not _hex64(link):
        raise ContractRefused("malformed", f"a {performative}'s in_reply_to must be 64 hex")
    for name, ok in own.items():
        if not ok(message[name]):
            raise ContractRefused(
                "malformed", f"{performative}.{name} has a bad value: {message[name]!r:.80}"
            )
    try:
        size = len(canonical_json(message))
    except (ValueError, TypeError, RecursionError) as error:
        raise ContractRefused("malformed", f"the message has no RFC 8785 form: {error}") from None
    if size > MAX_MESSAGE_BYTES:
        raise ContractRefused("too_large", f"a message is at most {MAX_MESSAGE_BYTES} bytes")
    signatures = message["signatures"]
    if not isinstance(signatures, list) or len(signatures) != 1:
        raise ContractRefused("malformed", "a message carries exactly one signature")
    try:
        signer = verify_json(message, signatures[0])
    except JWSRejected as rejected:
        raise ContractRefused(
            "signature_invalid", f"the signature does not hold ({rejected.reason})"
        ) from None
    if signer != sender:
        raise ContractRefused("wrong_signer", f"signed by {signer}, but the sender is {sender}")
    if expected_sender is not None and sender != expected_sender:
        raise ContractRefused(
            "wrong_sender", f"sent by {expected_sender}, but the message names {sender}"
        )
    issued_at, expires_at = message["issued_at"], message["expires_at"]
    if not issued_at <= expires_at <= issued_at + MAX_TTL:
        raise ContractRefused(
            "malformed", f"expires_at must fall within {MAX_TTL} s after issued_at"
        )
    if now is not None:
        if issued_at > now + SKEW:
            raise ContractRefused("future", f"issued {issued_at - now:.0f} s in the future")
        if now > expires_at:
            raise ContractRefused("expired", f"expired {now - expires_at:.0f} s ago")
    if performative == "result" and message["receipt"] is not None:
        _check_receipt(message, sender, receiver)
    return Checked(
        message=message,
        id=message_id(message),
        performative=performative,
        conversation=message["conversation"],
        sender=sender,
        receiver=receiver,
        issued_at=issued_at,
        expires_at=expires_at,
        in_reply_to=link,
    )


def _check_receipt(message: dict[str, Any], seller: str, buyer: str) -> None:
    receipt = message["receipt"]
    try:
        check_signature(receipt)
    except ReceiptRejected as rejected:
        raise ContractRefused(
            "receipt_invalid", f"the result's receipt is refused ({rejected.reason}): {rejected}"
        ) from None
    if receipt["issuer"] != seller or receipt["requester"] != buyer:
        raise ContractRefused(
            "receipt_wrong_party",
            f"the receipt was issued by {receipt['issuer']} for {receipt['requester']}, "
            f"not by the seller {seller} for the buyer {buyer}",
        )
    if "answer" in receipt and receipt["answer"]["sha256"] != answer_sha256(message["text"]):
        raise ContractRefused("receipt_answer_differs", "the receipt signs another answer text")


def make(
    performative: str,
    key: Ed25519PrivateKey,
    sender_did: str,
    receiver_did: str,
    conversation: str,
    fields: dict[str, Any],
    answering: dict[str, Any] | None = None,
    ttl: int = DEFAULT_TTL,
    *,
    now: int,
) -> dict[str, Any]:
    """A signed ``performative`` from ``sender_did`` (whose key is ``key``) to ``receiver_did``,
    answering the message ``answering`` (None for a cfp), living ``ttl`` seconds from ``now``.
    It is checked as a receiver would before it is returned (ContractRefused if not valid)."""
    message: dict[str, Any] = {
        "type": MESSAGE_TYPE,
        "performative": performative,
        "conversation": conversation,
        "sender": sender_did,
        "receiver": receiver_did,
        "nonce": secrets.token_urlsafe(16),
        "issued_at": now,
        "expires_at": now + ttl,
        "in_reply_to": None if answering is None else message_id(answering),
        **fields,
    }
    message["signatures"] = [sign_json(message, key, verification_method_id(sender_did))]
    check(message, now=now)
    return message


def new_conversation_id() -> str:
    """A fresh random conversation id (the buyer's to choose)."""
    return secrets.token_urlsafe(16)


# --- the conversation ------------------------------------------------------------------------


@dataclass
class Conversation:
    """One Contract Net conversation, taking checked messages in order and refusing what the
    protocol forbids (``add``). Its state: the buyer, the cfps by receiver, the answers by
    seller, the award and the outcome."""

    id: str | None = None
    messages: list[Checked] = field(default_factory=list)
    buyer: str | None = None
    cfps: dict[str, Checked] = field(default_factory=dict)  # by receiver (seller)
    answered: dict[str, Checked] = field(default_factory=dict)  # seller → its propose/refuse
    proposals: dict[str, Checked] = field(default_factory=dict)  # by message id
    decided: dict[str, Checked] = field(default_factory=dict)  # proposal id → accept/reject
    award: Checked | None = None
    outcome: Checked | None = None  # the result or failure
    late: bool = False  # the result came after accept.issued_at + propose.expected_seconds
    _ids: set[str] = field(default_factory=set)
    _nonces: set[tuple[str, str]] = field(default_factory=set)

    def add(self, message: object, now: int | float | None) -> Checked:
        """``message`` checked (``check``) and taken in; ContractRefused with its code if the
        protocol forbids it here. ``now`` None skips the wall clock (``verify_export``)."""
        checked = check(message, now=now)
        self._follow(checked, now)
        self.messages.append(checked)
        self._ids.add(checked.id)
        self._nonces.add((checked.sender, checked["nonce"]))
        return checked

    def _follow(self, m: Checked, now: int | float | None) -> None:
        if m.id in self._ids:
            raise ContractRefused("replayed", f"this {m.performative} was already received")
        if (m.sender, m["nonce"]) in self._nonces:
            raise ContractRefused("replayed_nonce", f"{m.sender} already used this nonce")
        if self.id is not None and m.conversation != self.id:
            raise ContractRefused(
                "wrong_conversation", f"the message is for conversation {m.conversation}"
            )
        if self.outcome is not None:
            raise ContractRefused(
                "closed", f"the conversation ended with a {self.outcome.performative}"
            )
        step = getattr(self, "_" + m.performative)
        step(m, now)

    def _answered(self, m: Checked, what: Checked) -> None:
        """The chain's time rule: an answer comes after what it answers, before it expired."""
        if m.issued_at < what.issued_at - SKEW:
            raise ContractRefused(
                "out_of_order", f"the {m.performative} is dated before the {what.performative}"
            )
        if m.issued_at > what.expires_at:
            raise ContractRefused(
                "late_reply", f"the {m.performative} came after the {what.performative} expired"
            )

    def _cfp(self, m: Checked, now: int | float | None) -> None:
        if self.buyer is not None:
            if m.sender != self.buyer:
                raise ContractRefused("not_buyer", f"the conversation's buyer is {self.buyer}")
            first = next(iter(self.cfps.values()))
            terms = ("task", "result_spec", "deadline", "budget")
            if any(m[t] != first[t] for t in terms):
                raise ContractRefused(
                    "cfp_mismatch", "every cfp of a conversation carries the same terms"
                )
            if self.answered or self.award:
                raise ContractRefused("out_of_order", "a cfp after the bidding began")
        if m.receiver in self.cfps:
            raise ContractRefused("duplicate_cfp", f"{m.receiver} already has this call")
        if m.receiver == m.sender:
            raise ContractRefused("malformed", "a buyer does not call itself")
        if m["deadline"] < m.issued_at:
            raise ContractRefused("malformed", "the cfp's deadline is before it was made")
        # Every check passed: only now does the conversation change.
        self.id, self.buyer = m.conversation, m.sender
        self.cfps[m.receiver] = m

    def _propose(self, m: Checked, now: int | float | None) -> None:
        cfp = self._answering_cfp(m, now)
        budget, price = cfp["budget"], m["price"]
        if price["unit"] != budget["unit"] or price["amount"] > budget["amount"]:
            raise ContractRefused(
                "over_budget",
                f"{price['amount']} {price['unit']} exceeds the budget of "
                f"{budget['amount']} {budget['unit']}",
            )
        if m["expiry"] < m.issued_at:
            raise ContractRefused("malformed", "the proposal expires before it was made")
        self.answered[m.sender] = m
        self.proposals[m.id] = m

    def _refuse(self, m: Checked, now: int | float | None) -> None:
        self._answering_cfp(m, now)
        self.answered[m.sender] = m

    def _answering_cfp(self, m: Checked, now: int | float | None) -> Checked:
        if not self.cfps:
            raise ContractRefused("out_of_order", f"a {m.performative} before any cfp")
        cfp = self.cfps.get(m.sender)
        if cfp is None:
            raise ContractRefused("not_a_receiver", f"{m.sender} was not called")
        if m.in_reply_to != cfp.id:
            raise ContractRefused("broken_link", f"the {m.performative} does not answer the cfp")
        if m.receiver != self.buyer:
            raise ContractRefused("wrong_receiver", f"a {m.performative} goes to the buyer")
        if m.sender in self.answered:
            raise ContractRefused("already_answered", f"{m.sender} already answered the cfp")
        if m.issued_at > cfp["deadline"] or (now is not None and now > cfp["deadline"]):
            raise ContractRefused("late_bid", f"the {m.performative} came after the deadline")
        self._answered(m, cfp)
        return cfp

    def _decision(self, m: Checked) -> Checked:
        if m.sender != self.buyer:
            raise ContractRefused("not_buyer", f"only the buyer {self.buyer} decides")
        if not self.proposals:
            raise ContractRefused("out_of_order", f"an {m.performative} before any proposal")
        proposal = self.proposals.get(m.in_reply_to or "")
        if proposal is None:
            raise ContractRefused("unknown_proposal", "it answers no proposal of this conversation")
        if m.receiver != proposal.sender:
            raise ContractRefused("wrong_receiver", "a decision goes to the proposal's sender")
        if proposal.id in self.decided:
            previous = self.decided[proposal.id].performative
            if m.performative == "accept" and previous == "accept":
                raise ContractRefused("duplicate_award", "this proposal was already accepted")
            raise ContractRefused("already_decided", f"this proposal was already {previous}ed")
        self._answered(m, proposal)
        return proposal

    def _accept(self, m: Checked, now: int | float | None) -> None:
        proposal = self._decision(m)
        if self.award is not None:
            raise ContractRefused("duplicate_award", "the task was already awarded")
        if m["price"] != proposal["price"]:
            raise ContractRefused("price_mismatch", "the accept must echo the proposal's price")
        if m.issued_at > proposal["expiry"]:
            raise ContractRefused("bid_expired", "the proposal had expired when it was accepted")
        self.decided[proposal.id] = m
        self.award = m

    def _reject(self, m: Checked, now: int | float | None) -> None:
        self.decided[self._decision(m).id] = m

    def _result(self, m: Checked, now: int | float | None) -> None:
        award = self.award
        if award is None:
            raise ContractRefused("out_of_order", f"a {m.performative} before the award")
        if m.sender != award.receiver:
            raise ContractRefused("not_awarded", f"the task was awarded to {award.receiver}")
        if m.in_reply_to != award.id:
            raise ContractRefused("broken_link", f"the {m.performative} does not answer the award")
        if m.receiver != self.buyer:
            raise ContractRefused("wrong_receiver", f"a {m.performative} goes to the buyer")
        self._answered(m, award)
        proposal = self.proposals[award.in_reply_to or ""]
        receipt = m.message.get("receipt")
        if receipt is not None and receipt["model"]["sha256"] != proposal["model_sha256"]:
            raise ContractRefused(
                "receipt_model_differs", "the receipt names another model than the proposal"
            )
        self.late = m.issued_at > award.issued_at + proposal["expected_seconds"]
        self.outcome = m

    _failure = _result

    # --- reading it ---

    @property
    def accepted_proposal(self) -> Checked | None:
        return None if self.award is None else self.proposals[self.award.in_reply_to or ""]

    def receipt_id(self) -> str | None:
        """The id of the result's receipt, if it carries one."""
        if self.outcome is None or self.outcome.performative != "result":
            return None
        receipt = self.outcome["receipt"]
        return None if receipt is None else receipt_id(receipt)

    def export(self) -> bytes:
        """The conversation as one JSON document (RFC 8785 bytes), in the order received."""
        return canonical_json(
            {
                "type": EXPORT_TYPE,
                "conversation": self.id,
                "messages": [m.message for m in self.messages],
            }
        )


def verify_export(raw: bytes, now: int | float | None = None) -> Conversation:
    """The conversation an export holds, every message re-checked in order, offline:
    signatures, hash links, the protocol's order, the chain's times (not the wall clock; with
    ``now``, no message may come from the future) and each result's receipt. ContractRefused
    with the failing message's ``index`` (None for the document itself) if anything fails."""
    if len(raw) > MAX_EXPORT_BYTES:
        raise ContractRefused("too_large", f"an export is at most {MAX_EXPORT_BYTES} bytes")
    document = _strict_json(raw)
    if not isinstance(document, dict) or set(document) != {"type", "conversation", "messages"}:
        raise ContractRefused("malformed", "an export is {type, conversation, messages}")
    messages, cid = document["messages"], document["conversation"]
    if document["type"] != EXPORT_TYPE or not isinstance(messages, list):
        raise ContractRefused("malformed", f"type must be {EXPORT_TYPE!r}, messages a list")
    if not isinstance(cid, str) or not _CONVERSATION.fullmatch(cid):
        raise ContractRefused("malformed", "conversation must be 16..64 base64url characters")
    if not 0 < len(messages) <= MAX_EXPORT_MESSAGES:
        raise ContractRefused("malformed", f"an export holds 1..{MAX_EXPORT_MESSAGES} messages")
    conversation = Conversation(id=cid)
    for index, message in enumerate(messages):
        try:
            checked = check(message, now=None)
            if now is not None and checked.issued_at > now + SKEW:
                raise ContractRefused("future", "issued in the future")
            conversation._follow(checked, None)
        except ContractRefused as refused:
            raise ContractRefused(refused.code, str(refused), index) from None
        conversation.messages.append(checked)
        conversation._ids.add(checked.id)
        conversation._nonces.add((checked.sender, checked["nonce"]))
    return conversation


def _strict_json(raw: bytes) -> Any:
    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({name for name, _ in pairs}) != len(pairs):
            raise ValueError("duplicate member names")
        return dict(pairs)

    try:
        return json.loads(raw, parse_constant=no_constant, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as error:
        raise ContractRefused("not_json", f"not JSON: {error}") from None
