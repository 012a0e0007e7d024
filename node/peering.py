"""What every peer channel does the same way, whether the peer came over A2A or Nostr.

- `answer_work`: a granted peer's question as model work, drawn only from what its grant
  allows when the answer runs.
- `send_to_peer`: a question to a pinned peer, signed by the node key, every attempt in the
  audit log before the caller hears how it went.

Both take the node as their first argument and hold no state, so the HTTP app, the Nostr wire,
the owner's commands and the skills' broker all go through the same two functions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import asdict, replace
from typing import Protocol

from agent.answer import Conversation, with_quotes_text
from agent.audit import AuditError, AuditLog
from agent.grants import Grant, Grants
from agent.queue import Work
from agent.receipts import ReceiptRejected
from agent.receipts import accept as accept_receipt
from identity.did_key import verification_method_id
from identity.keyring import UnlockedKeyring
from identity.rotation import RotationRejected, verify_chain
from node.errors import OwnerError
from node.peers import PeerChanged, PeerError, PeerReply, find_peer, send_message
from node.rotation import RotationRefused, card_rotations, follow
from store.vault import Vault


class PeeringNode(Protocol):
    """The node as a peer channel uses it (node.node.Node is one). A protocol rather than an
    import: node.node builds the skills' broker, which sends through this module."""

    vault: Vault
    keys: UnlockedKeyring
    audit: AuditLog
    grants: Grants

    def conversation(
        self,
        title: str = ...,
        tags: frozenset[str] | None = ...,
        *,
        peer: str | None = ...,
        grounded: bool = ...,
    ) -> Conversation: ...


def _follow_card(node: PeeringNode, changed: PeerChanged) -> tuple[str | None, str]:
    """(the pinned peer's new DID, "") when the card signed by that DID carries a rotation chain
    from the pinned DID that verifies and is followed (node.rotation.follow); (None, why not)
    otherwise ("" when the card carries no chain at all)."""
    statements = card_rotations(changed.card)
    if statements is None:
        return None, ""
    try:
        chain = verify_chain(statements)
        moved = follow(node.vault, node.grants, chain, signer=changed.did)
    except (RotationRejected, RotationRefused) as refused:
        return None, str(refused)
    if not moved:
        return None, "it retires none of this node's pins"
    node.audit.append(
        "peer.rotated",
        target=chain.node,
        details={"moved": moved, "rotations": len(chain.links), "via": "agent card"},
    )
    return chain.node, ""


def answer_work(node: PeeringNode, caller: str, grant: Grant, question: str) -> Work:
    """A peer's question as model work: the one answer path, grounded and verified.

    The peer policy of every channel (DESIGN, "Answers"): a peer gets the verified answer and
    the quotes it rests on, drawn only from the tags its grant allows as it is when the answer
    runs (``peer=caller``), never file paths, chunk numbers, snippets or metadata. Only
    verified sentences stream; the quotes come last, in the same text. ``grant`` is the grant
    the caller was authorized under; checking it is the caller's part, before the work is queued."""

    def work() -> Iterator[str]:
        conversation = node.conversation(title=f"a2a from {caller}", peer=caller)
        answer = conversation.ask(question)
        yield from answer
        rest = with_quotes_text(answer)[len(answer.text) :]
        if rest:
            yield rest

    return work


async def send_to_peer(
    node: PeeringNode,
    peer: str,
    text: str,
    *,
    by: str | None = None,
    metadata: dict | None = None,
) -> dict:
    """Ask a pinned peer; signed by the node key, and every attempt lands in the audit log
    (with the skill that asked, when ``by`` names one)."""
    pinned = find_peer(node.vault, peer)
    if pinned is None:
        raise OwnerError(f"no pinned peer {peer!r}; add it first: flurry peers add URL --name NAME")
    keys = node.keys
    reply: PeerReply | None = None
    failure: PeerError | None = None
    for attempt in range(2):  # again only after following the peer's key rotation, once
        try:
            reply = await send_message(
                pinned.url,
                text,
                key=keys.node_key,
                keyid=verification_method_id(keys.node_did),
                owner_did=keys.owner_did,
                pinned_did=pinned.did,
                metadata=metadata,  # e.g. node.infer's "flurry.operation": "infer"
            )
        except PeerChanged as changed:
            failure = changed
            if attempt == 0:
                # Signatures and sealed writes: off the event loop.
                successor, why = await asyncio.to_thread(_follow_card, node, changed)
                if successor is not None:
                    pinned, failure = replace(pinned, did=successor), None
                    continue
                if why:
                    failure = PeerError(f"{changed} Its key rotation was not followed: {why}")
        except PeerError as e:
            failure = e
        break
    # Attempts are recorded too: a refusal, or a card signed by another DID, is worth an owner's look.
    details = {
        "peer_did": pinned.did,
        "task_id": reply.task_id if reply else None,
        "state": reply.state if reply else "failed",
        "question": text,
        **({"skill": by} if by else {}),
    }
    if failure is not None:
        details["error"] = str(failure)
    try:
        node.audit.append("a2a.send", target=pinned.url, details=details)
    except AuditError as e:
        raise OwnerError(
            f"{'sent' if reply else 'tried to send'}, but the audit log could not record it: {e}"
        ) from None
    if failure is not None:
        raise OwnerError(str(failure))
    assert reply is not None
    if reply.state not in ("TASK_STATE_COMPLETED", "message"):
        raise OwnerError(
            f"{pinned.label} did not answer: {reply.state}"
            + (f": {reply.note}" if reply.note else "")
        )
    result = asdict(reply)
    carried = result.pop("receipt")
    if carried:
        # The peer's signed receipt for this answer, kept sealed to verify later (flurry
        # receipts); one that does not hold is said, not kept.
        try:
            result["receipt_id"] = await asyncio.to_thread(
                accept_receipt,
                node.vault,
                carried,
                issuer=reply.peer_did,
                requester=keys.node_did,
                messages=[{"role": "user", "content": text}],
                answer=reply.text,
            )
        except ReceiptRejected as rejected:
            result["receipt_error"] = f"{rejected.reason}: {rejected}"
    return result
