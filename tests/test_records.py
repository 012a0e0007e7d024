"""store/records.py: grants, tokens and the audit log see the vault only as a records store.

The vault is checked against the protocol method by method (a rename or a new required argument
on either side fails here, not in production). Then grants, quotas, tokens and the audit chain
run over a plain dictionary that has only the protocol's four methods: if any of them reached
for another method of the vault, it would fail here with AttributeError. The dictionary is not a
stand-in for the vault in other tests; tests/test_grants.py and tests/test_audit.py use the real one.
"""

from __future__ import annotations

import inspect
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.audit import AuditLog
from agent.grants import Grant, Grants, NotGranted, Quota, QuotaExceeded
from agent.tokens import InvalidToken, Tokens
from identity.did_key import did_key_from_ed25519_public, ed25519_public_from_did_key
from store.records import Records
from store.sealing import SealError
from store.vault import Vault


def new_did(key: Ed25519PrivateKey | None = None) -> str:
    return did_key_from_ed25519_public(
        (key or Ed25519PrivateKey.generate()).public_key().public_bytes_raw()
    )


class DictRecords:
    """Records in a dictionary, stored as JSON text like the vault stores them, so a caller that
    kept a reference to what it wrote, or wrote what JSON cannot hold, is caught. A record can be
    marked unreadable, as a vault record altered on disk is."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, str]] = {}
        self.unreadable: set[tuple[str, str]] = set()

    def get_record(self, kind: str, key: str) -> dict | None:
        if (kind, key) in self.unreadable:
            raise SealError("altered")
        text = self.data.get(kind, {}).get(key)
        return None if text is None else json.loads(text)

    def put_record(self, kind: str, key: str, value: dict) -> object:
        self.data.setdefault(kind, {})[key] = json.dumps(value, allow_nan=False)
        return None

    def delete_record(self, kind: str, key: str) -> bool:
        return self.data.get(kind, {}).pop(key, None) is not None

    def records(self, kind: str) -> list[tuple[str, dict]]:
        if any((kind, key) in self.unreadable for key in self.data.get(kind, {})):
            raise SealError("altered")
        return [(key, json.loads(text)) for key, text in self.data.get(kind, {}).items()]


def test_the_vault_is_a_records_store(vault: Vault) -> None:
    as_records: Records = vault  # what the type checker holds the vault to
    assert isinstance(as_records, Records) and isinstance(DictRecords(), Records)
    protocol_methods = [
        name
        for name, _ in inspect.getmembers(Records, inspect.isfunction)
        if not name.startswith("_")
    ]
    assert sorted(protocol_methods) == ["delete_record", "get_record", "put_record", "records"]
    for name in protocol_methods:
        wanted, actual = (
            inspect.signature(getattr(Records, name)),
            inspect.signature(getattr(Vault, name)),
        )
        assert list(actual.parameters.items()) == list(wanted.parameters.items()), name
        # The protocol promises nothing about what put_record returns (callers ignore it).
        if wanted.return_annotation != "object":
            assert actual.return_annotation == wanted.return_annotation, name


def test_grants_quotas_and_tokens_over_any_records_store() -> None:
    records = DictRecords()
    grants, tokens = Grants(records), Tokens(records)
    owner, peer = new_did(), new_did()

    grants.add(
        Grant(
            peer,
            frozenset({"ask"}),
            tags=frozenset({"work"}),
            quota=Quota(2, "day"),
            note="colleague",
        )
    )
    assert grants.get(peer) == Grant.from_record(json.loads(records.data["grant"][peer]))
    assert grants.authorize(peer, "ask", owner_did=owner, now=1000.0).tags == frozenset({"work"})
    grants.authorize(peer, "ask", owner_did=owner, now=1001.0)
    with pytest.raises(QuotaExceeded):
        grants.authorize(peer, "ask", owner_did=owner, now=1002.0)
    # The quota is counted in the store, so a second Grants over the same store sees it used.
    with pytest.raises(QuotaExceeded):
        Grants(records).authorize(peer, "ask", owner_did=owner, now=1003.0)
    with pytest.raises(NotGranted):
        grants.authorize(peer, "chat", owner_did=owner)
    assert grants.remove(peer) and grants.list() == [] and records.data["usage"] == {}

    token = tokens.create("editor", {"chat"})
    assert tokens.verify(token).allows("chat") and [t.name for t in tokens.list()] == ["editor"]
    assert token not in json.dumps(records.data)  # only its hash is kept
    assert tokens.revoke("editor")
    with pytest.raises(InvalidToken):
        tokens.verify(token)


def test_the_audit_chain_over_any_records_store() -> None:
    records, node_key = DictRecords(), Ed25519PrivateKey.generate()
    log = AuditLog(records, signer_did=new_did(node_key), sign=node_key.sign)
    for i in range(4):
        log.append("a2a.send", target="did:key:peer", details={"n": i})

    def key_for(did: str) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(ed25519_public_from_did_key(did))

    def problems() -> list[str]:
        return [str(p) for p in log.verify(key_for).problems]

    assert [e.seq for e in log.entries()] == [0, 1, 2, 3] and problems() == []
    # A record the store cannot open is reported, not raised; an edited one breaks its hash.
    records.unreadable.add(("audit", f"{1:012d}"))
    edited = records.get_record("audit", f"{2:012d}")
    assert edited is not None
    edited["details"] = {"n": 20}
    records.put_record("audit", f"{2:012d}", edited)
    found = problems()
    assert (
        found[0].startswith("entry 1: cannot be opened")
        and "entry 2: hash does not match its content" in found
    )
