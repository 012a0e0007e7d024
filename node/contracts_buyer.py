"""The buyer's side of Contract Net (issue 18): ``flurry delegate``.

One conversation id; a cfp to each chosen pinned peer (the same terms); bids collected until
the deadline or until every peer answered; the award by the rule (``cheapest``: the lowest
price, then the shortest expected time; ``fastest``: the reverse; ``ask``: the owner's
choice); a reject to every other bidder; the result, checked as it arrives (signature, chain,
receipt) and the whole conversation re-verified (``verify_export``) before it is kept sealed
and the outcome written to the audit log. Every message goes through the signed A2A client
(node.peering.send_to_peer), each answer through ``check``/``Conversation.add``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent import receipts
from agent.contract_net import (
    Checked,
    ContractRefused,
    Conversation,
    check,
    make,
    new_conversation_id,
    verify_export,
)
from node import contracts_wire as wire
from node.contracts_seller import KINDS, is_kind
from node.errors import OwnerError
from node.peering import PeeringNode, send_to_peer
from node.peers import Peer, find_peer

PICKS = ("cheapest", "fastest", "ask")
Event = Callable[[str, dict[str, Any]], None]
# The owner's choice among the bids (their index, None: award nobody), now or later.
Choose = Callable[[list[Checked]], "int | None | Awaitable[int | None]"]


def _key(pick: str) -> Callable[[Checked], tuple[int, int]]:
    if pick == "fastest":
        return lambda p: (p["expected_seconds"], p["price"]["amount"])
    return lambda p: (p["price"]["amount"], p["expected_seconds"])


async def _send(node: PeeringNode, peer: Peer, message: dict[str, Any]) -> str:
    reply = await send_to_peer(node, peer.did, wire.encode(message), metadata=wire.METADATA)
    return str(reply["text"])


def _take(conversation: Conversation, text: str, peer: Peer) -> Checked:
    """A seller's answer, checked as sent by the peer pinned (its DID), then taken in."""
    message = wire.decode(text)
    check(message, now=time.time(), expected_sender=peer.did)
    return conversation.add(message, time.time())


async def delegate(
    node: PeeringNode,
    task: str,
    peers: list[str],
    *,
    budget: int,
    unit: str = "credits",
    kind: str = "answer",
    deadline: float = 60,
    pick: str = "cheapest",
    choose: Choose | None = None,
    on_event: Event | None = None,
    conversation_id: str | None = None,
) -> dict[str, Any]:
    """Delegate ``task`` to the pinned ``peers`` (names or DIDs); the outcome as a dict.
    ``choose`` (with ``pick="ask"``) may answer at once or be awaited (the owner watching
    through the API: `Delegations`)."""
    if pick not in PICKS:
        raise OwnerError(f"pick one of {', '.join(PICKS)}")
    if not is_kind(kind):
        raise OwnerError(f"kind: {', '.join(KINDS)} or tool:NAME, not {kind!r}")
    pinned = []
    for ref in peers:
        peer = find_peer(node.vault, ref)
        if peer is None:
            raise OwnerError(f"no pinned peer {ref!r}")
        pinned.append(peer)
    if not pinned:
        raise OwnerError("name at least one pinned peer (--to) or --all-granted")
    emit = on_event or (lambda kind, data: None)
    keys = node.keys
    now = int(time.time())
    cid = conversation_id or new_conversation_id()
    conversation = Conversation()
    until = now + max(1, int(deadline))
    terms = {
        "task": task,
        "result_spec": kind,
        "deadline": until,
        "budget": {"amount": budget, "unit": unit},
    }
    cfps = {}
    for peer in pinned:
        cfp = make(
            "cfp",
            keys.node_key,
            keys.node_did,
            peer.did,
            cid,
            terms,
            ttl=max(1, int(deadline)) + 60,
            now=now,
        )
        conversation.add(cfp, now)
        cfps[peer.did] = cfp
    answers: dict[str, str] = {}  # peer DID → "propose" / "refuse" / the error

    async def call(peer: Peer) -> None:
        try:
            checked = _take(conversation, await _send(node, peer, cfps[peer.did]), peer)
            answers[peer.did] = checked.performative
            emit(checked.performative, {"peer": peer.label, "message": checked.message})
        except (OwnerError, ContractRefused) as error:
            answers[peer.did] = f"error: {error}"
            emit("error", {"peer": peer.label, "error": str(error)})

    started = time.monotonic()
    calls = [asyncio.ensure_future(call(peer)) for peer in pinned]
    await asyncio.wait(calls, timeout=max(1.0, until - time.time()))
    for pending in calls:
        pending.cancel()
    bidding = time.monotonic() - started
    by_did = {p.did: p for p in pinned}
    proposals = sorted(conversation.proposals.values(), key=_key(pick))
    outcome: dict[str, Any] = {
        "conversation": cid,
        "answers": {by_did[d].label: a for d, a in answers.items()},
        "bids": [
            {
                "peer": by_did[p.sender].label,
                "did": p.sender,
                "price": p["price"],
                "expected_seconds": p["expected_seconds"],
            }
            for p in proposals
        ],
        "bidding_seconds": round(bidding, 3),
    }
    winner: Checked | None = None
    if proposals:
        if pick == "ask":
            emit("choose", {"bids": outcome["bids"]})
            chosen = choose(proposals) if choose else None
            index = await chosen if inspect.isawaitable(chosen) else chosen
            winner = proposals[index] if index is not None and 0 <= index < len(proposals) else None
        else:
            winner = proposals[0]
    now = int(time.time())
    decisions: list[tuple[Checked, dict[str, Any]]] = []
    for proposal in proposals:
        if proposal is winner:
            continue
        reason = "another bid was chosen" if winner else "no bid was chosen"
        reject = make(
            "reject",
            keys.node_key,
            keys.node_did,
            proposal.sender,
            cid,
            {"reason": reason},
            answering=proposal.message,
            now=now,
        )
        conversation.add(reject, now)
        decisions.append((proposal, reject))

    async def tell(proposal: Checked, reject: dict[str, Any]) -> None:
        try:
            await _send(node, by_did[proposal.sender], reject)
        except OwnerError as error:
            emit("error", {"peer": by_did[proposal.sender].label, "error": str(error)})

    async def award(accept: dict[str, Any], seller: Peer) -> None:
        started = time.monotonic()
        try:
            _take(conversation, await _send(node, seller, accept), seller)
        except (OwnerError, ContractRefused) as error:
            outcome["error"] = str(error)
        outcome["work_seconds"] = round(time.monotonic() - started, 3)

    decided = [tell(p, r) for p, r in decisions]
    if winner is not None:
        accept = make(
            "accept",
            keys.node_key,
            keys.node_did,
            winner.sender,
            cid,
            {"price": winner["price"]},
            answering=winner.message,
            now=now,
        )
        conversation.add(accept, now)
        emit("accept", {"peer": by_did[winner.sender].label, "message": accept})
        decided.append(award(accept, by_did[winner.sender]))
    await asyncio.gather(*decided)  # the rejects travel while the winner works
    verified = verify_export(conversation.export(), now=time.time())
    await asyncio.to_thread(wire.save, node.vault, "buyer", verified, ",".join(by_did))
    end = verified.outcome
    outcome.update(
        winner=None if winner is None else by_did[winner.sender].label,
        winner_did=None if winner is None else winner.sender,
        price=None if winner is None else winner["price"],
        state=end.performative if end else ("awarded" if winner else "no award"),
        text=end["text"] if end is not None and end.performative == "result" else None,
        reason=end["reason"] if end is not None and end.performative == "failure" else None,
        receipt=verified.receipt_id(),
        late=verified.late,
        verified=True,
    )
    if end is not None and end.performative == "result" and end["receipt"] is not None:
        # Kept with the receipts of direct answers, to verify later (flurry receipts).
        try:
            await asyncio.to_thread(
                receipts.accept,
                node.vault,
                receipts.carrier(end["receipt"], None),
                issuer=end.sender,
                requester=keys.node_did,
                messages=[{"role": "user", "content": task}],
                answer=end["text"],
            )
        except receipts.ReceiptRejected as rejected:
            outcome["receipt_error"] = f"{rejected.reason}: {rejected}"
    node.audit.append(
        "contract.delegate",
        target=cid,
        details={k: outcome[k] for k in ("winner_did", "price", "state", "receipt", "answers")},
    )
    emit("done", outcome)
    return outcome


# --- watching a delegation through the owner API ---------------------------------------------

CHOICE_SECONDS = 110  # how long a round waits for the owner's pick: within a bid's hold (120 s)
MAX_RUNNING = 4  # delegations in flight at once, per node
KEEP_FINISHED = 32  # finished ones still shown (the conversations themselves are kept sealed)


@dataclass
class Delegation:
    """One round as the owner watches it: each peer's answer as it arrives, the bids when the
    owner is to choose, then the outcome. ``phase``: bidding, choosing, working, done, failed."""

    conversation: str
    task: str
    pick: str
    phase: str = "bidding"
    peers: dict[str, dict[str, Any]] = field(default_factory=dict)  # label → what it answered
    bids: list[dict[str, Any]] = field(default_factory=list)
    outcome: dict[str, Any] | None = None
    error: str | None = None
    choice: asyncio.Future | None = None
    runner: asyncio.Task | None = None

    def view(self) -> dict[str, Any]:
        return {
            "conversation": self.conversation,
            "task": self.task,
            "pick": self.pick,
            "phase": self.phase,
            "peers": self.peers,
            "bids": self.bids,
            "outcome": self.outcome,
            "error": self.error,
        }

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "choose":
            self.phase, self.bids = "choosing", data["bids"]
        elif kind == "accept":
            self.phase = "working"
            self.peers[data["peer"]]["answer"] = "awarded"
        elif kind in ("propose", "refuse"):
            message = data["message"]
            self.peers[data["peer"]] = (
                {
                    "answer": "bid",
                    "price": message["price"],
                    "expected_seconds": message["expected_seconds"],
                }
                if kind == "propose"
                else {"answer": "refused", "reason": message["reason"]}
            )
        elif kind == "error" and data.get("peer"):
            self.peers[data["peer"]] = {"answer": "error", "error": data["error"]}


class Delegations:
    """The delegations this serving node runs for its owner, started, watched and awarded
    through the owner API (node.owner): the TUI and `flurry delegate` while serve runs."""

    def __init__(self) -> None:
        self._by_id: dict[str, Delegation] = {}

    def start(
        self,
        node: PeeringNode,
        task: str,
        peers: list[str],
        *,
        budget: int,
        unit: str,
        deadline: float,
        pick: str,
        kind: str = "answer",
    ) -> Delegation:
        """Start a round in the background (on the running event loop); its id at once."""
        running = [d for d in self._by_id.values() if d.phase not in ("done", "failed")]
        if len(running) >= MAX_RUNNING:
            raise OwnerError(f"{MAX_RUNNING} delegations are running already; wait for one to end")
        if pick not in PICKS:
            raise OwnerError(f"pick one of {', '.join(PICKS)}")
        for ref in peers:  # a wrong name is the caller's error now, not a failed round later
            if find_peer(node.vault, ref) is None:
                raise OwnerError(f"no pinned peer {ref!r}")
        if not peers:
            raise OwnerError("name at least one pinned peer")
        watched = Delegation(new_conversation_id(), task, pick)
        watched.choice = asyncio.get_running_loop().create_future()

        async def choose(proposals: list[Checked]) -> int | None:
            assert watched.choice is not None
            try:
                did = await asyncio.wait_for(asyncio.shield(watched.choice), CHOICE_SECONDS)
            except TimeoutError:
                return None  # nobody chose in time: every bidder is told, no award
            dids = [p.sender for p in proposals]
            return dids.index(did) if did in dids else None

        async def run() -> None:
            try:
                watched.outcome = await delegate(
                    node,
                    task,
                    peers,
                    budget=budget,
                    unit=unit,
                    deadline=deadline,
                    pick=pick,
                    kind=kind,
                    choose=choose,
                    on_event=watched.on_event,
                    conversation_id=watched.conversation,
                )
                watched.phase = "done"
            except Exception as error:  # shown to the owner; the node keeps serving
                watched.phase, watched.error = "failed", f"{type(error).__name__}: {error}"

        watched.runner = asyncio.ensure_future(run())
        self._by_id[watched.conversation] = watched
        self._forget_old()
        return watched

    def get(self, conversation: str) -> Delegation:
        watched = self._by_id.get(conversation)
        if watched is None:
            raise OwnerError(
                f"no delegation {conversation!r} on this node (finished ones are in flurry contracts list)"
            )
        return watched

    def award(self, conversation: str, did: str | None) -> Delegation:
        """The owner's pick: the bidder's DID, or None for nobody."""
        watched = self.get(conversation)
        if watched.phase != "choosing" or watched.choice is None or watched.choice.done():
            raise OwnerError(
                f"delegation {conversation} is not waiting for your choice ({watched.phase})"
            )
        if did is not None and did not in {b["did"] for b in watched.bids}:
            raise OwnerError(f"{did} made no bid in delegation {conversation}")
        watched.choice.set_result(did)
        return watched

    def _forget_old(self) -> None:
        finished = [c for c, d in self._by_id.items() if d.phase in ("done", "failed")]
        for conversation in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._by_id[conversation]

    async def aclose(self) -> None:
        for watched in self._by_id.values():
            if watched.runner is not None and not watched.runner.done():
                watched.runner.cancel()
