"""The seller's side of Contract Net (issue 18): bids made by code from the owner's policy,
awarded work done on the model queue's peer lane, every message kept sealed.

**Who may call.** A peer whose grant allows the operation ``contract``; anyone else's cfp gets
a signed refuse ("not granted"), and any other message from them a refusal (``not_granted``).

**The policy** (sealed, kind ``contract-policy``, key: the peer's DID; ``DEFAULT_POLICY`` when
the owner set none)::

    {"kinds": ["answer"], "unit": "credits" | "tokens", "fixed": <int ≥ 0>,
     "per_1k_tokens": <int ≥ 0>, "max_open": <int ≥ 1>, "expected_seconds": <int ≥ 1>}

A cfp's ``result_spec`` names the kind of work asked, and the grant must allow what that
work is on its own:

- ``answer``: a grounded answer from the tags the grant allows (node.peering.answer_work, the
  one answer path for peers); the grant allows ``ask``. Priced at the task's characters / 4
  plus ``ANSWER_TOKENS``.
- ``infer``: the task run on this node's model alone, as one user message (node.infer: no
  retrieval, no tools, metered against the grant's token quotas, its receipt in the result);
  the grant allows ``infer``. Priced at the task's characters / 4 plus the reply's cap.
- ``tool:NAME``: one call of an enabled skill's tool NAME, the task being its arguments as a
  JSON object, checked against the tool's schema before the bid (no model chooses anything);
  the grant allows ``tool:NAME``, and the owner's rule for the tool is "allow" (a call the
  owner wants to approve one by one is not sold: the buyer cannot wait on the owner).
  Priced at ``fixed`` alone; the result carries no receipt (no model ran).

The price is ``fixed + ceil(per_1k_tokens × estimated_tokens / 1000)``: code, never the
model. The seller refuses (signed) a kind it does not offer, a budget in another unit or
below its price, and a call past ``max_open`` open contracts with that peer.

**Limits.** A granted peer's every contract message uses one call of its grant's quota (the
``contract`` operation, 429 past it; strangers are limited at the door, node.limits). A peer
has at most ``MAX_KEPT_PER_PEER`` conversations kept on this side: past that, the oldest that
settle nothing (refused, rejected, expired or failed) are dropped; the ones that ended with a
result stay, since the balances are recomputed from them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from agent.contract_net import (
    MAX_RESULT_CHARS,
    Checked,
    ContractRefused,
    Conversation,
    check,
    make,
)
from agent.grants import Grant, InvalidGrant, QuotaExceeded, check_operation
from agent.tools import Tool, ToolCall, ToolCallError, ToolPolicy, ToolTurn, validate_call
from identity.jws import canonical_json
from node import contracts_wire as wire
from node import infer
from node.node import PlannedCall
from node.peering import PeeringNode, answer_work

POLICY_KIND = "contract-policy"
OPERATION = wire.OPERATION
KINDS = ("answer", "infer")  # and "tool:NAME"
TOOL_KIND = "tool:"
ANSWER_TOKENS = 512  # what an answer is priced at, generated
MAX_KEPT_PER_PEER = 200  # conversations kept per peer on the seller's side (see Limits)
DEFAULT_POLICY: dict[str, Any] = {
    "kinds": ["answer"],
    "unit": "credits",
    "fixed": 1,
    "per_1k_tokens": 10,
    "max_open": 2,
    "expected_seconds": 300,
}
BID_TTL = 120  # a proposal holds this long


class SellerNode(PeeringNode, Protocol):
    """What the seller uses of the node beyond a peer channel: its skills' tools."""

    def enabled_tools(self) -> dict[str, tuple[str, Tool]]: ...
    def tool_policy(self) -> ToolPolicy: ...
    def run_planned(self, planned: Any, ask_owner: Callable[[ToolCall], bool]) -> ToolTurn: ...


def is_kind(kind: object) -> bool:
    if kind in KINDS:
        return True
    if not isinstance(kind, str) or not kind.startswith(TOOL_KIND):
        return False
    try:  # the grant's own operation name: what the grant must allow for this kind
        check_operation(kind)
    except InvalidGrant:
        return False
    return True


def check_policy(policy: object) -> dict[str, Any]:
    """``policy`` if valid (ValueError if not): known fields only, each of its type."""
    if not isinstance(policy, dict) or set(policy) != set(DEFAULT_POLICY):
        raise ValueError(f"a contract policy holds exactly {', '.join(sorted(DEFAULT_POLICY))}")
    kinds = policy["kinds"]
    if not isinstance(kinds, list) or not kinds or not all(is_kind(k) for k in kinds):
        raise ValueError(f"kinds: a non-empty list of {', '.join(KINDS)} or tool:NAME")
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


def price_for(
    policy: dict[str, Any], task: str, kind: str = "answer", reply_tokens: int = 0
) -> int:
    """``fixed`` plus the tokens the work is estimated at (none for a tool call)."""
    if kind.startswith(TOOL_KIND):
        return int(policy["fixed"])
    estimated = len(task) // 4 + (ANSWER_TOKENS if kind == "answer" else reply_tokens)
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


def receive(node: SellerNode, caller: str, text: str) -> Callable[[], Iterator[str]]:
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
    if granted:  # one call of the grant's quota (QuotaExceeded: 429), as every operation
        grant = node.grants.authorize(caller, OPERATION, owner_did=node.keys.owner_did)
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
                wire.prune(node.vault, "seller", caller, keep=MAX_KEPT_PER_PEER)
            answer = wire.encode(reply)
            return lambda: iter([answer])
        wire.save(node.vault, "seller", conversation, caller)
    if checked.performative == "reject":
        ack = canonical_json({"acknowledged": checked.id}).decode()
        return lambda: iter([ack])
    return _Work(node, caller, checked, conversation)  # its grant is read when it starts


def _bid(node: SellerNode, cfp: Checked, grant: Grant | None, now: int) -> dict[str, Any]:
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
    # The work on its own needs its own grant: what the peer could ask for directly.
    needed = "ask" if kind == "answer" else kind
    if not grant.allows(needed):
        return refuse(f"kind not offered: {kind} needs a grant that allows {needed}")
    skills: list[str] = []
    reply_tokens = 0
    if kind == "infer":
        reply_tokens = min(
            infer.DEFAULT_REQUEST_TOKENS, grant.max_tokens or infer.DEFAULT_MAX_TOKENS
        )
    elif kind.startswith(TOOL_KIND):
        try:
            skills = [_tool_call(node, kind, cfp["task"])[0]]
        except ToolCallError as error:
            return refuse(f"tool: {error}"[:300])
    budget = cfp["budget"]
    if budget["unit"] != policy["unit"]:
        return refuse(f"unit: this node prices in {policy['unit']}")
    price = price_for(policy, cfp["task"], kind, reply_tokens)
    if price > budget["amount"]:
        return refuse(f"over budget: this task costs {price} {policy['unit']}")
    if _open_with(node, cfp.sender, now) >= policy["max_open"]:
        return refuse(f"busy: {policy['max_open']} open contracts with you already")
    return answer(
        "propose",
        {
            "price": {"amount": price, "unit": policy["unit"]},
            "expected_seconds": policy["expected_seconds"],
            "model_sha256": node.local_chat_model.model_sha256,
            "skills": skills,
            "expiry": now + BID_TTL,
        },
    )


def _tool_call(node: SellerNode, kind: str, task: str) -> tuple[str, ToolCall]:
    """(skill, call) for a ``tool:NAME`` task: its arguments, checked against the enabled
    tool's schema, and the owner's rule for it "allow"; ToolCallError says what is wrong."""
    name = kind.removeprefix(TOOL_KIND)
    found = node.enabled_tools().get(name)
    if found is None:
        raise ToolCallError(f"no enabled tool {name} on this node")
    if node.tool_policy().rule(name) != "allow":
        raise ToolCallError(f"the owner approves each call of {name}: not offered under contract")
    try:
        arguments = json.loads(task)
    except ValueError:
        raise ToolCallError("the task is the tool's arguments as a JSON object") from None
    if not isinstance(arguments, dict):
        raise ToolCallError("the task is the tool's arguments as a JSON object")
    skill, tool = found
    call = ToolCall(name, arguments)
    validate_call(call, [tool])
    return skill, call


class _Work:
    """The awarded work, on the queue: the work of its kind, then the signed result (with the
    model's receipt) or failure, kept and yielded as JSON text."""

    def __init__(
        self, node: SellerNode, caller: str, accept: Checked, conversation: Conversation
    ) -> None:
        self.node, self.caller = node, caller
        self.accept, self.conversation = accept, conversation

    def __call__(self) -> Iterator[str]:
        keys = self.node.keys
        cfp = self.conversation.cfps[keys.node_did]
        try:
            text, carried = self._do(cfp["result_spec"], cfp["task"])
            if len(text) > MAX_RESULT_CHARS:
                raise ValueError(f"the result is over {MAX_RESULT_CHARS} characters")
            receipt = None if carried is None else json.loads(carried)["receipt"]
            performative, fields = "result", {"text": text, "receipt": receipt}
        except _Refused as refused:
            performative, fields = "failure", {"reason": str(refused)[:300]}
        except Exception as error:  # the model, the vault, the skill: a signed failure
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

    def _do(self, kind: str, task: str) -> tuple[str, str | None]:
        """The awarded work of ``kind``: its text and its receipt's carrier (None: no model ran).
        The grant is read again here: one narrowed since the bid stops the work."""
        grant = self.node.grants.get(self.caller)
        needed = "ask" if kind == "answer" else kind
        if grant is None or not grant.allows(needed):
            raise _Refused(f"the grant no longer allows {needed}")
        if kind == "answer":
            work = answer_work(self.node, self.caller, grant, task, channel="contract")
            text = "".join(work())
            return text, work.receipt
        if kind == "infer":
            request = infer.InferRequest([{"role": "user", "content": task}], None)
            try:
                job = infer.prepare(self.node, self.caller, grant, request, channel="contract")
            except (infer.InferRefused, QuotaExceeded) as error:
                raise _Refused(f"infer refused: {error}") from None
            text = "".join(job())
            assert job.usage is not None  # set as the job ends
            return text, job.usage.receipt
        try:  # tool:NAME: checked again (the skill or the owner's rule may have changed)
            skill, call = _tool_call(self.node, kind, task)
        except ToolCallError as error:
            raise _Refused(f"tool: {error}") from None
        # Its rule is "allow" (checked above): nobody is asked; run_planned audits the call
        # and refuses a tool changed since the owner approved it.
        turn = self.node.run_planned(PlannedCall(skill, call), lambda _: False)
        if not turn.ran or turn.result is None:
            reason = turn.decision.reason if turn.decision else "it did not run"
            raise _Refused(f"tool: {reason}")
        return turn.result, None


class _Refused(Exception):
    """The awarded work cannot be done, for a reason the buyer may read."""
