"""Which owner a peer node speaks for: a link in its agent card that the owner's key signed.

A peer is pinned by its node's DID (the DID that signs its agent card), while what its owner
publishes, a skill release above all (node.skill_publish), is signed by the owner's key. The card
carries an A2A extension with the owner's DID and a JWS by the owner's key over
``{"type": "flurry.node-owner/1", "node_did": N, "owner_did": O}``: the card's signature is the
node's half of the link and the JWS is the owner's, so a card cannot claim someone else's owner
(and so have their releases taken for the peer's own). `flurry peers add` records the owner DID
of a card that proves it, sealed in the vault (records of kind "peer-owner", keyed by the node's
DID); node.skill_install then takes a release signed by that DID as the peer's own.
"""

from __future__ import annotations

from typing import Any

from identity.did_key import verification_method_id
from identity.jws import JWSRejected, sign_json, verify_json
from identity.keyring import UnlockedKeyring
from node.peers import Peer, list_peers
from store.vault import Vault

CARD_EXTENSION_URI = "https://flurry.invalid/ext/node-owner/v1"
LINK_TYPE = "flurry.node-owner/1"
OWNER_KIND = "peer-owner"


def _statement(node_did: str, owner_did: str) -> dict[str, str]:
    return {"type": LINK_TYPE, "node_did": node_did, "owner_did": owner_did}


def card_extension(keys: UnlockedKeyring) -> dict[str, Any]:
    """The agent card's statement of this node's owner, signed by the owner's key."""
    statement = _statement(keys.node_did, keys.owner_did)
    return {
        "uri": CARD_EXTENSION_URI,
        "description": "the owner this node speaks for: a JWS by the owner's key naming this node",
        "params": {
            "owner_did": keys.owner_did,
            "proof": sign_json(statement, keys.owner_key, verification_method_id(keys.owner_did)),
        },
    }


def owner_from_card(card: object, node_did: str) -> str | None:
    """The owner DID a (verified) card of ``node_did`` proves, or None."""
    capabilities = card.get("capabilities") if isinstance(card, dict) else None
    extensions = capabilities.get("extensions") if isinstance(capabilities, dict) else None
    for extension in extensions if isinstance(extensions, list) else []:
        if not isinstance(extension, dict) or extension.get("uri") != CARD_EXTENSION_URI:
            continue
        params = extension.get("params")
        owner = params.get("owner_did") if isinstance(params, dict) else None
        proof = params.get("proof") if isinstance(params, dict) else None
        if not isinstance(owner, str) or not isinstance(proof, dict):
            return None
        try:
            signer = verify_json(_statement(node_did, owner), proof)
        except JWSRejected:
            return None
        return owner if signer == owner else None
    return None


def link_owner(vault: Vault, card: object, node_did: str) -> str | None:
    """Record the owner DID a verified card proves for ``node_did`` (dropping any older one)."""
    owner = owner_from_card(card, node_did)
    vault.delete_record(OWNER_KIND, node_did)
    if owner is not None:
        vault.put_record(OWNER_KIND, node_did, {"node_did": node_did, "owner_did": owner})
    return owner


def owner_of(vault: Vault, node_did: str) -> str | None:
    """The owner DID recorded for the pinned peer ``node_did``, if its card proved one."""
    record = vault.get_record(OWNER_KIND, node_did)
    return None if record is None else record["owner_did"]


def pinned_authors(vault: Vault) -> dict[str, Peer]:
    """Each pinned peer by the DIDs that sign for it: its node's, and its owner's when proven."""
    found: dict[str, Peer] = {}
    for peer in list_peers(vault):
        found[peer.did] = peer
        if (owner := owner_of(vault, peer.did)) is not None:
            found.setdefault(owner, peer)
    return found
