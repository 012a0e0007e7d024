"""The node's Nostr key, NIP-44 v2 encryption, and NIP-59 gift wraps of NIP-17 messages.

Also the events built on them: signing and checking one, public notes, and the proof of which
DID a Nostr key belongs to. NIP-98 (HTTP requests authorised by a Nostr event) is
``identity.nostr_http_auth``'s.

The key. A secp256k1 secret derived from the node's Ed25519 seed (HKDF-SHA256, its own
label), rather than a second random key written into the keyring: the seed is already sealed
under the passphrase, so the Nostr key is exactly as protected, homes made before Nostr
support get the same key at every unlock without the keyring being rewritten (unlock stays
read-only, and two processes unlocking an old home at once cannot create two different
keys), and a keyring backup covers it. The price is that the Nostr key turns over only with
the node key.

NIP-44 v2 is written out here on `cryptography` (secp256k1 ECDH, HKDF, ChaCha20, HMAC)
rather than taken from nostr-sdk, because nostr-sdk's binding takes a secret and a public key
and hides the conversation key, the nonce and the padding: the published vectors test those
one by one, and the node's receive path must be what the vectors test. Events (ids, BIP-340
signatures, JSON) are nostr-sdk's; the tests check both ways that nostr-sdk reads what this
module writes.

Messages are NIP-17 private direct messages: an unsigned kind-14 "rumor", sealed (kind 13,
signed by the sender, NIP-44 to the recipient), gift-wrapped (kind 1059, signed by a one-time
key, NIP-44 to the recipient). Seal and wrap carry created_at up to two days in the past
(NIP-59), so a reader must look back that far.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import secrets
import struct
import time
from dataclasses import dataclass

import nostr_sdk
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from identity.errors import IdentityError

# secp256k1's group order: a secret key is an integer in [1, N).
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_DERIVE_INFO = b"flurry: the node's Nostr secp256k1 key, from its Ed25519 seed, v1"

KIND_TEXT_NOTE = 1
KIND_SEAL = 13
KIND_PRIVATE_MESSAGE = 14
KIND_GIFT_WRAP = 1059
KIND_APP_DATA = 30078  # NIP-78, for the key's statement of which DID it belongs to
TWEAK_SECONDS = 2 * 24 * 3600  # NIP-59: seal and wrap times lie up to two days in the past

# NIP-32 labels on every rumor the node writes: made by an agent, on its owner's behalf.
LABEL_NAMESPACE = "flurry"
AGENT_MADE = "agent-made"

_SALT = b"nip44-v2"
_VERSION = 2
_MIN_PLAINTEXT, _MAX_PLAINTEXT = 1, 65535
_MIN_PAYLOAD, _MAX_PAYLOAD = 132, 87472  # base64 characters
_MIN_DATA, _MAX_DATA = 99, 65603  # decoded bytes
PROOF_TAG = "flurry:node-did"


class Nip44Error(IdentityError, ValueError):
    """A NIP-44 payload, key or message that the spec says to refuse; the message says why."""


class GiftWrapRejected(IdentityError, ValueError):
    """An incoming gift wrap the node will not read; the message says why."""


# --- keys ---------------------------------------------------------------------------------


def secret_from_node_seed(seed: bytes) -> bytes:
    """The node's Nostr secret key (32 bytes) for its Ed25519 seed."""
    for counter in range(256):  # a derived value outside [1, N) has odds of 2^-128; try the next
        candidate = HKDF(hashes.SHA256(), 32, salt=bytes([counter]), info=_DERIVE_INFO).derive(seed)
        if 0 < int.from_bytes(candidate, "big") < N:
            return candidate
    raise AssertionError("unreachable")


# The node's own key, reused for every message it opens: one scalar multiplication.
@functools.lru_cache(maxsize=16)
def _private_key(secret: bytes) -> ec.EllipticCurvePrivateKey:
    if len(secret) != 32:
        raise Nip44Error(f"a secp256k1 secret key is 32 bytes, not {len(secret)}")
    d = int.from_bytes(secret, "big")
    if not 0 < d < N:
        raise Nip44Error("the secret key is outside secp256k1's range (it must be 1 ≤ key < n)")
    return ec.derive_private_key(d, ec.SECP256K1())


def public_key_of(secret: bytes) -> bytes:
    """The x-only (BIP-340) public key of a secret key."""
    return _private_key(secret).public_key().public_numbers().x.to_bytes(32, "big")


def _public_key(xonly: bytes) -> ec.EllipticCurvePublicKey:
    if len(xonly) != 32:
        raise Nip44Error(f"a Nostr public key is 32 bytes (x-only), not {len(xonly)}")
    try:  # BIP-340 lift_x: the point with this x and an even y, if there is one
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), b"\x02" + xonly)
    except ValueError:
        raise Nip44Error(
            f"{xonly.hex()} is not a point on secp256k1, so it is not a Nostr public key"
        ) from None


def parse_public_key(text: str) -> bytes:
    """32 bytes from a hex key, an npub or a nostr:npub URI; ValueError with a clear message."""
    text = text.strip().removeprefix("nostr:")
    try:
        key = bytes.fromhex(nostr_sdk.PublicKey.parse(text).to_hex())
    except nostr_sdk.NostrSdkError:
        raise ValueError(f"{text!r} is not a Nostr public key (64 hex digits or npub1…)") from None
    _public_key(key)
    return key


@dataclass(frozen=True)
class NostrKey:
    """The node's Nostr identity. repr never shows the secret."""

    secret: bytes

    def __repr__(self) -> str:
        return f"NostrKey({self.npub})"

    @classmethod
    def from_node_seed(cls, seed: bytes) -> NostrKey:
        return cls(secret_from_node_seed(seed))

    @property
    def public_key(self) -> bytes:
        return public_key_of(self.secret)

    @property
    def public_key_hex(self) -> str:
        return self.public_key.hex()

    @property
    def npub(self) -> str:
        npub: str = nostr_sdk.PublicKey.parse(
            self.public_key_hex
        ).to_bech32()  # nostr_sdk is untyped
        return npub

    @property
    def uri(self) -> str:
        """NIP-21: "nostr:npub1…", the form a DID document's alsoKnownAs carries."""
        return "nostr:" + self.npub

    def sdk_keys(self) -> nostr_sdk.Keys:
        return nostr_sdk.Keys(nostr_sdk.SecretKey.from_bytes(self.secret))


# --- NIP-44 v2 ------------------------------------------------------------------------------


def conversation_key(secret: bytes, public_key: bytes) -> bytes:
    """HKDF-extract(salt "nip44-v2", the unhashed x of the ECDH point): the same both ways."""
    return _conversation_key(_private_key(secret), public_key)


def _conversation_key(private_key: ec.EllipticCurvePrivateKey, public_key: bytes) -> bytes:
    shared_x = private_key.exchange(ec.ECDH(), _public_key(public_key))
    return hmac.new(_SALT, shared_x, hashlib.sha256).digest()


def message_keys(conversation: bytes, nonce: bytes) -> tuple[bytes, bytes, bytes]:
    """(ChaCha20 key, ChaCha20 nonce, HMAC key) for one message."""
    if len(conversation) != 32 or len(nonce) != 32:
        raise Nip44Error("the conversation key and the nonce must each be 32 bytes")
    keys = HKDFExpand(hashes.SHA256(), 76, info=nonce).derive(conversation)
    return keys[:32], keys[32:44], keys[44:]


def padded_length(length: int) -> int:
    if length <= 32:
        return 32
    next_power = 1 << (length - 1).bit_length()
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((length - 1) // chunk + 1)


def _chacha20(key: bytes, nonce: bytes, data: bytes) -> bytes:
    # cryptography's ChaCha20 takes a 16-byte nonce: the 32-bit block counter (0), then RFC 8439's 96 bits.
    return Cipher(algorithms.ChaCha20(key, b"\x00" * 4 + nonce), mode=None).encryptor().update(data)


def _mac(key: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    return hmac.new(key, nonce + ciphertext, hashlib.sha256).digest()


def encrypt(conversation: bytes, plaintext: str, nonce: bytes | None = None) -> str:
    """The NIP-44 v2 payload (base64) of ``plaintext``; ``nonce`` only for test vectors."""
    raw = plaintext.encode("utf-8")
    if not _MIN_PLAINTEXT <= len(raw) <= _MAX_PLAINTEXT:
        raise Nip44Error(f"a NIP-44 message is 1 to 65535 bytes of UTF-8, this one is {len(raw)}")
    nonce = os.urandom(32) if nonce is None else nonce
    chacha_key, chacha_nonce, hmac_key = message_keys(conversation, nonce)
    padded = struct.pack(">H", len(raw)) + raw + bytes(padded_length(len(raw)) - len(raw))
    ciphertext = _chacha20(chacha_key, chacha_nonce, padded)
    return base64.b64encode(
        bytes([_VERSION]) + nonce + ciphertext + _mac(hmac_key, nonce, ciphertext)
    ).decode()


def decrypt(conversation: bytes, payload: str) -> str:
    """The plaintext of a NIP-44 v2 payload; Nip44Error for anything the spec refuses."""
    if not isinstance(payload, str) or not payload:
        raise Nip44Error("the payload is empty")
    if payload[0] == "#":
        raise Nip44Error("unknown encryption version (the payload starts with '#')")
    if not _MIN_PAYLOAD <= len(payload) <= _MAX_PAYLOAD:
        raise Nip44Error(
            f"invalid payload length {len(payload)} (NIP-44 v2 payloads are 132 to 87472 characters)"
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except ValueError:
        raise Nip44Error("the payload is not valid base64") from None
    if not _MIN_DATA <= len(data) <= _MAX_DATA:
        raise Nip44Error(f"invalid data length {len(data)} (NIP-44 v2 holds 99 to 65603 bytes)")
    if data[0] != _VERSION:
        raise Nip44Error(f"unknown encryption version {data[0]}; this node reads version 2")
    nonce, ciphertext, mac = data[1:33], data[33:-32], data[-32:]
    chacha_key, chacha_nonce, hmac_key = message_keys(conversation, nonce)
    if not hmac.compare_digest(_mac(hmac_key, nonce, ciphertext), mac):
        raise Nip44Error("invalid MAC: the payload was altered, or it is encrypted to another key")
    padded = _chacha20(chacha_key, chacha_nonce, ciphertext)
    (length,) = struct.unpack(">H", padded[:2])
    if not length or len(padded) != 2 + padded_length(length):
        raise Nip44Error("invalid padding")
    try:
        return padded[2 : 2 + length].decode("utf-8")
    except UnicodeDecodeError:
        raise Nip44Error("the message is not UTF-8") from None


def open_payload(receiver_secret: bytes, sender_public: bytes, payload: str) -> str:
    """Decrypt a payload sent to ``receiver_secret`` by ``sender_public``: what unwrap does to
    the gift wrap and then to the seal, so the NIP-44 vectors test the receive path itself."""
    return decrypt(conversation_key(receiver_secret, sender_public), payload)


# --- NIP-17 messages in NIP-59 gift wraps -------------------------------------------------------


@dataclass(frozen=True)
class PrivateMessage:
    """A message read out of a gift wrap, its sender checked against the seal's signature."""

    wrap_id: str  # the gift wrap's event id (hex): what relays resend, what is deduplicated
    rumor_id: str  # the message's own id: what a reply's "e" tag names
    sender: str  # the seal's author (hex), who signed it
    text: str
    created_at: int  # the rumor's (the sender's clock, not tweaked)
    tags: list[list[str]]

    @property
    def reply_to(self) -> str | None:
        """The id of the message this one answers ("e" tag), if any."""
        return next((t[1] for t in self.tags if len(t) >= 2 and t[0] == "e"), None)

    @property
    def agent_made(self) -> bool:
        return any(t[:3] == ["l", AGENT_MADE, LABEL_NAMESPACE] for t in self.tags)


def _tweaked_now() -> nostr_sdk.Timestamp:
    return nostr_sdk.Timestamp.from_secs(int(time.time()) - secrets.randbelow(TWEAK_SECONDS))


def sign_event(
    keys: nostr_sdk.Keys,
    kind: int,
    content: str,
    tags: list[list[str]],
    created_at: nostr_sdk.Timestamp,
) -> nostr_sdk.Event:
    """An event of ``kind`` with ``content`` and ``tags``, dated ``created_at``, signed by ``keys``."""
    builder = nostr_sdk.EventBuilder(nostr_sdk.Kind(kind), content).tags(
        [nostr_sdk.Tag.parse(t) for t in tags]
    )
    return builder.custom_created_at(created_at).finalize(keys)


def public_note(sender: NostrKey, text: str, *, owner_did: str | None = None) -> nostr_sdk.Event:
    """A public text note (NIP-01 kind 1) signed by ``sender``, labelled agent-made (NIP-32)."""
    if not text.strip():
        raise ValueError("the note is empty")
    tags = [
        ["L", LABEL_NAMESPACE],
        ["l", AGENT_MADE, LABEL_NAMESPACE],
        *([["on-behalf-of", owner_did]] if owner_did else []),
    ]
    return sign_event(sender.sdk_keys(), KIND_TEXT_NOTE, text, tags, nostr_sdk.Timestamp.now())


def rumor_json(
    sender: NostrKey,
    recipient: bytes,
    text: str,
    *,
    reply_to: str | None = None,
    owner_did: str | None = None,
    extra_tags: list[list[str]] | None = None,
) -> str:
    """The unsigned kind-14 message, labelled agent-made (NIP-32) on ``owner_did``'s behalf;
    ``extra_tags`` ride inside the seal with it (e.g. an answer's receipt)."""
    tags = [["p", recipient.hex()], ["L", LABEL_NAMESPACE], ["l", AGENT_MADE, LABEL_NAMESPACE]]
    if owner_did:
        tags.append(["on-behalf-of", owner_did])
    if reply_to:
        tags.append(["e", reply_to])
    tags += extra_tags or []
    rumor = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(KIND_PRIVATE_MESSAGE), text)
        .tags([nostr_sdk.Tag.parse(t) for t in tags])
        .finalize_unsigned(nostr_sdk.PublicKey.parse(sender.public_key_hex))
        .ensure_id()
    )
    rumor_json: str = rumor.as_json()
    return rumor_json


def gift_wrap(sender: NostrKey, recipient: bytes, rumor: str) -> nostr_sdk.Event:
    """Seal ``rumor`` (signed by ``sender``) and wrap it (signed by a one-time key) for ``recipient``."""
    _public_key(recipient)
    seal = sign_event(
        sender.sdk_keys(),
        KIND_SEAL,
        encrypt(conversation_key(sender.secret, recipient), rumor),
        [],
        _tweaked_now(),
    )
    # The one-time key stays out of _private_key's cache: nothing should keep it after this call.
    one_time = nostr_sdk.Keys.generate()
    one_time_key = ec.derive_private_key(int(one_time.secret_key().to_hex(), 16), ec.SECP256K1())
    content = encrypt(_conversation_key(one_time_key, recipient), seal.as_json())
    return sign_event(one_time, KIND_GIFT_WRAP, content, [["p", recipient.hex()]], _tweaked_now())


def unwrap(receiver: NostrKey, wrap_json: str) -> PrivateMessage:
    """Open a gift wrap addressed to ``receiver``: the node's one receive path.

    Refuses (GiftWrapRejected) a wrap for someone else, a bad signature on wrap or seal, a
    payload that does not decrypt, and a rumor whose pubkey is not the seal's signer (NIP-17:
    otherwise anyone could put words in another's mouth inside their own seal).
    """
    wrap = verified_event(wrap_json, "gift wrap")
    if wrap.kind().as_u16() != KIND_GIFT_WRAP:
        raise GiftWrapRejected(
            f"event {wrap.id().to_hex()} is kind {wrap.kind().as_u16()}, not a gift wrap (1059)"
        )
    recipients = [
        t.to_vec()[1] for t in wrap.tags() if t.to_vec()[:1] == ["p"] and len(t.to_vec()) > 1
    ]
    if receiver.public_key_hex not in recipients:
        raise GiftWrapRejected(f"gift wrap {wrap.id().to_hex()} is addressed to someone else")
    try:
        seal_json = open_payload(
            receiver.secret, bytes.fromhex(wrap.author().to_hex()), wrap.content()
        )
    except Nip44Error as e:
        raise GiftWrapRejected(f"gift wrap {wrap.id().to_hex()} does not open: {e}") from None
    seal = verified_event(seal_json, "seal")
    if seal.kind().as_u16() != KIND_SEAL:
        raise GiftWrapRejected(
            f"the gift wrap holds a kind {seal.kind().as_u16()} event, not a seal (13)"
        )
    sender = seal.author().to_hex()
    try:
        rumor = json.loads(open_payload(receiver.secret, bytes.fromhex(sender), seal.content()))
    except Nip44Error as e:
        raise GiftWrapRejected(
            f"the seal in gift wrap {wrap.id().to_hex()} does not open: {e}"
        ) from None
    except ValueError:
        raise GiftWrapRejected("the sealed message is not JSON") from None
    try:
        pubkey, kind, text, tags, created_at = (
            rumor[k] for k in ("pubkey", "kind", "content", "tags", "created_at")
        )
        tags = [[str(x) for x in tag] for tag in tags]
        rumor_id = nostr_sdk.UnsignedEvent.from_json(json.dumps(rumor)).ensure_id().id().to_hex()
    # a missing field, a wrong type, nostr-sdk's refusal
    except (KeyError, TypeError, nostr_sdk.NostrSdkError):
        raise GiftWrapRejected(
            "the sealed message is not a Nostr event (pubkey, kind, content, tags, created_at)"
        ) from None
    if pubkey != sender:
        raise GiftWrapRejected(
            f"the message claims to be from {pubkey} but its seal was signed by {sender}: refused as forged"
        )
    if kind != KIND_PRIVATE_MESSAGE or not isinstance(text, str) or not isinstance(created_at, int):
        raise GiftWrapRejected(
            f"the sealed event is kind {kind}; this node reads private messages (kind 14)"
        )
    return PrivateMessage(wrap.id().to_hex(), rumor_id, sender, text, created_at, tags)


def verified_event(text: str, what: str) -> nostr_sdk.Event:
    """The event in ``text`` if its id and signature verify; GiftWrapRejected naming ``what``."""
    try:
        event = nostr_sdk.Event.from_json(text)
    except nostr_sdk.NostrSdkError:
        raise GiftWrapRejected(f"the {what} is not a Nostr event") from None
    if not event.verify():
        raise GiftWrapRejected(f"the {what}'s id or signature does not verify")
    return event


# --- which DID a Nostr key belongs to -----------------------------------------------------------


def identity_proof(key: NostrKey, did: str) -> str:
    """A signed (never published) NIP-78 event by ``key`` that names ``did``: the Nostr half of the link.

    The node's agent card, signed by its DID, carries it, so each key vouches for the other:
    a card cannot claim someone else's Nostr key and so borrow their messages.
    """
    proof: str = sign_event(
        key.sdk_keys(), KIND_APP_DATA, did, [["d", PROOF_TAG]], nostr_sdk.Timestamp.now()
    ).as_json()
    return proof


def verify_identity_proof(proof: str, did: str) -> str:
    """The Nostr public key (hex) that signed ``proof`` naming ``did``; ValueError otherwise."""
    try:
        event = verified_event(proof, "Nostr key proof")
    except GiftWrapRejected as e:
        raise ValueError(str(e)) from None
    tags = [t.to_vec() for t in event.tags()]
    if (
        event.kind().as_u16() != KIND_APP_DATA
        or ["d", PROOF_TAG] not in tags
        or event.content() != did
    ):
        raise ValueError(f"the Nostr key proof does not name {did}")
    author: str = event.author().to_hex()
    return author
