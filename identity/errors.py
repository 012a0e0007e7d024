"""The root of identity's errors (keys, signatures, DIDs)."""

from flurry_errors import FlurryError


class IdentityError(FlurryError):
    """Something about a key, a signature or a DID; the message says what."""
