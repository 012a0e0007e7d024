"""The Contract Net protocol (issue 18): signed, hash-chained messages between a buyer and its
sellers, the conversation's rules, the offline verification of an export, and the tamper and
protocol suite. Real Ed25519 keys and signatures throughout; the result's receipt is a real
one, issued over a recorded generation of the default model (SmolLM2, a few greedy tokens)."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.contract_net import (
    MAX_MESSAGE_BYTES,
    MAX_TASK_CHARS,
    ContractRefused,
    Conversation,
    check,
    make,
    message_id,
    parse,
    verify_export,
)
from agent.models import CATALOG, DEFAULT_CHAT_MODEL
from agent.receipts import issue, receipt_id
from agent.runtime import ChatModel
from identity.did_key import did_key_from_ed25519_public, verification_method_id
from identity.jws import canonical_json, sign_json

T0 = 1_700_000_000  # in the past: `flurry contracts verify` refuses messages from the future
CID = "conversation-0001"
MODEL = "ab" * 32


def _did(key: Ed25519PrivateKey) -> str:
    return did_key_from_ed25519_public(key.public_key().public_bytes_raw())


@dataclass
class Party:
    key: Ed25519PrivateKey
    did: str

    @classmethod
    def new(cls) -> Party:
        key = Ed25519PrivateKey.generate()
        return cls(key, _did(key))


BUYER, A, B, C, MALLORY = (Party.new() for _ in range(5))


def msg(
    performative: str,
    sender: Party,
    receiver: Party,
    fields: dict[str, Any],
    answering: dict[str, Any] | None = None,
    at: int = T0,
    ttl: int = 300,
    conversation: str | None = None,
) -> dict[str, Any]:
    """A real signed message; an answer stays in the conversation of what it answers."""
    if conversation is None:
        conversation = CID if answering is None else answering["conversation"]
    return make(
        performative,
        sender.key,
        sender.did,
        receiver.did,
        conversation,
        fields,
        answering,
        ttl,
        now=at,
    )


CFP_TERMS = {
    "task": "Summarise the attached text in three sentences.",
    "result_spec": "plain text, at most 80 words",
    "deadline": T0 + 60,
    "budget": {"amount": 100, "unit": "credits"},
}


def cfp(to: Party, conversation: str = CID, **terms: Any) -> dict[str, Any]:
    return msg("cfp", BUYER, to, {**CFP_TERMS, **terms}, conversation=conversation)


def propose(
    seller: Party, answering: dict[str, Any], amount: int = 40, at: int = T0 + 5, **extra: Any
) -> dict[str, Any]:
    fields = {
        "price": {"amount": amount, "unit": "credits"},
        "expected_seconds": 30,
        "model_sha256": MODEL,
        "skills": ["summarise"],
        "expiry": T0 + 200,
        **extra,
    }
    return msg("propose", seller, BUYER, fields, answering, at=at)


def accept(proposal: dict[str, Any], at: int = T0 + 70, by: Party = BUYER) -> dict[str, Any]:
    seller = A if proposal["sender"] == A.did else B
    return msg("accept", by, seller, {"price": proposal["price"]}, proposal, at=at)


def result(
    award: dict[str, Any], seller: Party = A, at: int = T0 + 80, receipt: Any = None
) -> dict[str, Any]:
    return msg(
        "result", seller, BUYER, {"text": "Three sentences.", "receipt": receipt}, award, at=at
    )


def resign(message: dict[str, Any], key: Ed25519PrivateKey, **changes: Any) -> dict[str, Any]:
    """``message`` changed, then signed again by ``key``: a liar with a valid signature."""
    body = {k: v for k, v in message.items() if k != "signatures"} | changes
    return {**body, "signatures": [sign_json(body, key, verification_method_id(_did(key)))]}


@dataclass
class Round:
    cfp_a: dict[str, Any]
    cfp_b: dict[str, Any]
    cfp_c: dict[str, Any]
    prop_a: dict[str, Any]
    prop_b: dict[str, Any]
    refuse_c: dict[str, Any]
    accept_a: dict[str, Any]
    reject_b: dict[str, Any]
    result_a: dict[str, Any]

    def messages(self) -> list[dict[str, Any]]:
        return list(vars(self).values())


def a_round(model_sha256: str = MODEL, receipt: Any = None) -> Round:
    cfp_a, cfp_b, cfp_c = cfp(A), cfp(B), cfp(C)
    prop_a = propose(A, cfp_a, model_sha256=model_sha256)
    prop_b = propose(B, cfp_b, amount=50, at=T0 + 6)
    refuse_c = msg("refuse", C, BUYER, {"reason": "no model for this"}, cfp_c, at=T0 + 7)
    accept_a = accept(prop_a)
    reject_b = msg("reject", BUYER, B, {"reason": "a cheaper bid won"}, prop_b, at=T0 + 71)
    return Round(
        cfp_a, cfp_b, cfp_c, prop_a, prop_b, refuse_c, accept_a, reject_b,
        result(accept_a, receipt=receipt),
    )  # fmt: skip


@pytest.fixture(scope="module")
def rnd() -> Round:
    return a_round()


def feed(messages: list[dict[str, Any]], now: int | None = None) -> Conversation:
    conversation = Conversation()
    for message in messages:
        conversation.add(message, now if now is not None else message["issued_at"])
    return conversation


def refused(code: str, messages: list[dict[str, Any]], now: int | None = None) -> ContractRefused:
    """Feeds ``messages``: all but the last must pass, the last must be refused with ``code``."""
    conversation = feed(messages[:-1], now)
    last = messages[-1]
    with pytest.raises(ContractRefused) as caught:
        conversation.add(last, now if now is not None else last["issued_at"])
    assert caught.value.code == code, str(caught.value)
    return caught.value


def export(messages: list[dict[str, Any]]) -> bytes:
    return canonical_json(
        {"type": "flurry.contract.export/1", "conversation": CID, "messages": messages}
    )


# --- the happy paths ---------------------------------------------------------------------------


def test_a_full_round_two_bids_a_refusal_an_award_a_rejection_and_a_result(rnd: Round) -> None:
    conversation = feed(rnd.messages())
    assert conversation.buyer == BUYER.did and conversation.id == CID
    assert set(conversation.cfps) == {A.did, B.did, C.did}
    assert {p.sender for p in conversation.proposals.values()} == {A.did, B.did}
    assert conversation.answered[C.did].performative == "refuse"
    assert conversation.award is not None and conversation.award.receiver == A.did
    assert conversation.accepted_proposal is not None
    assert conversation.accepted_proposal.id == message_id(rnd.prop_a)
    assert conversation.decided[message_id(rnd.prop_b)].performative == "reject"
    assert conversation.outcome is not None and conversation.outcome["text"] == "Three sentences."
    assert conversation.late is False
    # The chain: every answer holds the id of what it answers.
    assert rnd.prop_a["in_reply_to"] == message_id(rnd.cfp_a)
    assert rnd.accept_a["in_reply_to"] == message_id(rnd.prop_a)
    assert rnd.result_a["in_reply_to"] == message_id(rnd.accept_a)
    # The export verifies offline, a year later, to the same state.
    again = verify_export(conversation.export(), now=T0 + 365 * 86400)
    assert [m.id for m in again.messages] == [m.id for m in conversation.messages]
    assert again.award is not None and again.award.id == conversation.award.id


def test_a_round_that_ends_in_failure(rnd: Round) -> None:
    failure = msg("failure", A, BUYER, {"reason": "the model crashed"}, rnd.accept_a, at=T0 + 90)
    conversation = feed([rnd.cfp_a, rnd.prop_a, rnd.accept_a, failure])
    assert conversation.outcome is not None and conversation.outcome.performative == "failure"
    verify_export(conversation.export())


def test_a_result_after_the_promised_time_is_accepted_and_marked_late(rnd: Round) -> None:
    late = result(rnd.accept_a, at=T0 + 70 + 31)  # expected_seconds is 30
    assert feed([rnd.cfp_a, rnd.prop_a, rnd.accept_a, late]).late is True
    assert verify_export(export([rnd.cfp_a, rnd.prop_a, rnd.accept_a, late])).late is True


def test_check_returns_the_parsed_message_with_its_id(rnd: Round) -> None:
    raw = canonical_json(rnd.prop_a)
    checked = check(parse(raw), now=T0 + 5, expected_sender=A.did)
    assert checked.id == message_id(rnd.prop_a)
    assert (checked.performative, checked.sender, checked.receiver) == ("propose", A.did, BUYER.did)


# --- a real receipt in the result --------------------------------------------------------------


@pytest.fixture(scope="module")
def generation(models_dir: Path) -> Any:
    model = ChatModel(models_dir / CATALOG[DEFAULT_CHAT_MODEL].filename, n_ctx=512, n_threads=1)
    _, recorded = model.generate_recorded(
        [{"role": "user", "content": "Name three colours."}], max_tokens=8
    )
    return recorded


def test_a_result_with_a_real_receipt_verifies_offline(
    generation: Any, cli: Any, tmp_path: Path
) -> None:
    receipt = issue(A.key, A.did, generation, BUYER.did)
    rnd = a_round(generation.model_sha256, receipt)
    conversation = feed(rnd.messages())
    assert conversation.receipt_id() == receipt_id(receipt)
    again = verify_export(conversation.export())
    assert again.receipt_id() == receipt_id(receipt)
    (tmp_path / "good.json").write_bytes(conversation.export())
    shown = json.loads(cli("contracts", "verify", str(tmp_path / "good.json"), "--json").stdout)
    assert shown["valid"] is True and shown["receipt"] == receipt_id(receipt)


def test_a_receipt_issued_to_someone_else_is_refused(generation: Any) -> None:
    receipt = issue(A.key, A.did, generation, MALLORY.did)
    with pytest.raises(ContractRefused) as caught:
        a_round(generation.model_sha256, receipt)  # make() checks what it signs
    assert caught.value.code == "receipt_wrong_party"
    rnd = a_round(generation.model_sha256)
    lying = resign(rnd.result_a, A.key, receipt=receipt)
    assert refused("receipt_wrong_party", rnd.messages()[:-1] + [lying]).index is None


def test_a_receipt_issued_by_another_node_is_refused(generation: Any) -> None:
    rnd = a_round(generation.model_sha256)
    foreign = issue(MALLORY.key, MALLORY.did, generation, BUYER.did)
    refused(
        "receipt_wrong_party", rnd.messages()[:-1] + [resign(rnd.result_a, A.key, receipt=foreign)]
    )


def test_a_forged_receipt_is_refused(generation: Any) -> None:
    rnd = a_round(generation.model_sha256)
    forged = copy.deepcopy(issue(A.key, A.did, generation, BUYER.did))
    forged["output"]["tokens"] += 1  # the seller's signature no longer holds
    refused("receipt_invalid", rnd.messages()[:-1] + [resign(rnd.result_a, A.key, receipt=forged)])


def test_a_receipt_for_another_model_than_the_bid_is_refused(generation: Any) -> None:
    rnd = a_round(MODEL)  # the bid named another model
    receipt = issue(A.key, A.did, generation, BUYER.did)
    refused(
        "receipt_model_differs",
        rnd.messages()[:-1] + [resign(rnd.result_a, A.key, receipt=receipt)],
    )


def test_a_data_answer_receipt_must_sign_the_results_text(generation: Any) -> None:
    """A receipt for an answer from data signs the answer's text: the result must carry it."""
    rnd = a_round(generation.model_sha256)
    salt = bytes(range(16))
    signed = issue(A.key, A.did, generation, BUYER.did, answer="Three sentences.", salt=salt)
    feed(rnd.messages()[:-1] + [resign(rnd.result_a, A.key, receipt=signed)])
    other = issue(A.key, A.did, generation, BUYER.did, answer="Another text.", salt=salt)
    refused(
        "receipt_answer_differs", rnd.messages()[:-1] + [resign(rnd.result_a, A.key, receipt=other)]
    )


# --- one message: signatures, shapes, sizes, clocks --------------------------------------------


def test_a_forged_signature_is_refused(rnd: Round) -> None:
    forged = copy.deepcopy(rnd.prop_a)
    signature = forged["signatures"][0]["signature"]
    forged["signatures"][0]["signature"] = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(ContractRefused) as caught:
        check(forged, now=T0 + 5)
    assert caught.value.code == "signature_invalid"


def test_a_signature_by_another_did_is_refused(rnd: Round) -> None:
    """Mallory signs a proposal that names A as its sender: a valid signature, the wrong DID."""
    with pytest.raises(ContractRefused) as caught:
        check(resign(rnd.prop_a, MALLORY.key), now=T0 + 5)
    assert caught.value.code == "wrong_signer"


def test_make_refuses_a_key_that_is_not_the_senders() -> None:
    """The kid names the sender's key; Mallory's signature does not hold under it."""
    with pytest.raises(ContractRefused) as caught:
        make("cfp", MALLORY.key, BUYER.did, A.did, CID, CFP_TERMS, now=T0)
    assert caught.value.code == "signature_invalid"


def test_the_transport_sender_must_be_the_messages(rnd: Round) -> None:
    with pytest.raises(ContractRefused) as caught:
        check(rnd.prop_a, now=T0 + 5, expected_sender=B.did)
    assert caught.value.code == "wrong_sender"


def _other(value: Any) -> Any:
    """A different value of the same kind, still well formed."""
    if isinstance(value, bool) or value is None:
        raise AssertionError(value)
    if isinstance(value, int):
        return value + 1
    if isinstance(value, dict):
        return {**value, "amount": value["amount"] - 1} if "amount" in value else value
    if isinstance(value, list):
        return value + ["translate"]
    if value.startswith("did:key:"):
        return MALLORY.did
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return "cd" * 32
    return value[:-1] + ("x" if value[-1] != "x" else "y")


MUTABLE = [
    (performative, name)
    for performative, names in {
        "cfp": ["type", "performative", "conversation", "sender", "receiver", "nonce",
                "issued_at", "expires_at", "task", "result_spec", "deadline", "budget"],
        "propose": ["in_reply_to", "price", "expected_seconds", "model_sha256", "skills", "expiry"],
        "refuse": ["reason"],
        "accept": ["price", "in_reply_to"],
        "reject": ["reason"],
        "result": ["text", "in_reply_to"],
    }.items()
    for name in names
]  # fmt: skip


@pytest.mark.parametrize(("performative", "name"), MUTABLE)
def test_every_field_mutated_after_signing_is_refused(
    rnd: Round, performative: str, name: str
) -> None:
    original = next(m for m in rnd.messages() if m["performative"] == performative)
    mutated = {**original, name: _other(original[name])}
    if name in ("type", "performative"):
        mutated[name] = {"type": "flurry.contract/2", "performative": "refuse"}[name]
    with pytest.raises(ContractRefused) as caught:
        check(mutated, now=original["issued_at"])
    # A field that no longer fits its performative's shape is refused before the signature.
    expected = {"type": "malformed", "performative": "unknown_field"}.get(name, "signature_invalid")
    assert caught.value.code == expected, str(caught.value)


@pytest.mark.parametrize("performative", ["cfp", "propose", "accept", "result"])
def test_an_unknown_field_is_refused_even_when_signed(rnd: Round, performative: str) -> None:
    original = next(m for m in rnd.messages() if m["performative"] == performative)
    sender = next(p for p in (BUYER, A, B, C) if p.did == original["sender"])
    with pytest.raises(ContractRefused) as caught:
        check(resign(original, sender.key, note="pay me twice"), now=original["issued_at"])
    assert caught.value.code == "unknown_field"


def test_a_missing_field_is_refused(rnd: Round) -> None:
    body = {k: v for k, v in rnd.prop_a.items() if k != "expiry"}
    with pytest.raises(ContractRefused) as caught:
        check(resign(body, A.key), now=T0 + 5)
    assert caught.value.code == "malformed" and "expiry" in str(caught.value)


def test_an_oversized_message_is_refused_before_parsing_and_after_shaping() -> None:
    with pytest.raises(ContractRefused) as caught:
        parse(b"{" + b" " * MAX_MESSAGE_BYTES + b"}")
    assert caught.value.code == "too_large"
    # Within each field's bound in characters, beyond the message's in bytes (4-byte UTF-8).
    wide = "\U0001f600" * MAX_TASK_CHARS
    with pytest.raises(ContractRefused) as caught:
        make("cfp", BUYER.key, BUYER.did, A.did, CID, {**CFP_TERMS, "task": wide}, now=T0)
    assert caught.value.code == "too_large"
    with pytest.raises(ContractRefused) as caught:
        cfp(A, task="x" * (MAX_TASK_CHARS + 1))
    assert caught.value.code == "malformed"


@pytest.mark.parametrize(
    ("performative", "name", "bad"),
    [
        ("cfp", "issued_at", "1700000000"),  # a string for a number
        ("cfp", "issued_at", 1700000000.0),  # a float for an int
        ("cfp", "deadline", True),  # a bool is not an int
        ("cfp", "budget", {"amount": "100", "unit": "credits"}),
        ("cfp", "budget", {"amount": 100.5, "unit": "credits"}),
        ("cfp", "budget", {"amount": -1, "unit": "credits"}),
        ("cfp", "budget", {"amount": 100, "unit": "dollars"}),
        ("cfp", "task", ["a list"]),
        ("cfp", "nonce", None),
        ("cfp", "nonce", "short"),
        ("cfp", "conversation", "a b c d e f g h i j"),
        ("propose", "model_sha256", "AB" * 32),  # upper-case hex
        ("propose", "skills", ["Not A Skill"]),
        ("propose", "skills", ["dup", "dup"]),
        ("propose", "expected_seconds", 0),
        ("propose", "in_reply_to", None),
        ("cfp", "in_reply_to", "ab" * 32),  # a cfp answers nothing
        ("result", "receipt", "a receipt as text"),
    ],
)
def test_bad_types_and_ranges_are_refused_before_the_signature(
    rnd: Round, performative: str, name: str, bad: Any
) -> None:
    original = next(m for m in rnd.messages() if m["performative"] == performative)
    with pytest.raises(ContractRefused) as caught:
        check({**original, name: bad}, now=original["issued_at"])
    assert caught.value.code == "malformed", str(caught.value)


def test_nan_and_duplicate_names_are_not_json(rnd: Round) -> None:
    text = canonical_json(rnd.cfp_a).decode().replace(f'"deadline":{T0 + 60}', '"deadline":NaN')
    with pytest.raises(ContractRefused) as caught:
        parse(text.encode())
    assert caught.value.code == "not_json"
    with pytest.raises(ContractRefused) as caught:
        check({**rnd.cfp_a, "deadline": math.nan}, now=T0)
    assert caught.value.code == "malformed"
    with pytest.raises(ContractRefused) as caught:
        parse(b'{"type": 1, "type": 2}')
    assert caught.value.code == "not_json"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("sender", "did:web:example.com"),
        ("sender", None),
        ("receiver", "did:key:z6MkNOTAKEY"),
        ("sender", "did:key:" + "z" * 300),
    ],
)
def test_a_sender_or_receiver_that_is_not_a_did_key_is_refused(
    rnd: Round, name: str, value: Any
) -> None:
    with pytest.raises(ContractRefused) as caught:
        check({**rnd.cfp_a, name: value}, now=T0)
    assert caught.value.code == "bad_did"


def test_a_did_url_is_not_a_bare_did(rnd: Round) -> None:
    with pytest.raises(ContractRefused) as caught:
        check(resign(rnd.cfp_a, BUYER.key, receiver=verification_method_id(A.did)), now=T0)
    assert caught.value.code == "bad_did"


def test_a_message_from_the_future_is_refused(rnd: Round) -> None:
    with pytest.raises(ContractRefused) as caught:
        check(rnd.cfp_a, now=T0 - 61)
    assert caught.value.code == "future"
    check(rnd.cfp_a, now=T0 - 59)  # within the skew two clocks may have


def test_an_expired_message_is_refused(rnd: Round) -> None:
    with pytest.raises(ContractRefused) as caught:
        check(rnd.cfp_a, now=T0 + 301)
    assert caught.value.code == "expired"
    with pytest.raises(ContractRefused) as caught:  # one that claims to live for ever
        check(resign(rnd.cfp_a, BUYER.key, expires_at=T0 + 8 * 86400), now=T0)
    assert caught.value.code == "malformed"


# --- the conversation: the protocol's rules -----------------------------------------------------


def test_a_replayed_bid_is_refused(rnd: Round) -> None:
    refused("replayed", [rnd.cfp_a, rnd.prop_a, rnd.prop_a])


def test_a_reused_nonce_is_refused(rnd: Round) -> None:
    """B's bid again with another price, signed anew, under the same nonce: another id."""
    again = resign(rnd.prop_b, B.key, price={"amount": 45, "unit": "credits"})
    assert message_id(again) != message_id(rnd.prop_b)
    refused("replayed_nonce", [rnd.cfp_b, rnd.prop_b, again])


def test_a_bid_after_the_deadline_is_refused(rnd: Round) -> None:
    late = propose(A, rnd.cfp_a, at=T0 + 61)
    refused("late_bid", [rnd.cfp_a, late])
    # Dated in time, received after the deadline: refused live.
    refused("late_bid", [rnd.cfp_a, rnd.prop_a], now=T0 + 61)


def test_a_bid_for_another_conversation_is_refused(rnd: Round) -> None:
    other_cfp = cfp(A, conversation="conversation-0002")
    refused("wrong_conversation", [rnd.cfp_a, propose(A, other_cfp)])


def test_a_bid_not_answering_this_cfp_is_refused(rnd: Round) -> None:
    refused("broken_link", [rnd.cfp_a, rnd.cfp_b, propose(A, rnd.cfp_b)])


def test_a_bid_from_someone_not_called_is_refused(rnd: Round) -> None:
    refused("not_a_receiver", [rnd.cfp_a, propose(MALLORY, rnd.cfp_a)])


def test_a_second_answer_from_one_seller_is_refused(rnd: Round) -> None:
    refused("already_answered", [rnd.cfp_a, rnd.prop_a, propose(A, rnd.cfp_a, amount=30)])


def test_a_bid_over_the_budget_is_refused(rnd: Round) -> None:
    refused("over_budget", [rnd.cfp_a, propose(A, rnd.cfp_a, amount=101)])
    tokens = propose(A, rnd.cfp_a, price={"amount": 10, "unit": "tokens"})
    refused("over_budget", [rnd.cfp_a, tokens])


def test_a_cfp_with_other_terms_or_from_another_buyer_is_refused(rnd: Round) -> None:
    refused("cfp_mismatch", [rnd.cfp_a, cfp(B, budget={"amount": 999, "unit": "credits"})])
    impostor = msg("cfp", MALLORY, B, CFP_TERMS)
    refused("not_buyer", [rnd.cfp_a, impostor])


def test_a_bid_before_the_cfp_is_refused(rnd: Round) -> None:
    refused("out_of_order", [rnd.prop_a])


def test_an_award_for_a_bid_never_made_is_refused(rnd: Round) -> None:
    never_sent = propose(B, rnd.cfp_b, amount=10)
    refused("unknown_proposal", [rnd.cfp_a, rnd.cfp_b, rnd.prop_a, accept(never_sent)])


def test_an_award_by_someone_other_than_the_buyer_is_refused(rnd: Round) -> None:
    by_b = msg("accept", B, A, {"price": rnd.prop_a["price"]}, rnd.prop_a, at=T0 + 70)
    refused("not_buyer", [rnd.cfp_a, rnd.cfp_b, rnd.prop_a, rnd.prop_b, by_b])


def test_a_duplicate_award_is_refused(rnd: Round) -> None:
    base = [rnd.cfp_a, rnd.cfp_b, rnd.prop_a, rnd.prop_b, rnd.accept_a]
    refused("duplicate_award", [*base, accept(rnd.prop_b, at=T0 + 72)])  # to another seller
    refused("duplicate_award", [*base, accept(rnd.prop_a, at=T0 + 72)])  # the same bid again


def test_a_reject_after_the_award_of_that_bid_is_refused(rnd: Round) -> None:
    reject_a = msg("reject", BUYER, A, {"reason": "changed my mind"}, rnd.prop_a, at=T0 + 72)
    refused("already_decided", [rnd.cfp_a, rnd.prop_a, rnd.accept_a, reject_a])


def test_a_price_changed_in_the_award_is_refused(rnd: Round) -> None:
    cheaper = msg(
        "accept", BUYER, A, {"price": {"amount": 1, "unit": "credits"}}, rnd.prop_a, at=T0 + 70
    )
    refused("price_mismatch", [rnd.cfp_a, rnd.prop_a, cheaper])


def test_an_award_after_the_bid_expired_is_refused(rnd: Round) -> None:
    refused("bid_expired", [rnd.cfp_a, rnd.prop_a, accept(rnd.prop_a, at=T0 + 201)])


def test_an_award_sent_to_another_than_the_bidder_is_refused(rnd: Round) -> None:
    misdirected = msg("accept", BUYER, B, {"price": rnd.prop_a["price"]}, rnd.prop_a, at=T0 + 70)
    refused("wrong_receiver", [rnd.cfp_a, rnd.prop_a, misdirected])


def test_a_result_for_another_award_is_refused(rnd: Round) -> None:
    """A's result answers an award of another round with the same parties and conversation."""
    other = a_round()
    refused("broken_link", [rnd.cfp_a, rnd.prop_a, rnd.accept_a, result(other.accept_a)])


def test_a_result_from_a_seller_not_awarded_is_refused(rnd: Round) -> None:
    from_b = result(rnd.accept_a, seller=B)
    refused("not_awarded", [rnd.cfp_a, rnd.cfp_b, rnd.prop_a, rnd.prop_b, rnd.accept_a, from_b])


def test_a_result_before_the_award_is_refused(rnd: Round) -> None:
    refused("out_of_order", [rnd.cfp_a, rnd.prop_a, rnd.result_a])


def test_nothing_follows_the_outcome(rnd: Round) -> None:
    second = result(rnd.accept_a, at=T0 + 85)
    refused("closed", [rnd.cfp_a, rnd.prop_a, rnd.accept_a, rnd.result_a, second])


def test_an_answer_after_the_message_it_answers_expired_is_refused() -> None:
    short_cfp = msg("cfp", BUYER, A, {**CFP_TERMS, "deadline": T0 + 600}, ttl=30)
    refused("late_reply", [short_cfp, propose(A, short_cfp, at=T0 + 31)])


def test_an_answer_dated_before_what_it_answers_is_refused(rnd: Round) -> None:
    refused("out_of_order", [rnd.cfp_a, rnd.prop_a, accept(rnd.prop_a, at=T0 - 100)])


# --- the export, verified offline ---------------------------------------------------------------


def _verify_refused(code: str, raw: bytes, index: int | None) -> None:
    with pytest.raises(ContractRefused) as caught:
        verify_export(raw)
    assert (caught.value.code, caught.value.index) == (code, index), str(caught.value)


@pytest.mark.parametrize(
    ("edit", "code", "index"),
    [
        ("remove the accept", "out_of_order", 7),
        ("remove the first cfp", "not_a_receiver", 2),
        ("duplicate a bid", "replayed", 4),
        ("swap cfp and bid", "out_of_order", 0),
        ("swap accept and result", "out_of_order", 6),
    ],
)
def test_an_export_with_messages_removed_duplicated_or_swapped_is_refused(
    rnd: Round, edit: str, code: str, index: int
) -> None:
    messages = rnd.messages()  # cfp_a cfp_b cfp_c prop_a prop_b refuse_c accept_a reject_b result_a
    if edit == "remove the accept":
        del messages[6]
    elif edit == "remove the first cfp":
        del messages[0]
    elif edit == "duplicate a bid":
        messages.insert(4, rnd.prop_a)
    elif edit == "swap cfp and bid":
        messages = [rnd.prop_a, rnd.cfp_a]
    else:
        messages[6], messages[8] = messages[8], messages[6]
    _verify_refused(code, export(messages), index)


def test_an_export_with_a_mutated_message_names_its_index(rnd: Round) -> None:
    messages = rnd.messages()
    messages[3] = {**messages[3], "price": {"amount": 1, "unit": "credits"}}
    _verify_refused("signature_invalid", export(messages), 3)


def test_an_export_from_the_future_is_refused_with_now(rnd: Round) -> None:
    with pytest.raises(ContractRefused) as caught:
        verify_export(export(rnd.messages()), now=T0 - 3600)
    assert caught.value.code == "future" and caught.value.index == 0
    verify_export(export(rnd.messages()))  # without a clock: the chain's own times only


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"not json", "not_json"),
        (b"[]", "malformed"),
        (
            b'{"type": "flurry.contract.export/1", "conversation": "conversation-0001", "messages": []}',
            "malformed",
        ),
        (
            b'{"type": "flurry.contract.export/1", "conversation": "x", "messages": [{}]}',
            "malformed",
        ),
        (b'{"type": "other", "conversation": "conversation-0001", "messages": [{}]}', "malformed"),
    ],
)
def test_a_malformed_export_is_refused(raw: bytes, code: str) -> None:
    _verify_refused(code, raw, None)


def test_an_export_of_another_conversation_id_is_refused(rnd: Round) -> None:
    raw = canonical_json(
        {
            "type": "flurry.contract.export/1",
            "conversation": "conversation-0002",
            "messages": rnd.messages(),
        }
    )
    _verify_refused("wrong_conversation", raw, 0)


# --- the command line -----------------------------------------------------------------------------


def test_contracts_verify_on_a_good_and_a_tampered_export(
    rnd: Round, cli: Any, tmp_path: Path
) -> None:
    good = tmp_path / "good.json"
    good.write_bytes(export(rnd.messages()))
    shown = cli("contracts", "verify", str(good))
    assert shown.returncode == 0
    lines = shown.stdout.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("valid: 9 messages, outcome result")
    assert "accept" in lines[6] and A.did not in lines[6] and BUYER.did in lines[6]
    assert all("link ok" in line and line.endswith("ok") for line in lines[:9])

    tampered = rnd.messages()
    tampered[6] = {**tampered[6], "price": {"amount": 1, "unit": "credits"}}
    bad = tmp_path / "bad.json"
    bad.write_bytes(export(tampered))
    shown = cli("contracts", "verify", str(bad), check=False)
    assert shown.returncode == 1
    assert "refused: signature_invalid: message 6:" in shown.stdout
    # The reply to the mutated accept no longer links to anything in the file.
    assert "link BROKEN" in shown.stdout.splitlines()[8]
    as_json = json.loads(cli("contracts", "verify", str(bad), "--json", check=False).stdout)
    assert as_json["valid"] is False
    assert as_json["refused"]["code"] == "signature_invalid" and as_json["refused"]["index"] == 6
    assert [row["status"] for row in as_json["messages"]][5:8] == [
        "ok", "refused: signature_invalid", "not checked"
    ]  # fmt: skip


def test_a_second_cfp_to_one_seller_is_refused(rnd: Round) -> None:
    refused("duplicate_cfp", [rnd.cfp_a, cfp(A)])


def test_a_refused_message_changes_nothing(rnd: Round) -> None:
    """After a refusal the conversation goes on as if the message never came."""
    conversation = feed([rnd.cfp_a, rnd.cfp_b, rnd.prop_a, rnd.prop_b])
    before = (len(conversation.messages), dict(conversation.decided), conversation.award)
    cheaper = msg("accept", BUYER, A, {"price": {"amount": 1, "unit": "credits"}}, rnd.prop_a)
    with pytest.raises(ContractRefused):
        conversation.add(resign(cheaper, BUYER.key, issued_at=T0 + 70), T0 + 70)
    assert (len(conversation.messages), dict(conversation.decided), conversation.award) == before
    conversation.add(rnd.accept_a, T0 + 70)
    assert conversation.award is not None and conversation.award.id == message_id(rnd.accept_a)
    first = Conversation()
    with pytest.raises(ContractRefused) as caught:
        first.add(msg("cfp", BUYER, BUYER, CFP_TERMS), T0)  # a buyer calling itself
    assert caught.value.code == "malformed" and first.buyer is None and first.id is None


def test_a_result_after_the_award_expired_is_refused(rnd: Round) -> None:
    """Late (after the promised time) is marked; after the award's own expiry it is refused."""
    too_late = result(rnd.accept_a, at=T0 + 70 + 301)
    refused("late_reply", [rnd.cfp_a, rnd.prop_a, rnd.accept_a, too_late])


def test_flurry_contracts_verify_end_to_end(rnd: Round, flurry: Any, tmp_path: Path) -> None:
    """The installed command, in its own process, with no home: a third party's machine."""
    path = tmp_path / "conversation.json"
    path.write_bytes(export(rnd.messages()))
    assert flurry("contracts", "verify", str(path)).stdout.splitlines()[-1].startswith("valid:")
    swapped = rnd.messages()
    swapped[6], swapped[8] = swapped[8], swapped[6]
    path.write_bytes(export(swapped))
    shown = flurry("contracts", "verify", str(path), check=False)
    assert shown.returncode == 1 and "refused: out_of_order: message 6:" in shown.stdout
    assert "Traceback" not in shown.stderr
