"""The root of the store's errors (the vault, sealing, indexes, the pod's storage)."""


class StoreError(Exception):
    """The vault, its sealing or its indexes refused or failed; the message says why."""
