"""Contract Net over A2A (issue 18): how a contract message travels, and where both sides keep
their conversations, sealed, and the balances those conversations give.

**On the wire.** A contract message (agent.contract_net) travels as the one text part of a
signed A2A SendMessage whose message metadata says ``"flurry.operation": "contract"``; the
part's text is the message's RFC 8785 JSON. Text and not a DataPart: a DataPart is a protobuf
Struct, which turns every integer (times, prices) into a double, and a signature over
canonical JSON would not survive the trip (receipts travel as text for the same reason). The
seller's answer (a propose or refuse to a cfp, an acknowledgement to a reject, a result or
failure to an accept) comes back the same way: the JSON text of the task's "answer" artifact.
A message the protocol refuses is an HTTP 422 problem whose ``reason`` is the refusal's code,
before any task is made. The agent card declares the extension (``EXTENSION_URI``).

**Kept.** Each side keeps each conversation it took part in as its export
(``Conversation.export``), sealed in the vault (kind ``contract``, key ``side:conversation``);
reading one back re-checks it whole (``verify_export``). **Balances** are computed from those
signed conversations and nothing else: for every conversation that ended with a result, the
accepted price is earned by the seller from the buyer and spent by the buyer at the seller.
Recomputing from the stored conversations therefore always gives the same numbers.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from agent.contract_net import ContractRefused, Conversation, parse, verify_export
from identity.jws import canonical_json
from store.vault import Vault

EXTENSION_URI = "https://flurry.dev/ext/contract-net/v1"
OPERATION_KEY = "flurry.operation"
OPERATION = "contract"
METADATA = {OPERATION_KEY: OPERATION}
RECORD_KIND = "contract"
SIDES = ("buyer", "seller")
_lock = threading.Lock()  # one conversation's load-add-save at a time on this node


def card_extension() -> dict[str, Any]:
    """The agent card's declaration of this extension."""
    return {
        "uri": EXTENSION_URI,
        "description": (
            "Contract Net (calls for proposals, signed bids, awards, results): send a "
            "flurry.contract/1 message as the RFC 8785 JSON text of one text part, with "
            'message metadata "flurry.operation": "contract"; the answer comes back as the '
            "JSON text of the task's answer artifact."
        ),
        "required": False,
    }


def encode(message: dict[str, Any]) -> str:
    return canonical_json(message).decode()


def decode(text: str) -> dict[str, Any]:
    """A message from a peer's text: bounded and strict (agent.contract_net.parse)."""
    return parse(text.encode())


def contract_text(params: dict) -> str | None:
    """The contract message text a SendMessage's params hold, or None when the message does not
    say "flurry.operation": "contract". ContractRefused when it says so but is malformed."""
    message = params.get("message") if isinstance(params, dict) else None
    metadata = message.get("metadata") if isinstance(message, dict) else None
    if not isinstance(metadata, dict) or metadata.get(OPERATION_KEY) != OPERATION:
        return None
    parts = message.get("parts") if isinstance(message, dict) else None
    if (
        not isinstance(parts, list)
        or len(parts) != 1
        or not isinstance(parts[0], dict)
        or not isinstance(parts[0].get("text"), str)
    ):
        raise ContractRefused("malformed", "a contract message is one text part")
    return parts[0]["text"]


# --- the sealed conversations -------------------------------------------------------------


def load(vault: Vault, side: str, conversation_id: str) -> Conversation | None:
    kept = vault.get_record(RECORD_KIND, f"{side}:{conversation_id}")
    return None if kept is None else verify_export(kept["export"].encode())


def save(vault: Vault, side: str, conversation: Conversation, peer: str) -> None:
    assert conversation.id is not None
    c = conversation
    live = [p["expiry"] for p in c.proposals.values() if p.id not in c.decided]
    vault.put_record(
        RECORD_KIND,
        f"{side}:{conversation.id}",
        {
            "side": side,
            "peer": peer,
            "export": conversation.export().decode(),
            "updated_at": time.time(),
            # What `prune` reads without verifying the export again: does it settle anything
            # (a result), may it still change (an award at work, a bid that still holds)?
            "state": _state(c),
            "open_until": max(live, default=0),
        },
    )


def prune(vault: Vault, side: str, peer: str, *, keep: int) -> int:
    """Drop the oldest of ``side``'s conversations with ``peer`` past ``keep`` that settle
    nothing and can change no more (refused, rejected, failed, expired); those that ended
    with a result, or are still open, stay. How many were dropped."""
    mine = [
        (key, record)
        for key, record in vault.records(RECORD_KIND)
        if record["side"] == side and record["peer"] == peer
    ]
    if len(mine) <= keep:
        return 0
    now = time.time()
    ended = sorted(
        (
            (record["updated_at"], key)
            for key, record in mine
            if record.get("state", "result") not in ("result", "awarded")
            and record.get("open_until", now) < now
        ),
    )
    dropped = 0
    for _, key in ended[: len(mine) - keep]:
        dropped += vault.delete_record(RECORD_KIND, key)
    return dropped


def _state(c: Conversation) -> str:
    outcome, award = c.outcome, c.award
    if outcome is not None:
        return outcome.performative
    return "awarded" if award is not None else "open"


def kept(vault: Vault, *, side: str | None = None, peer: str | None = None) -> list[dict[str, Any]]:
    """Every kept conversation (only ``side``'s, with ``peer``, when given), re-verified:
    {side, peer, conversation (Conversation), updated_at}. The filters read the record's own
    fields first, so a seller counting one buyer's open contracts verifies only those."""
    found = []
    for _, record in vault.records(RECORD_KIND):
        if (side is not None and record["side"] != side) or (
            peer is not None and record["peer"] != peer
        ):
            continue
        conversation = verify_export(record["export"].encode())
        found.append({**record, "conversation": conversation})
    return sorted(found, key=lambda r: r["updated_at"])


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """One kept conversation, for `flurry contracts list`."""
    c: Conversation = record["conversation"]
    first = c.messages[0]
    award = c.award
    return {
        "conversation": c.id,
        "side": record["side"],
        "peer": record["peer"],
        "task": first["task"][:200] if first.performative == "cfp" else "",
        "messages": len(c.messages),
        "seller": None if award is None else award.receiver,
        "price": None if award is None else award["price"],
        "state": _state(c),
        "late": c.late,
        "updated_at": record["updated_at"],
    }


def balances(vault: Vault) -> dict[str, dict[str, dict[str, int]]]:
    """Per peer and unit: credits earned (work done for it) and spent (work bought from it),
    recomputed from the signed conversations kept."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for record in kept(vault):
        c: Conversation = record["conversation"]
        if c.award is None or c.outcome is None or c.outcome.performative != "result":
            continue
        price = c.award["price"]
        side = record["side"]
        peer = c.award.receiver if side == "buyer" else c.award.sender
        row = out.setdefault(peer, {}).setdefault(
            price["unit"], {"earned": 0, "spent": 0, "balance": 0}
        )
        row["earned" if side == "seller" else "spent"] += price["amount"]
        row["balance"] = row["earned"] - row["spent"]
    return out


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)
