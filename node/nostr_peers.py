"""Which Nostr key belongs to which peer: the link a flurry node states in its agent card.

A node's signed agent card carries an A2A extension naming its Nostr public key, together
with a Nostr event signed by that key that names the node's DID. The card's JWS is the DID's
half of the link and the event is the key's half, so a card cannot claim someone else's Nostr
key (and so have their messages taken as its own). `flurry peers add` records the key of a
card that proves it, sealed in the vault (records of kind "nostr-peer", keyed by the key).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from identity.errors import SignatureRejected
from identity.keyring import UnlockedKeyring
from identity.nostr_http_auth import HTTP_AUTH_WINDOW, verify_http_auth
from identity.nostr_key import identity_proof, verify_identity_proof
from identity.replay_cache import ReplayCache
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
        for key, value in vault.records(
            PEER_KEY_KIND
        ):  # one key per DID: a re-added peer may have a new one
            if value["did"] == did:
                vault.delete_record(PEER_KEY_KIND, key)
        vault.put_record(PEER_KEY_KIND, pubkey, {"did": did, "pubkey": pubkey})
        return pubkey
    return None


def peer_did_for(vault: Vault, pubkey: str) -> str | None:
    record = vault.get_record(PEER_KEY_KIND, pubkey)
    return None if record is None else record["did"]


def peer_key_for(vault: Vault, did: str) -> str | None:
    return next(
        (value["pubkey"] for _, value in vault.records(PEER_KEY_KIND) if value["did"] == did), None
    )


def is_nostr_http_auth(headers: Mapping[str, str]) -> bool:
    return headers.get("authorization", "").startswith("Nostr ")


def nostr_http_caller(
    vault: Vault,
    replay_cache: ReplayCache,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
) -> str:
    """The DID of a NIP-98 request: the pinned peer whose Nostr key signed it. The second way
    into the API beside RFC 9421; the same grants apply, and the owner's DID is never reached
    this way (its key is not a Nostr key)."""
    event = verify_http_auth(headers["authorization"], method, url, body)
    pubkey = event.author().to_hex()
    did = peer_did_for(vault, pubkey)
    if did is None:
        raise SignatureRejected(
            "unsupported_keyid", "NIP-98: this Nostr key belongs to no pinned peer of this node"
        )
    now = time.time()
    replay_cache.remember(
        "nostr:" + pubkey, event.id().to_hex(), until=now + 2 * HTTP_AUTH_WINDOW, now=now
    )
    return did
