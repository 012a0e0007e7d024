"""The node's errors: its home, the owner's requests, peers and Nostr."""

from flurry_errors import FlurryError


class NodeError(FlurryError):
    """The node's wiring, its home or one of its channels failed; the message says why."""


class OwnerError(NodeError):
    """The owner's request cannot be done; the message says why."""


class NotFound(OwnerError):
    """The skill, approval or other thing named does not exist."""
