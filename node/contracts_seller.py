"""The seller's side of Contract Net (issue 18): bids made by code from the owner's policy,
awarded work done on the model queue's peer lane, every message kept sealed.

**Who may call.** A peer whose grant allows the operation ``contract``; anyone else's cfp gets
a signed refuse ("not granted"), and any other message from them a refusal (``not_granted``).

**The policy** (sealed, kind ``contract-policy``, key: the peer's DID; ``DEFAULT_POLICY`` when
the owner set none)::

    {"kinds": ["answer"], "unit": "credits" | "tokens", "fixed": <int ≥ 0>,
     "per_1k_tokens": <int ≥ 0>, "max_open": <int ≥ 1>, "expected_seconds": <int ≥ 1>}

A cfp's ``result_spec`` names the kind of work asked: ``answer`` is a grounded answer from
the tags the grant allows (node.peering.answer_work, the one answer path for peers), so the
grant must allow ``ask`` as well. The
price is ``fixed + ceil(per_1k_tokens × estimated_tokens / 1000)``, ``estimated_tokens`` the
task's characters / 4 plus ``ANSWER_TOKENS``: code, never the model. The seller refuses
(signed) a kind it does not offer, a budget in another unit or below its price, and a call
past ``max_open`` open contracts with that peer.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from agent.contract_net import (
    MAX_RESULT_CHARS,
    Checked,
    ContractRefused,
    Conversation,
    check,
    make,
)
from agent.grants import Grant
from identity.jws import canonical_json
from node import contracts_wire as wire
from node.peering import PeeringNode, answer_work

POLICY_KIND = "contract-policy"
OPERATION = wire.OPERATION
KINDS = ("answer",)
ANSWER_TOKENS = 512  # what an answer is priced at, generated
DEFAULT_POLICY: dict[str, Any] = {
    "kinds": ["answer"],
    "unit": "credits",
    "fixed": 1,
    "per_1k_tokens": 10,
    "max_open": 2,
    "expected_seconds": 300,
}
BID_TTL = 120  # a proposal holds this long


def check_policy(policy: object) -> dict[str, Any]:
    """``policy`` if valid (ValueError if not): known fields only, each of its type."""
    if not isinstance(policy, dict) or set(policy) != set(DEFAULT_POLICY):
        raise ValueError(f"a contract policy holds exactly {', '.join(sorted(DEFAULT_POLICY))}")
    kinds = policy["kinds"]
    if not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds):
        raise ValueError(f"kinds: a non-empty list of {', '.join(KINDS)}")
    if policy["unit"] not in ("credits", "tokens"):
        raise ValueError("unit: credits or tokens")
    for name, low in (("fixed", 0), ("per_1k_tokens", 0), ("max_open", 1), ("expected_seconds", 1)):
        value = policy[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 10**9:
            raise ValueError(f"{name}: a whole number from {low}")
    return dict(policy)


def set_policy(node: PeeringNode, did: str, policy: dict[str, Any]) -> dict[str, Any]:
    policy = check_policy(policy)
    node.vault.put_record(POLICY_KIND, did, policy)
    return policy


def policy_for(node: PeeringNode, did: str) -> dict[str, Any]:
    kept = node.vault.get_record(POLICY_KIND, did)
    return dict(DEFAULT_POLICY) if kept is None else check_policy(kept)


def price_for(policy: dict[str, Any], task: str) -> int:
    estimated = len(task) // 4 + ANSWER_TOKENS
    return policy["fixed"] + math.ceil(policy["per_1k_tokens"] * estimated / 1000)


def _open_with(node: PeeringNode, peer: str, now: int) -> int:
    """Conversations with ``peer`` where this node's bid is undecided and still holds, or its
    award unfinished."""
    count = 0
    for record in wire.kept(node.vault, side="seller", peer=peer):
        c: Conversation = record["conversation"]
        if c.buyer != peer or c.outcome is not None:
            continue
        live = [p for p in c.proposals.values() if p.id not in c.decided and p["expiry"] >= now]
        if c.award is not None or live:
            count += 1
    return count


def receive(node: PeeringNode, caller: str, text: str) -> Callable[[], Iterator[str]]:
    """What this node does with a contract message from ``caller`` (the DID the transport
    authenticated): checked and taken into its conversation before anything else, then the
    work that answers it (a queue job's work: it yields the answer's JSON text).
    ContractRefused, nothing kept, when the protocol or the grants forbid it."""
    now = time.time()
    message = wire.decode(text)
    checked = check(message, now=now, expected_sender=caller)
    me = node.keys.node_did
    if checked.receiver != me:
        raise ContractRefused("wrong_receiver", f"the message is for {checked.receiver}")
    grant = node.grants.get(caller)
    granted = grant is not None and grant.allows(OPERATION)
    if checked.performative != "cfp" and not granted:
        raise ContractRefused("not_granted", "this node's owner has not granted you contracts")
    if checked.performative not in ("cfp", "accept", "reject"):
        raise ContractRefused("not_for_seller", f"a seller is not sent a {checked.performative}")
    with wire._lock:
        conversation = wire.load(node.vault, "seller", checked.conversation) or Conversation()
        conversation.add(message, now)
        if checked.performative == "cfp":
            reply = _bid(node, checked, grant if granted else None, int(now))
            conversation.add(reply, now)
            if granted:  # a stranger's calls are answered, not kept: they cannot fill the vault
                wire.save(node.vault, "seller", conversation, caller)
            answer = wire.encode(reply)
            return lambda: iter([answer])
        wire.save(node.vault, "seller", conversation, caller)
    if checked.performative == "reject":
        ack = canonical_json({"acknowledged": checked.id}).decode()
        return lambda: iter([ack])
    assert grant is not None
    return _Work(node, caller, grant, checked, conversation)


def _bid(node: PeeringNode, cfp: Checked, grant: Grant | None, now: int) -> dict[str, Any]:
    keys = node.keys

    def answer(performative: str, fields: dict[str, Any]) -> dict[str, Any]:
        return make(
            performative,
            keys.node_key,
            keys.node_did,
            cfp.sender,
            cfp.conversation,
            fields,
            answering=cfp.message,
            ttl=BID_TTL,
            now=now,
        )

    def refuse(reason: str) -> dict[str, Any]:
        return answer("refuse", {"reason": reason})

    if grant is None:
        return refuse("not granted: this node's owner has not granted you contracts")
    if now > cfp["deadline"]:
        raise ContractRefused("late_bid", "the call's deadline has passed")
    policy = policy_for(node, cfp.sender)
    kind = cfp["result_spec"]
    if kind not in policy["kinds"]:
        return refuse(f"kind not offered: this node does {', '.join(policy['kinds'])}")
    if kind == "answer" and not grant.allows("ask"):
        # The answer draws on what the peer may ask (node.Node.peer_tags): an "ask" grant.
        return refuse("kind not offered: an answer needs a grant that allows ask")
    budget = cfp["budget"]
    if budget["unit"] != policy["unit"]:
        return refuse(f"unit: this node prices in {policy['unit']}")
    price = price_for(policy, cfp["task"])
    if price > budget["amount"]:
        return refuse(f"over budget: this task costs {price} {policy['unit']}")
    if _open_with(node, cfp.sender, now) >= policy["max_open"]:
        return refuse(f"busy: {policy['max_open']} open contracts with you already")
    return answer(
        "propose",
        {
            "price": {"amount": price, "unit": policy["unit"]},
            "expected_seconds": policy["expected_seconds"],
            "model_sha256": node.chat_model.model_sha256,
            "skills": [],
            "expiry": now + BID_TTL,
        },
    )


class _Work:
    """The awarded work, on the queue: the grounded answer, then the signed result (with the
    answer's receipt) or failure, kept and yielded as JSON text."""

    def __init__(
        self,
        node: PeeringNode,
        caller: str,
        grant: Grant,
        accept: Checked,
        conversation: Conversation,
    ) -> None:
        self.node, self.caller, self.grant = node, caller, grant
        self.accept, self.conversation = accept, conversation

    def __call__(self) -> Iterator[str]:
        keys = self.node.keys
        cfp = self.conversation.cfps[keys.node_did]
        work = answer_work(self.node, self.caller, self.grant, cfp["task"])
        try:
            text = "".join(work())
            if len(text) > MAX_RESULT_CHARS:
                raise ValueError(f"the answer is over {MAX_RESULT_CHARS} characters")
            receipt = None if work.receipt is None else json.loads(work.receipt)["receipt"]
            performative, fields = "result", {"text": text, "receipt": receipt}
        except Exception as error:  # the model or the vault: the buyer gets a signed failure
            performative, fields = (
                "failure",
                {"reason": f"the work failed ({type(error).__name__})"},
            )
        now = int(time.time())
        reply = make(
            performative,
            keys.node_key,
            keys.node_did,
            self.caller,
            self.accept.conversation,
            fields,
            answering=self.accept.message,
            now=now,
        )
        with wire._lock:
            conversation = wire.load(self.node.vault, "seller", self.accept.conversation)
            assert conversation is not None
            conversation.add(reply, now)
            wire.save(self.node.vault, "seller", conversation, self.caller)
        yield wire.encode(reply)
