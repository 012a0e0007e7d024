"""The root of the store's errors (the vault, sealing, indexes, the pod's storage)."""

from flurry_errors import FlurryError


class StoreError(FlurryError):
    """The vault, its sealing or its indexes refused or failed; the message says why."""
