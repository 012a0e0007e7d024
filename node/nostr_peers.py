"""Which Nostr key belongs to which peer: the link a flurry node states in its agent card.

A node's signed agent card carries an A2A extension naming its Nostr public key, together
with a Nostr event signed by that key that names the node's DID. The card's JWS is the DID's
half of the link and the event is the key's half, so a card cannot claim someone else's Nostr
key (and so have their messages taken as its own). `flurry peers add` records the key of a
card that proves it, sealed in the vault (records of kind "nostr-peer", keyed by the key).
"""

from __future__ import annotations

import logging

from identity.keyring import UnlockedKeyring
from identity.nostr_key import identity_proof, verify_identity_proof
from store.vault import Vault

PEER_KEY_KIND = "nostr-peer"
# The A2A extension in a flurry node's agent card that names its Nostr key (NIP-17 messages).
CARD_EXTENSION_URI = "https://github.com/nostr-protocol/nips/blob/master/17.md"
_log = logging.getLogger(__name__)


def card_extension(keys: UnlockedKeyring) -> dict:
    """The agent card's statement of the node's Nostr key, with the key's own signature naming
    the node's DID (the card's JWS is the DID's half of the link)."""
    key = keys.nostr_key
    return {
        "uri": CARD_EXTENSION_URI,
        "description": "private messages: NIP-17 in NIP-59 gift wraps, to this Nostr key",
        "params": {"pubkey": key.public_key_hex, "proof": identity_proof(key, keys.node_did)},
    }


def link_peer_from_card(vault: Vault, card: dict, did: str) -> str | None:
    """Record the Nostr key a verified card names for ``did``, if its proof holds; returns it."""
    capabilities = card.get("capabilities") if isinstance(card, dict) else None
    extensions = capabilities.get("extensions", []) if isinstance(capabilities, dict) else []
    for extension in extensions if isinstance(extensions, list) else []:
        if not isinstance(extension, dict) or extension.get("uri") != CARD_EXTENSION_URI:
            continue
        params = extension.get("params") or {}
        try:
            pubkey = verify_identity_proof(str(params.get("proof", "")), did)
        except ValueError as e:
            _log.warning("the card of %s names a Nostr key without a valid proof: %s", did, e)
            return None
        if pubkey != params.get("pubkey"):
            return None
        for key, value in vault.records(PEER_KEY_KIND):  # one key per DID: a re-added peer may have a new one
            if value["did"] == did:
                vault.delete_record(PEER_KEY_KIND, key)
        vault.put_record(PEER_KEY_KIND, pubkey, {"did": did, "pubkey": pubkey})
        return pubkey
    return None


def peer_did_for(vault: Vault, pubkey: str) -> str | None:
    record = vault.get_record(PEER_KEY_KIND, pubkey)
    return None if record is None else record["did"]


def peer_key_for(vault: Vault, did: str) -> str | None:
    return next((value["pubkey"] for _, value in vault.records(PEER_KEY_KIND) if value["did"] == did), None)
