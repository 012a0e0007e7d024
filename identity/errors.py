"""The root of identity's errors (keys, signatures, DIDs)."""


class IdentityError(Exception):
    """Something about a key, a signature or a DID; the message says what."""


class SignatureRejected(IdentityError):
    """The request's signature is not acceptable; answer 401.

    ``reason`` is a short code for machines and logs; ``str(error)`` says it for people:

    missing_signature, malformed_signature, unsupported_keyid, unsupported_alg,
    missing_created, missing_expires, missing_nonce, components_not_covered,
    missing_content_digest, created_in_future, expired, lifetime_too_long,
    signature_invalid, body_tampered, replayed_nonce, replay_cache_full,
    missing_host, wrong_host.
    """

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason
