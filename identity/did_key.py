"""did:key for Ed25519 keys: the DID string, its parsing, and its DID document.

A did:key is its own public key: "did:key:" + multibase base58btc ('z') of the multicodec
prefix for the key type followed by the raw key. Ed25519 keys read "did:key:z6Mk…"; the
X25519 key-agreement key derived from them reads "z6LS…". The document shape follows the
w3c-ccg/did-method-key test vectors (Ed25519VerificationKey2018 + X25519KeyAgreementKey2019).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import base58

from identity.errors import IdentityError

DID_KEY_PREFIX = "did:key:"
BASE58BTC_MULTIBASE = "z"
# Multicodec codes as unsigned varints: ed25519-pub is 0xed, x25519-pub is 0xec.
ED25519_PUB_MULTICODEC = b"\xed\x01"
X25519_PUB_MULTICODEC = b"\xec\x01"
KEY_LENGTH = 32

DID_CONTEXTS = [
    "https://www.w3.org/ns/did/v1",
    "https://w3id.org/security/suites/ed25519-2018/v1",
    "https://w3id.org/security/suites/x25519-2019/v1",
]
# The did:key method's other publicKeyFormat: both keys as JWKs (RFC 8037 OKP keys).
JWK_DID_CONTEXTS = ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/suites/jws-2020/v1"]

# Curve25519's field prime, shared by Ed25519 and X25519.
_P = 2**255 - 19
# An Ed25519 did:key is 56 characters; anything far longer is not one. Checking before
# decoding matters because base58 decoding is quadratic and DIDs arrive from strangers
# (a signature's keyid).
_MAX_DID_LENGTH = 256


class InvalidDID(IdentityError, ValueError):
    """The string is not an Ed25519 did:key (or a DID URL of one)."""


def _fingerprint(multicodec: bytes, key: bytes) -> str:
    return BASE58BTC_MULTIBASE + base58.b58encode(multicodec + key).decode("ascii")


def _require_key_length(key: bytes, what: str) -> None:
    if len(key) != KEY_LENGTH:
        raise ValueError(f"{what} must be {KEY_LENGTH} bytes, got {len(key)}")


def did_key_from_ed25519_public(public_key: bytes) -> str:
    """The did:key ("did:key:z6Mk…") of a raw 32-byte Ed25519 public key."""
    _require_key_length(public_key, "an Ed25519 public key")
    return DID_KEY_PREFIX + _fingerprint(ED25519_PUB_MULTICODEC, public_key)


def x25519_fingerprint(x25519_public: bytes) -> str:
    """The multibase fingerprint ("z6LS…") of a raw 32-byte X25519 public key."""
    _require_key_length(x25519_public, "an X25519 public key")
    return _fingerprint(X25519_PUB_MULTICODEC, x25519_public)


def _parse(did: str) -> tuple[str, bytes]:
    """Split a did:key or DID URL into (bare DID, Ed25519 public key), or raise InvalidDID."""
    if not isinstance(did, str):
        raise InvalidDID(f"a DID must be a string, got {type(did).__name__}")
    if len(did) > _MAX_DID_LENGTH:
        raise InvalidDID(f"not an Ed25519 did:key: {len(did)} characters is far too long")
    bare, has_fragment, fragment = did.partition("#")
    scheme, _, rest = bare.partition(":")
    method = rest.partition(":")[0]
    if scheme != "did" or not method:
        raise InvalidDID(f"{did!r} is not a DID; expected 'did:key:z6Mk…'")
    if method != "key":
        raise InvalidDID(f"{did!r} uses the did:{method} method; only did:key is understood here")
    multibase = bare[len(DID_KEY_PREFIX) :]
    if not multibase.startswith(BASE58BTC_MULTIBASE):
        raise InvalidDID(f"{did!r}: the key must be multibase base58btc, starting 'did:key:z'")
    try:
        decoded = base58.b58decode(multibase[1:])
    except ValueError:
        raise InvalidDID(f"{did!r}: the key is not valid base58btc") from None
    # The base58 library forgives trailing whitespace; a DID that is compared as a string
    # (grants, audit entries) must have exactly one spelling.
    if _fingerprint(b"", decoded) != multibase:
        raise InvalidDID(f"{did!r}: the key is not canonical base58btc")
    multicodec, public_key = decoded[:2], decoded[2:]
    if multicodec == X25519_PUB_MULTICODEC:
        raise InvalidDID(
            f"{did!r} is an X25519 (z6LS…) key, which cannot sign; need Ed25519 (z6Mk…)"
        )
    if multicodec != ED25519_PUB_MULTICODEC:
        raise InvalidDID(f"{did!r} is not an Ed25519 did:key (multicodec 0xed01, 'did:key:z6Mk…')")
    if len(public_key) != KEY_LENGTH:
        raise InvalidDID(f"{did!r}: an Ed25519 key is {KEY_LENGTH} bytes, not {len(public_key)}")
    # A did:key's only signing method is "#<its own fingerprint>". Accepting any other
    # fragment would let a keyid name, say, the key-agreement key and still verify.
    if has_fragment and fragment != multibase:
        raise InvalidDID(f"{did!r}: the fragment must be the key's own fingerprint, '#{multibase}'")
    return bare, public_key


def ed25519_public_from_did_key(did: str) -> bytes:
    """The raw Ed25519 public key in a did:key or in its verification method's DID URL."""
    return _parse(did)[1]


def _signing_method_id(bare_did: str) -> str:
    return f"{bare_did}#{bare_did[len(DID_KEY_PREFIX) :]}"


def verification_method_id(did: str) -> str:
    """The DID URL of the signing key, "did:key:z6Mk…#z6Mk…": the keyid of our signatures."""
    return _signing_method_id(_parse(did)[0])


def x25519_public_from_ed25519_public(pub: bytes) -> bytes:
    """The X25519 public key of the same secret, by the birational map u = (1+y)/(1-y) mod p.

    Written here because `cryptography` (OpenSSL) exposes no Ed25519→X25519 conversion and
    this one formula does not justify a new dependency. The key is y's 255 bits, little-endian,
    under x's sign bit; Montgomery u is independent of that sign.
    """
    _require_key_length(pub, "an Ed25519 public key")
    y = int.from_bytes(pub, "little") & ((1 << 255) - 1)
    # y >= p is a non-canonical encoding; y == 1 is the identity point, where 1-y has no inverse.
    if y >= _P or y == 1:
        raise ValueError("not a usable Ed25519 public key (non-canonical or the identity point)")
    u = (1 + y) * pow(1 - y, _P - 2, _P) % _P
    return u.to_bytes(KEY_LENGTH, "little")


def x25519_private_from_ed25519_seed(seed: bytes) -> bytes:
    """The X25519 private key of an Ed25519 seed: the clamped first half of SHA-512(seed).

    That half is the Ed25519 secret scalar itself, so the X25519 public key it gives matches
    x25519_public_from_ed25519_public of the seed's public key.
    """
    _require_key_length(seed, "an Ed25519 seed")
    scalar = bytearray(hashlib.sha512(seed).digest()[:KEY_LENGTH])
    scalar[0] &= 248
    scalar[31] &= 127
    scalar[31] |= 64
    return bytes(scalar)


def did_document(did: str, key_format: str = "Ed25519VerificationKey2018") -> dict[str, Any]:
    """The DID document of an Ed25519 did:key, as the did:key method resolves it.

    ``key_format`` is the method's ``publicKeyFormat`` option: "Ed25519VerificationKey2018"
    (keys in base58, the default) or "JsonWebKey2020" (keys as JWKs).
    """
    if key_format not in ("Ed25519VerificationKey2018", "JsonWebKey2020"):
        raise ValueError(f"unsupported publicKeyFormat {key_format!r}")
    bare, public_key = _parse(did)
    signing_id = _signing_method_id(bare)
    try:
        x25519_public = x25519_public_from_ed25519_public(public_key)
    except ValueError as unusable:
        raise InvalidDID(f"{did!r}: {unusable}") from None
    agreement_id = f"{bare}#{x25519_fingerprint(x25519_public)}"
    if key_format == "JsonWebKey2020":
        contexts = JWK_DID_CONTEXTS
        signing = {"type": "JsonWebKey2020", "publicKeyJwk": _okp_jwk("Ed25519", public_key)}
        agreement = {"type": "JsonWebKey2020", "publicKeyJwk": _okp_jwk("X25519", x25519_public)}
    else:
        contexts = DID_CONTEXTS
        signing = {
            "type": "Ed25519VerificationKey2018",
            "publicKeyBase58": base58.b58encode(public_key).decode("ascii"),
        }
        agreement = {
            "type": "X25519KeyAgreementKey2019",
            "publicKeyBase58": base58.b58encode(x25519_public).decode("ascii"),
        }
    return {
        "@context": list(contexts),
        "id": bare,
        "verificationMethod": [
            {"id": signing_id, "type": signing.pop("type"), "controller": bare, **signing},
            {"id": agreement_id, "type": agreement.pop("type"), "controller": bare, **agreement},
        ],
        "assertionMethod": [signing_id],
        "authentication": [signing_id],
        "capabilityInvocation": [signing_id],
        "capabilityDelegation": [signing_id],
        "keyAgreement": [agreement_id],
    }


def _okp_jwk(curve: str, public_key: bytes) -> dict[str, Any]:
    # RFC 7515: unpadded base64url
    x = base64.urlsafe_b64encode(public_key).rstrip(b"=").decode("ascii")
    return {"kty": "OKP", "crv": curve, "x": x}
