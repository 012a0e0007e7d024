"""NIP-98: HTTP requests authorised by a Nostr event (kind 27235) instead of an RFC 9421 signature.

Owns making the ``Authorization: Nostr …`` header for one request and checking one: a fresh,
verified event naming the request's URL, method and body digest, or SignatureRejected (401),
the same exception as ``identity.http_signatures``. Refusing a replayed event id is the
caller's (``node.nostr_peers``, with its replay cache).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import nostr_sdk

from identity.errors import SignatureRejected
from identity.nostr_key import GiftWrapRejected, NostrKey, sign_event, verified_event

KIND_HTTP_AUTH = 27235
HTTP_AUTH_WINDOW = 60  # seconds either side of now (NIP-98 suggests 60)
_MAX_HTTP_AUTH = 8192  # characters of the Authorization header: an auth event is a few hundred


def http_auth_header(key: NostrKey, method: str, url: str, body: bytes = b"") -> str:
    """``Authorization: Nostr …`` for one request: a kind-27235 event naming its URL, method and body."""
    tags = [["u", url], ["method", method.upper()]]
    if body:
        tags.append(["payload", hashlib.sha256(body).hexdigest()])
    event = sign_event(key.sdk_keys(), KIND_HTTP_AUTH, "", tags, nostr_sdk.Timestamp.now())
    return "Nostr " + base64.b64encode(event.as_json().encode()).decode()


def verify_http_auth(
    authorization: str, method: str, url: str, body: bytes, *, now: float | None = None
) -> nostr_sdk.Event:
    """The NIP-98 event that authorises this request; SignatureRejected (401) otherwise.

    Stricter than NIP-98 in one place, on purpose: a request with a body must name the body's
    SHA-256 in a "payload" tag (the spec says clients SHOULD), or the body could be swapped
    while the event is fresh. The caller still has to refuse a replayed event id.
    """
    scheme, _, token = authorization.partition(" ")
    if scheme != "Nostr" or not token or len(token) > _MAX_HTTP_AUTH:
        raise SignatureRejected(
            "malformed_signature",
            "NIP-98: send Authorization: Nostr <base64 of a kind 27235 event>",
        )
    try:
        event = verified_event(
            base64.b64decode(token.strip(), validate=True).decode("utf-8"), "NIP-98 event"
        )
    except (ValueError, GiftWrapRejected) as e:
        raise SignatureRejected("signature_invalid", f"NIP-98: {e}") from None
    if event.kind().as_u16() != KIND_HTTP_AUTH:
        raise SignatureRejected(
            "malformed_signature", f"NIP-98: the event is kind {event.kind().as_u16()}, not 27235"
        )
    now = time.time() if now is None else now
    age = now - event.created_at().as_secs()
    if age > HTTP_AUTH_WINDOW:
        raise SignatureRejected(
            "expired", f"NIP-98: the event is {int(age)} s old; at most {HTTP_AUTH_WINDOW} s"
        )
    if age < -HTTP_AUTH_WINDOW:
        raise SignatureRejected(
            "created_in_future", "NIP-98: the event is dated in the future; check your clock"
        )
    tags: dict[str, str] = {}
    for tag in (t.to_vec() for t in event.tags()):
        if len(tag) >= 2 and tag[0] in ("u", "method", "payload"):
            if tag[0] in tags:
                raise SignatureRejected(
                    "malformed_signature", f"NIP-98: the event has two {tag[0]!r} tags"
                )
            tags[tag[0]] = tag[1]
    if tags.get("u") != url:
        raise SignatureRejected(
            "wrong_host", f"NIP-98: the event authorises {tags.get('u')!r}, not {url!r}"
        )
    if tags.get("method", "").upper() != method.upper():
        raise SignatureRejected(
            "components_not_covered",
            f"NIP-98: the event authorises {tags.get('method')!r}, not {method}",
        )
    if body and "payload" not in tags:
        raise SignatureRejected(
            "missing_content_digest",
            "NIP-98: a request with a body must name its SHA-256 in a payload tag",
        )
    if "payload" in tags and not hmac.compare_digest(
        tags["payload"], hashlib.sha256(body).hexdigest()
    ):
        raise SignatureRejected(
            "body_tampered", "NIP-98: the body is not the one the event authorises"
        )
    return event
