"""The root of identity's errors (keys, signatures, DIDs)."""


class IdentityError(Exception):
    """Something about a key, a signature or a DID; the message says what."""
