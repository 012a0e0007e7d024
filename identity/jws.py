"""Detached JWS over canonical JSON: how the node signs its A2A agent card (A2A v1.0 §8.4).

A signature is an A2A ``AgentCardSignature``: ``{"protected": b64url(header), "signature":
b64url(sig)}``. The header is ``{"alg": "EdDSA", "typ": "JOSE", "kid": <did:key DID URL>}``
(RFC 7515, RFC 8037). The payload is not carried: it is the RFC 8785 (JCS) canonical form
of the signed object without its ``signatures`` member, rebuilt by the verifier, and the
signing input is ``b64url(header) + "." + b64url(payload)`` as in any JWS.

A2A §8.4.1 also asks that fields holding their Protocol Buffers default value be left out
before canonicalising. That needs the card's schema, so it is the card builder's job: build
cards without default-valued optional fields; this module signs exactly the object it gets.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from identity.did_key import (
    InvalidDID,
    ed25519_public_from_did_key,
    verification_method_id,
)
from identity.errors import IdentityError

JWS_ALGORITHM = "EdDSA"
# RFC 9864 names the same algorithm "Ed25519" and deprecates the polymorphic "EdDSA"; both are
# accepted, since the kid (a did:key) fixes the key type either way. We still sign as EdDSA,
# which RFC 8037 and every deployed JOSE library understand.
_ACCEPTED_ALGORITHMS = frozenset({"EdDSA", "Ed25519"})
SIGNATURES_FIELD = "signatures"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
# A header is a few hundred bytes; refusing huge ones keeps hostile input cheap to reject.
_MAX_PROTECTED_LENGTH = 4096


class JWSRejected(IdentityError):
    """The signature does not hold; ``reason`` is a short code, ``str(error)`` the explanation.

    Reasons: malformed, unsupported_alg, unsupported_kid, critical_header, signature_invalid,
    not_canonicalisable.
    """

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


def canonical_json(obj: Any) -> bytes:
    """The RFC 8785 (JCS) canonical UTF-8 bytes of a JSON value; ValueError if it has none."""
    return rfc8785.dumps(obj)


def sign_json(obj: dict[str, Any], key: Ed25519PrivateKey, kid: str) -> dict[str, Any]:
    """A detached JWS over ``obj`` minus its ``signatures`` member, as an AgentCardSignature."""
    if verification_method_id(kid) != kid:
        raise ValueError(f"kid must be a did:key DID URL 'did:key:z6Mk…#z6Mk…', not {kid!r}")
    protected = _b64url(canonical_json({"alg": JWS_ALGORITHM, "typ": "JOSE", "kid": kid}))
    signature = key.sign(_signing_input(protected, obj))
    return {"protected": protected, "signature": _b64url(signature)}


def verify_json(obj: dict[str, Any], signature: dict[str, Any]) -> str:
    """The signer's DID (bare) if ``signature`` signs ``obj``; raises JWSRejected otherwise."""
    if not isinstance(signature, dict) or not isinstance(obj, dict):
        raise JWSRejected("malformed", "the object and its signature must be JSON objects")
    protected, signature_b64 = signature.get("protected"), signature.get("signature")
    if (
        not isinstance(protected, str)
        or not isinstance(signature_b64, str)
        or len(protected) > _MAX_PROTECTED_LENGTH
    ):
        raise JWSRejected("malformed", "a signature needs 'protected' and 'signature' strings")
    header = _decode_header(protected)
    unprotected = signature.get("header", {})
    if not isinstance(unprotected, dict) or set(unprotected) & set(header):
        # RFC 7515 §7.2.1: the two headers must not share names; one that did could make a
        # reader take an unsigned kid or alg for the signed one.
        raise JWSRejected(
            "malformed",
            "the unprotected header must be an object sharing no names with the protected one",
        )
    if "crit" in header:
        # An extension we do not implement (e.g. "b64": false) changes what was signed.
        raise JWSRejected(
            "critical_header", f"unsupported critical header parameters {header['crit']!r}"
        )
    if header.get("alg") not in _ACCEPTED_ALGORITHMS:
        raise JWSRejected(
            "unsupported_alg", f"alg must be EdDSA (Ed25519), not {header.get('alg')!r}"
        )
    kid = header.get("kid")
    try:
        if not isinstance(kid, str) or verification_method_id(kid) != kid:
            raise InvalidDID("not a did:key verification method DID URL")
        public_key = Ed25519PublicKey.from_public_bytes(ed25519_public_from_did_key(kid))
    except (InvalidDID, ValueError) as error:
        raise JWSRejected(
            "unsupported_kid", f"kid must be a did:key DID URL 'did:key:z6Mk…#z6Mk…': {error}"
        ) from None
    raw_signature = _b64url_decode(signature_b64)
    try:
        signing_input = _signing_input(protected, obj)
    except (ValueError, RecursionError) as error:
        raise JWSRejected(
            "not_canonicalisable", f"the object has no RFC 8785 form: {error}"
        ) from None
    try:
        public_key.verify(raw_signature, signing_input)
    except InvalidSignature:
        raise JWSRejected(
            "signature_invalid", "the signature does not match the object and key"
        ) from None
    return kid.partition("#")[0]


def _signing_input(protected: str, obj: dict[str, Any]) -> bytes:
    payload = {name: value for name, value in obj.items() if name != SIGNATURES_FIELD}
    return protected.encode("ascii") + b"." + _b64url(canonical_json(payload)).encode("ascii")


def _decode_header(protected: str) -> dict[str, Any]:
    try:
        header = json.loads(_b64url_decode(protected), object_pairs_hook=_object_without_duplicates)
    except (ValueError, RecursionError):
        raise JWSRejected("malformed", "the protected header is not a JSON object") from None
    if not isinstance(header, dict):
        raise JWSRejected("malformed", "the protected header is not a JSON object")
    return header


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError("duplicate header parameter")
    return dict(pairs)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    # Strict: the unpadded URL-safe alphabet only (RFC 7515 §2), and one spelling per value.
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise JWSRejected("malformed", "not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise JWSRejected("malformed", "not unpadded base64url") from None
    if _b64url(data) != text:
        raise JWSRejected("malformed", "not the canonical base64url spelling")
    return data
