"""RFC 9421 HTTP Message Signatures for every request to the node's API, owner's included.

The profile (what `sign_request` makes and `verify_request` demands):

- one signature, Ed25519, ``keyid`` = the caller's did:key DID URL ("did:key:z6Mk…#z6Mk…"),
  so the key is the identity and nothing needs to be looked up;
- covered: ``@method``, ``@target-uri``, ``content-digest`` (RFC 9530, sha-256) whenever the
  request has a body or a Content-Digest field, plus ``content-type`` when present;
- parameters ``created``, ``expires`` (at most ``max_lifetime`` after created), ``nonce``,
  ``keyid``, ``alg="ed25519"``; a `ReplayCache` (``identity.replay_cache``) remembers
  (keyid, nonce) until expiry.

Canonicalisation (the signature base) is the `http-message-signatures` library's; this module
adds the policy around it (signing, verifying, Content-Digest, the server's @target-uri) and
raises one exception, `SignatureRejected` (``identity.errors``), with a reason code.

@target-uri behind uvicorn: the client signs ``scheme://<Host header><path>[?query]``, i.e.
the URL it sends with its authority spelled exactly as the Host header it sends (httpx does
both from the same URL). The server rebuilds the same string from the ASGI scope
(`target_uri_from_scope`): ``scope["scheme"]``, the Host header verbatim, ``raw_path`` as
it came off the wire (percent-encoding kept, no root_path games) and ``query_string``. Nothing
is normalised on either side, because a normalisation one side forgets is a signature that
never verifies. Consequences:
- an empty query ("/a?") cannot be told from no query in ASGI: sign URLs without a bare "?";
- the scheme is what uvicorn believes: behind a TLS-terminating proxy run uvicorn with
  ``--proxy-headers`` (it trusts X-Forwarded-Proto only from ``--forwarded-allow-ips``);
- the Host header is the client's word, so pass ``allowed_hosts``: otherwise a request
  signed for another server could be replayed here once with its Host header unchanged.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import hmac
import secrets
import time
import urllib.parse
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import http_sf
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException
from http_message_signatures.structures import get_header_fields

from identity.did_key import (
    InvalidDID,
    ed25519_public_from_did_key,
    verification_method_id,
)
from identity.errors import SignatureRejected
from identity.replay_cache import ReplayCache

ALGORITHM = "ed25519"
SIGNATURE_LABEL = "sig1"
REQUIRED_COMPONENTS = ("@method", "@target-uri")
# A nonce is remembered for minutes; bounding its size bounds the cache's memory.
MAX_NONCE_LENGTH = 128
_SIGNATURE_PARAMETERS = frozenset({"created", "expires", "keyid", "nonce", "alg", "tag"})
_DIGEST_ALGORITHMS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
# RFC 3986 pchar and '/': what a path may hold unescaped, for servers that give no raw_path.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


# --- Content-Digest (RFC 9530) ----------------------------------------------------------


def content_digest(body: bytes) -> str:
    """The Content-Digest field value of a body: ``sha-256=:<base64>:``."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def check_content_digest(field_value: str, body: bytes) -> None:
    """Raise SignatureRejected unless every sha-256/sha-512 member of the field matches the body.

    Other algorithms are ignored (RFC 9530 lets a receiver skip what it does not know), but
    at least one member we know must be there, or the field proves nothing.
    """
    try:
        members = _parse_dictionary(field_value)
    except (ValueError, UnicodeError):
        raise SignatureRejected(
            "malformed_signature", "the Content-Digest field is not a structured dictionary"
        ) from None
    known = {name: member for name, member in members.items() if name in _DIGEST_ALGORITHMS}
    if not known:
        raise SignatureRejected(
            "malformed_signature", "Content-Digest has no sha-256 or sha-512 member"
        )
    for name, (digest, _params) in known.items():
        if not isinstance(digest, bytes):
            raise SignatureRejected(
                "malformed_signature", f"Content-Digest member {name} is not a byte sequence"
            )
        if not hmac.compare_digest(digest, _DIGEST_ALGORITHMS[name](body).digest()):
            raise SignatureRejected(
                "body_tampered", f"the body does not match its signed Content-Digest ({name})"
            )


# An RFC 8941 dictionary: label → (member value, member parameters).
_SfDictionary = dict[str, tuple[Any, dict[str, Any]]]


def _parse_dictionary(field_value: str) -> _SfDictionary:
    """Raises ValueError or UnicodeError when the field is not a structured dictionary."""
    # http_sf.parse is typed for every top-level type at once; "dictionary" fixes which one.
    parsed = http_sf.parse(
        field_value.encode("ascii"), tltype="dictionary", on_duplicate_key=_reject_duplicate
    )
    return cast(_SfDictionary, parsed)


def _reject_duplicate(key: str, context: str) -> None:
    # RFC 8941 keeps the last duplicate; two readers that disagree on which one counts is how
    # a signed value gets swapped for an unsigned one, so duplicates are refused outright.
    raise ValueError(f"duplicate {context} key {key!r}")


# --- signing ------------------------------------------------------------------------------


@dataclass
class _Message:
    """The request view the library reads: uppercase method, absolute URL, headers.items()."""

    method: str
    url: str
    headers: Any


_SIGNER = HTTPMessageSigner(signature_algorithm=algorithms.ED25519)


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    key: Ed25519PrivateKey,
    keyid: str,
    *,
    now: float | None = None,
    expires_in: int = 300,
    nonce: str | None = None,
    cover_fields: Sequence[str] = (),
) -> dict[str, str]:
    """The headers to add to a request to sign it: Content-Digest (with a body), Signature-Input, Signature.

    ``url`` is the absolute URL as sent, its authority spelled as the Host header sent with
    it. ``cover_fields`` names more header fields to sign (they must be in ``headers``).
    Raises ValueError for a request that cannot be signed (lowercase method, bad URL,
    non-ASCII value in a covered field, a Content-Digest that does not match the body).
    """
    if expires_in < 1:
        raise ValueError("expires_in must be at least one second")
    created = int(time.time() if now is None else now)
    fields = {name.lower(): value for name, value in headers.items()}
    components = list(REQUIRED_COMPONENTS)
    if "content-type" in fields:
        components.append("content-type")
    components += [name.lower() for name in cover_fields if name.lower() not in components]
    has_digest = "content-digest" in fields
    message = _Message(method, url, dict(headers))
    try:
        prepared = _SIGNER.prepare(
            message,
            key_id=keyid,
            created=_utc(created),
            expires=_utc(created + expires_in),
            nonce=nonce if nonce is not None else secrets.token_urlsafe(16),
            label=SIGNATURE_LABEL,
            covered_component_ids=components,
            # The library adds and covers a digest whenever it is given a body, even b"";
            # an empty body needs none unless the caller already put one in the headers.
            body=body if body or has_digest else None,
            use_existing_digest=has_digest,
        )
        _SIGNER.apply(message, prepared, key.sign(prepared.signature_base))
    except HTTPMessageSignaturesException as error:
        raise ValueError(f"cannot sign this request: {error}") from None
    return {name: value for name, value in message.headers.items() if headers.get(name) != value}


def _utc(timestamp: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)


# --- verifying ----------------------------------------------------------------------------


class _DidKeyResolver(HTTPSignatureKeyResolver):
    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey:
        return _public_key(key_id)


@functools.lru_cache(maxsize=1024)
def _public_key(keyid: str) -> Ed25519PublicKey:
    # Cached so that a caller's every request does not decode base58 and parse the key again.
    return Ed25519PublicKey.from_public_bytes(ed25519_public_from_did_key(keyid))


class _Verifier(HTTPMessageVerifier):
    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        # The library checks against its own clock with a fixed 5 s skew; verify_request
        # checks created/expires itself, against the caller's `now` and `max_skew`.
        return None


_VERIFIER = _Verifier(signature_algorithm=algorithms.ED25519, key_resolver=_DidKeyResolver())


@dataclass(frozen=True)
class _SignatureInput:
    components: list[tuple[Any, dict[str, Any]]]
    params: dict[str, Any]


def verify_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    replay_cache: ReplayCache,
    now: float | None = None,
    max_skew: int = 30,
    max_lifetime: int = 300,
) -> str:
    """The caller's DID (bare, no fragment) if the request is signed as this module demands.

    ``url`` is the target URI as the server saw it (`target_uri_from_scope`); ``headers``
    may be any mapping whose ``items()`` lists every field line (Starlette's
    ``request.headers`` keeps repeated fields). Raises SignatureRejected, and nothing else,
    for anything a client can send. The nonce is remembered only once everything else,
    the signature included, has passed, so strangers cannot burn someone else's nonces.
    """
    now = time.time() if now is None else now
    try:
        fields: Mapping[str, str] = get_header_fields(headers)
    except (AttributeError, TypeError, ValueError) as error:
        raise SignatureRejected(
            "malformed_signature", f"unreadable header fields: {error}"
        ) from None
    signature_input = _parse_signature_headers(fields)
    params = signature_input.params
    keyid = _check_keyid(params)
    _check_coverage(signature_input.components, fields, body)
    expires, nonce = _check_times_and_nonce(params, now, max_skew, max_lifetime)

    message = _Message(method, url, headers)
    try:
        results = _VERIFIER.verify(message, max_age=None)
    except HTTPMessageSignaturesException as error:
        raise SignatureRejected(
            "signature_invalid", f"the signature does not verify: {error}"
        ) from None
    signed_params = results[0].parameters if len(results) == 1 else None
    # See what is signed: the values acted on below must be the ones the signature covers.
    if signed_params != params:
        raise SignatureRejected(
            "malformed_signature", "the signed parameters differ from the ones read"
        )

    if "content-digest" in fields:
        check_content_digest(fields["content-digest"], body)
    replay_cache.remember(keyid, nonce, until=expires + max_skew, now=now)
    return keyid.partition("#")[0]


def _parse_signature_headers(fields: Mapping[str, str]) -> _SignatureInput:
    if "signature-input" not in fields or "signature" not in fields:
        raise SignatureRejected(
            "missing_signature", "the request carries no Signature-Input and Signature"
        )
    try:
        inputs = _parse_dictionary(fields["signature-input"])
        signatures = _parse_dictionary(fields["signature"])
    except (ValueError, UnicodeError) as error:
        raise SignatureRejected(
            "malformed_signature",
            f"Signature-Input or Signature is not a structured dictionary: {error}",
        ) from None
    if not inputs or not signatures:
        raise SignatureRejected("missing_signature", "Signature-Input or Signature is empty")
    if len(inputs) != 1 or inputs.keys() != signatures.keys():
        raise SignatureRejected(
            "malformed_signature",
            "expected exactly one signature, with the same label in both fields",
        )
    ((components, params),) = inputs.values()
    ((signature, _),) = signatures.values()
    if not isinstance(components, list) or not isinstance(signature, bytes):
        raise SignatureRejected(
            "malformed_signature",
            "Signature-Input must be an inner list, Signature a byte sequence",
        )
    if any(type(name) is not str for name, _ in components):
        raise SignatureRejected("malformed_signature", "covered components must be strings")
    unknown = set(params) - _SIGNATURE_PARAMETERS
    if unknown:
        raise SignatureRejected(
            "malformed_signature", f"unknown signature parameters {sorted(unknown)}"
        )
    return _SignatureInput(components, params)


def _check_keyid(params: Mapping[str, Any]) -> str:
    keyid = params.get("keyid")
    if type(keyid) is not str:
        raise SignatureRejected("unsupported_keyid", "the signature names no keyid")
    try:
        # One spelling only: the DID URL of the key's own verification method.
        if verification_method_id(keyid) != keyid:
            raise InvalidDID("not the verification method's DID URL")
        _public_key(keyid)
    except (InvalidDID, ValueError) as error:
        raise SignatureRejected(
            "unsupported_keyid",
            f"keyid must be a did:key Ed25519 DID URL 'did:key:z6Mk…#z6Mk…': {error}",
        ) from None
    alg = params.get("alg", ALGORITHM)
    if alg != ALGORITHM or type(alg) is not str:
        raise SignatureRejected("unsupported_alg", f"alg must be {ALGORITHM!r}, not {alg!r}")
    return keyid


def _check_coverage(
    components: list[tuple[Any, dict[str, Any]]], fields: Mapping[str, str], body: bytes
) -> None:
    # Bare identifiers only: '"@method";req' or '"content-digest";key=…' are other components.
    covered = {name for name, component_params in components if not component_params}
    missing = [name for name in REQUIRED_COMPONENTS if name not in covered]
    if missing:
        raise SignatureRejected(
            "components_not_covered", f"the signature must cover {', '.join(missing)}"
        )
    if body and "content-digest" not in fields:
        raise SignatureRejected(
            "missing_content_digest", "a request with a body must carry a signed Content-Digest"
        )
    if "content-digest" in fields and "content-digest" not in covered:
        raise SignatureRejected("components_not_covered", "the signature must cover content-digest")


def _check_times_and_nonce(
    params: Mapping[str, Any], now: float, max_skew: int, max_lifetime: int
) -> tuple[int, str]:
    for name in ("created", "expires", "nonce"):
        if name not in params:
            raise SignatureRejected(f"missing_{name}", f"the signature has no {name!r} parameter")
    created, expires, nonce = params["created"], params["expires"], params["nonce"]
    if type(created) is not int or type(expires) is not int:
        raise SignatureRejected("malformed_signature", "created and expires must be integers")
    if type(nonce) is not str or not 0 < len(nonce) <= MAX_NONCE_LENGTH:
        raise SignatureRejected(
            "malformed_signature", f"nonce must be a string of 1 to {MAX_NONCE_LENGTH} characters"
        )
    if created > now + max_skew:
        raise SignatureRejected(
            "created_in_future", f"created {created - now:.0f} s in the future; check the clock"
        )
    if expires <= created:
        raise SignatureRejected("malformed_signature", "expires must come after created")
    if expires - created > max_lifetime:
        raise SignatureRejected(
            "lifetime_too_long",
            f"a signature may live {max_lifetime} s, this one {expires - created} s",
        )
    if now > expires + max_skew:
        raise SignatureRejected("expired", f"the signature expired {now - expires:.0f} s ago")
    return expires, nonce


# --- the server side of @target-uri -------------------------------------------------------


def target_uri_from_scope(
    scope: Mapping[str, Any], *, allowed_hosts: Collection[str] | None = None
) -> str:
    """The @target-uri of an ASGI HTTP request: ``scheme://<Host header><raw path>[?query]``.

    ``allowed_hosts`` are the node's own authorities ("127.0.0.1:8766", "node.example");
    a Host outside them raises SignatureRejected("wrong_host").
    """
    hosts = [value for name, value in scope.get("headers", ()) if name.lower() == b"host"]
    if len(hosts) != 1 or not hosts[0]:
        raise SignatureRejected("missing_host", "the request must carry exactly one Host header")
    host = hosts[0].decode("latin-1")
    if allowed_hosts is not None and host.lower() not in {
        allowed.lower() for allowed in allowed_hosts
    }:
        raise SignatureRejected("wrong_host", f"this node does not answer to {host!r}")
    raw_path = scope.get("raw_path") or urllib.parse.quote(
        scope.get("path", "/"), safe=_PATH_SAFE
    ).encode("ascii")
    # raw_path is the path as sent; some servers and test transports have left the query
    # on it, and a path cannot hold a literal '?', so cutting there is always safe.
    path = raw_path.partition(b"?")[0].decode("latin-1")
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")
