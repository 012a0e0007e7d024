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
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from agent import receipts
from agent.answer import Conversation, with_quotes_text
from agent.audit import AuditError, AuditLog
from agent.generation import Generation
from agent.grants import Grant, Grants
from agent.queue import Job
from agent.receipts import ReceiptRejected
from agent.receipts import accept as accept_receipt
from identity.did_key import verification_method_id
from identity.keyring import UnlockedKeyring
from identity.rotation import RotationRejected, verify_chain
from node.errors import OwnerError
from node.ledger import Entry, Ledger
from node.peers import PeerChanged, PeerError, PeerReply, find_peer, send_message
from node.rotation import RotationRefused, card_rotations, follow
from store.vault import Vault

if TYPE_CHECKING:
    from agent.remote_model import ChatBackend
    from agent.runtime import ChatModel


class PeeringNode(Protocol):
    """The node as a peer channel uses it (node.node.Node is one). A protocol rather than an
    import: node.node builds the skills' broker, which sends through this module."""

    vault: Vault
    keys: UnlockedKeyring
    audit: AuditLog
    grants: Grants

    @property
    def chat_model(self) -> ChatBackend: ...  # the owner's (the inbox agent's drafts)

    @property
    def local_chat_model(self) -> ChatModel: ...  # in process: token-exact, receipts

    def conversation(
        self,
        title: str = ...,
        tags: frozenset[str] | None = ...,
        *,
        peer: str | None = ...,
        grounded: bool = ...,
        recorded: bool = ...,
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


def answer_work(
    node: PeeringNode, caller: str, grant: Grant, question: str, *, channel: str = "a2a"
) -> AnswerWork:
    """A peer's question as model work: the one answer path, grounded and verified.

    The peer policy of every channel (DESIGN, "Answers"): a peer gets the verified answer and
    the quotes it rests on, drawn only from the tags its grant allows as it is when the answer
    runs (``peer=caller``), never file paths, chunk numbers, snippets or metadata. Only
    verified sentences stream; the quotes come last, in the same text. ``grant`` is the grant
    the caller was authorized under; checking it is the caller's part, before the work is queued.

    When the model wrote part of the answer, the work ends by issuing its receipt (a data
    answer's: agent.receipts), keeping the salt and tokens sealed to re-execute it later, and
    recording the job in the ledger; ``AnswerWork.receipt`` then holds it as it travels."""
    return AnswerWork(node, caller, question, channel)


@dataclass
class AnswerWork:
    node: PeeringNode
    caller: str
    question: str
    channel: str  # the ledger's: "a2a" or "nostr"
    receipt: str | None = None  # agent.receipts.carrier text, once the answer has ended

    def __call__(self) -> Iterator[str]:
        node = self.node
        conversation = node.conversation(
            title=f"{self.channel} from {self.caller}", peer=self.caller, recorded=True
        )
        answer = conversation.ask(self.question)
        sent: list[str] = []
        for piece in answer:
            sent.append(piece)
            yield piece
        rest = with_quotes_text(answer)[len(answer.text) :]
        if rest:
            sent.append(rest)
            yield rest
        if answer.generation is not None:  # "not in your data" is no model's work: no receipt
            self.receipt = self._issue(answer.generation, "".join(sent))

    def _issue(self, generation: Generation, text: str) -> str:
        keys, salt = self.node.keys, secrets.token_bytes(32)
        receipt = receipts.issue(
            keys.node_key, keys.node_did, generation, self.caller, answer=text, salt=salt
        )
        rid = receipts.keep_issued(self.node.vault, receipt, generation, salt)
        if self.caller != keys.owner_did:  # the owner asking its own node is no peer's job
            Ledger(self.node.vault).record(
                Entry(
                    peer=self.caller,
                    direction="served",
                    channel=self.channel,
                    model=self.node.local_chat_model.path.name,
                    model_sha256=generation.model_sha256,
                    prompt_tokens=len(generation.prompt_tokens),
                    completion_tokens=len(generation.output_tokens),
                    receipt_id=rid,
                )
            )
        return receipts.carrier(receipt, None)


def carried_receipt_metadata(job: Job) -> dict[str, Any] | None:
    """The A2A answer artifact's metadata for a finished data answer: its receipt, if any."""
    work = job.work
    if isinstance(work, AnswerWork) and work.receipt is not None:
        return {receipts.A2A_METADATA_KEY: work.receipt}
    return None


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
    if metadata is None and "receipt_id" in result:
        # An answer from the peer's data: what it used of its model, as its receipt signs it
        # (an infer job's usage is recorded by node.infer from the answer's metadata).
        result["ledger_id"] = await asyncio.to_thread(
            _record_used, node.vault, reply.peer_did, result["receipt_id"]
        )
    return result


def _record_used(vault: Vault, peer_did: str, rid: str) -> str:
    kept = vault.get_record(receipts.RECEIPT_KIND, rid)
    assert kept is not None  # accepted just now
    receipt = kept["receipt"]
    entry = Ledger(vault).record(
        Entry(
            peer=peer_did,
            direction="used",
            channel="a2a",
            # The peer's file name is not in its receipt; its sha256 is.
            model=f"sha256:{receipt['model']['sha256'][:12]}",
            model_sha256=receipt["model"]["sha256"],
            prompt_tokens=receipt["prompt"]["tokens"],
            completion_tokens=receipt["output"]["tokens"],
            receipt_id=rid,
        )
    )
    return entry.id
