"""Key rotation at the node: rotating this node's keys, telling its peers, following theirs.

This node's side (`flurry keys rotate`): the keyring replaces the owner and node keys and
keeps the signed statement that says so (identity.keyring.Keyring.rotate, identity.rotation);
the audit log records each rotation (`record_rotations`, run at every open, so a kill between
the keyring's write and the audit entry is caught up the next time); the chain is served
(node.http.rotation, the DID document, the WebID profile, the agent card) and pushed to every
pinned peer (`announce`), signed with the new node key.

A peer's side (`follow`): a chain that verifies, whose latest DID is the one that signed the
request (or the agent card) carrying it, moves this node's pins, grants and Nostr key links
from every DID the chain retired to its successor, and remembers the retired DIDs, so that an
older statement replayed later (or a second, conflicting successor of the same DID) is
refused. Nothing about a peer changes on a chain that does not verify or is not current.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from typing import Any

import httpx

from agent.audit import AuditLog
from agent.grants import Grants
from identity.did_key import verification_method_id
from identity.jws import canonical_json
from identity.keyring import Keyring, UnlockedKeyring
from identity.recovery_code import RecoveryCode
from identity.rotation import Chain, chain_document
from identity.signing_client import async_signed_client
from node.errors import NodeError
from node.home import Home, HomeError, HomeLock
from node.nostr_peers import PEER_KEY_KIND
from node.peers import add_peer, list_peers
from store.vault import Vault

CHAIN_PATH = "/.well-known/flurry-rotations"  # public, read-only: this node's chain
PUSH_PATH = "/api/peer/rotations"  # signed: a peer's chain, pushed to this node
# The A2A extension in the agent card that carries the chain, for peers that fetch the card.
CARD_EXTENSION_URI = "https://flurry.invalid/ext/key-rotation/v1"
RETIRED_KIND = "rotated-did"  # vault records: a peer's retired DID → {"successor", "at"}
AUDITED_SETTING = "rotations_audited"  # how many of this node's rotations the audit log holds


class RotationRefused(NodeError):
    """A peer's rotation chain verifies but cannot be followed here; the message says why."""


# --- this node's rotation --------------------------------------------------------------------


def rotate_home(
    home: Home, passphrase: str, recovery_code: RecoveryCode | None = None
) -> UnlockedKeyring:
    """Rotate the keys of a home that no process has open; the new keys, with their statement.
    A keyring with a recovery code needs ``recovery_code``, a new one (Keyring.rotate says why)."""
    home.require()
    if (url := home.running_node()) is not None:
        raise HomeError(
            f"flurry serve runs this home at {url} and holds its keys in memory; "
            "stop it, rotate, then start it again"
        )
    lock = HomeLock(home)  # nobody opens the home on the old keys while they change
    lock.acquire()
    try:
        return Keyring.rotate(home.keyring, passphrase, recovery_code)
    finally:
        lock.release()


def previous_node_dids(keys: UnlockedKeyring) -> list[str]:
    """This node's node DIDs before its rotations, oldest first (its audit log's earlier signers)."""
    return [statement["previous"]["node"] for statement in keys.rotations]


def statement_hash(statement: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(statement)).hexdigest()


def record_rotations(vault: Vault, audit: AuditLog, keys: UnlockedKeyring) -> int:
    """Put every rotation of this node's keys that the audit log lacks in it; how many were added.

    Run whenever the node opens: the keyring's atomic write is what makes a rotation happen, so
    the audit entry follows it, and a crash in between is made good here. The entry is signed
    by the new node key, the statement (by the old keys and the new) is named by its hash."""
    done = vault.get_setting(AUDITED_SETTING)
    done = done if isinstance(done, int) else 0
    for number, statement in enumerate(keys.rotations[done:], start=done + 1):
        audit.append(
            "keys.rotate",
            target=statement["next"]["owner"],
            details={
                "rotation": number,
                "issued": statement["issued"],
                "previous": dict(statement["previous"]),
                "next": {"owner": statement["next"]["owner"], "node": statement["next"]["node"]},
                "statement": statement_hash(statement),
            },
        )
        vault.set_setting(AUDITED_SETTING, number)
    return max(len(keys.rotations) - done, 0)


def card_extension(keys: UnlockedKeyring) -> dict[str, Any] | None:
    """The agent card's extension carrying this node's rotation chain (None before any rotation)."""
    if not keys.rotations:
        return None
    return {
        "uri": CARD_EXTENSION_URI,
        "description": (
            "this node's key rotations, oldest first: each statement is signed by the keys it "
            f"retired and the keys it names; also at {CHAIN_PATH}"
        ),
        "params": {"rotations": list(keys.rotations)},
    }


def card_rotations(card: object) -> list[Any] | None:
    """The rotation statements a (verified) agent card carries, unverified; None without any."""
    capabilities = card.get("capabilities") if isinstance(card, dict) else None
    extensions = capabilities.get("extensions") if isinstance(capabilities, dict) else None
    for extension in extensions if isinstance(extensions, list) else []:
        if isinstance(extension, dict) and extension.get("uri") == CARD_EXTENSION_URI:
            params = extension.get("params")
            rotations = params.get("rotations") if isinstance(params, dict) else None
            return rotations if isinstance(rotations, list) else None
    return None


async def announce(
    keys: UnlockedKeyring, vault: Vault, audit: AuditLog, *, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Push this node's chain to every pinned peer, signed with the (new) node key; one result
    per peer ({"peer", "url", "ok", "detail"}), each also in the audit log. A peer that is down
    learns the new DID later, from the agent card, the next time it sends to this node."""
    if not keys.rotations:
        return []
    body = canonical_json(chain_document(keys.rotations))
    results: list[dict[str, Any]] = []
    async with async_signed_client(
        keys.node_key,
        verification_method_id(keys.node_did),
        keys.owner_did,
        timeout=httpx.Timeout(timeout, connect=5),
    ) as http:
        for peer in list_peers(vault):
            try:
                response = await http.post(
                    peer.url + PUSH_PATH,
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                ok = response.status_code == 200
                detail = _detail(response)
            except httpx.HTTPError as error:
                ok, detail = False, f"cannot reach it: {error}"
            result = {"peer": peer.label, "url": peer.url, "ok": ok, "detail": detail}
            audit.append("keys.announce", target=peer.url, details={**result, "did": peer.did})
            results.append(result)
    return results


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if response.status_code == 200 and isinstance(data, dict):
        moved = data.get("moved") or {}
        return f"follows the new keys ({len(moved)} DIDs moved)" if moved else "already current"
    detail = data.get("detail") if isinstance(data, dict) else None
    return f"refused (HTTP {response.status_code}): {detail or response.reason_phrase}"


# --- following a peer's rotation ---------------------------------------------------------------


def follow(vault: Vault, grants: Grants, chain: Chain, *, signer: str) -> dict[str, str]:
    """Move what this node keeps under the DIDs ``chain`` retired to their successors.

    ``signer`` is the DID that signed what carried the chain (the request, the agent card):
    it must be the chain's latest node or owner DID, which proves the caller holds the new key
    now. Returns {retired DID: successor} for what moved ({} when this node already follows
    the latest keys); raises RotationRefused, with nothing changed, when the chain is not
    current, conflicts with one this node followed, or names no DID this node knows."""
    if signer not in (chain.node, chain.owner):
        raise RotationRefused(
            f"the rotation chain leads to {chain.node}, but {signer} signed the request"
        )
    for latest in (chain.node, chain.owner):
        retired = vault.get_record(RETIRED_KIND, latest)
        if retired is not None:
            raise RotationRefused(
                f"{latest} was already rotated to {retired['successor']}: "
                "this rotation chain is out of date"
            )
    lineage = set(chain.retired()) | {chain.node, chain.owner}
    for did in chain.retired():
        retired = vault.get_record(RETIRED_KIND, did)
        # A chain followed before may have grown since; one that left it is another lineage.
        if retired is not None and retired["successor"] not in lineage:
            raise RotationRefused(
                f"{did} was already rotated to {retired['successor']}, not to "
                f"{chain.successor(did)}: a conflicting rotation, not followed"
            )
    known = _known_dids(vault, grants)
    moves = {
        did: successor
        for did in chain.retired()
        if did in known and (successor := chain.successor(did))
    }
    if not moves:
        if chain.node in known or chain.owner in known:
            return {}  # pushed again, or learnt already from the card: nothing to move
        raise RotationRefused(
            "the rotation chain retires no DID this node knows (no pinned peer or grant)"
        )
    for old, new in moves.items():
        _move(vault, grants, old, new, nostr=chain.nostr if new == chain.node else None)
    # Written last: a crash before this leaves the chain acceptable again, to finish the moves.
    now = time.time()
    for did in chain.retired():
        vault.put_record(RETIRED_KIND, did, {"successor": chain.successor(did), "at": now})
    return moves


def _known_dids(vault: Vault, grants: Grants) -> set[str]:
    return {peer.did for peer in list_peers(vault)} | {grant.did for grant in grants.list()}


def _move(vault: Vault, grants: Grants, old: str, new: str, *, nostr: str | None) -> None:
    for peer in list_peers(vault):
        if peer.did == old:
            add_peer(vault, peer.url, new, peer.name)  # replaces the old pin (same name and URL)
    grant = grants.get(old)
    if grant is not None:
        if grants.get(new) is None:  # a grant the owner already gave the new DID stays as it is
            grants.add(replace(grant, did=new))
        grants.remove(old)
    # The old Nostr key came from the retired node seed; the chain proved the new one.
    linked = [key for key, value in vault.records(PEER_KEY_KIND) if value["did"] == old]
    for key in linked:
        vault.delete_record(PEER_KEY_KIND, key)
    if linked and nostr is not None:
        vault.put_record(PEER_KEY_KIND, nostr, {"did": new, "pubkey": nostr})
