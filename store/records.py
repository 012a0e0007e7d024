"""The records interface: all that ``agent/`` and ``skills/`` may use of the vault.

Grants, tokens, usage counters, the audit log and the skills registry keep small sealed
records, each found by its kind and key. They are typed against this protocol, not against
``store.vault.Vault``: they depend on four methods, not on SQLite, sealing or the rest of the
vault, and anything with these four methods will do (the vault satisfies it structurally;
tests/test_records.py checks that, method by method, and runs grants and the audit log over a
dictionary).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Records(Protocol):
    """Small JSON-like records, each found by ``kind`` and ``key``.

    A record that exists but cannot be read back as it was written (in the vault: altered,
    moved or sealed under another key) raises ``store.sealing.SealError`` when read; the audit
    log reports it rather than failing."""

    def get_record(self, kind: str, key: str) -> dict[str, Any] | None:
        """The value of the record ``key`` of ``kind``, or None when there is none."""
        ...

    def put_record(self, kind: str, key: str, value: dict[str, Any]) -> object:
        """Insert or replace the record ``key`` of ``kind`` (what it returns is not used)."""
        ...

    def delete_record(self, kind: str, key: str) -> bool:
        """Remove the record; False when there was none."""
        ...

    def records(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """(key, value) of every record of ``kind``, in the order they were first written."""
        ...
