"""agent/audit.py: the hash-chained, signed audit log on a real vault, and what tampering it reports."""

from __future__ import annotations

import base64
import hashlib
import itertools
import sqlite3
import threading
from pathlib import Path

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from agent.audit import GENESIS, AuditError, AuditLog, AuditProblem, content_hash
from identity.did_key import (
    did_key_from_ed25519_public,
    ed25519_public_from_did_key,
    verification_method_id,
)
from store.sealing import Sealer
from store.vault import Vault


def did_of(key: Ed25519PrivateKey) -> str:
    return did_key_from_ed25519_public(key.public_key().public_bytes_raw())


def public_key_for(did_url: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(ed25519_public_from_did_key(did_url))


NODE_KEY = Ed25519PrivateKey.generate()
NODE_DID = did_of(NODE_KEY)
PEER_DID = did_of(Ed25519PrivateKey.generate())


@pytest.fixture
def log(vault: Vault) -> AuditLog:
    return AuditLog(vault, signer_did=NODE_DID, sign=NODE_KEY.sign)


def fill(log: AuditLog, n: int = 5) -> None:
    for i in range(n):
        log.append("a2a.send", target=PEER_DID, details={"task": f"task-{i}", "n": i})


def messages(log: AuditLog) -> list[str]:
    return [str(p) for p in log.verify(public_key_for).problems]


def key(seq: int) -> str:
    return f"{seq:012d}"


def test_entries_are_chained_hashed_and_signed(log: AuditLog) -> None:
    fill(log)
    entries = log.entries()
    assert [e.seq for e in entries] == [0, 1, 2, 3, 4]
    assert entries[0].prev == GENESIS
    for before, after in itertools.pairwise(entries):
        assert after.prev == before.hash
    for e in entries:
        assert e.agent_made is True and e.action == "a2a.send" and e.target == PEER_DID
        assert e.signer == verification_method_id(NODE_DID)
        assert e.at.endswith("Z")
        # The hash is SHA-256 of the RFC 8785 form of the entry without hash and signature ...
        body = {k: v for k, v in e.__dict__.items() if k not in ("hash", "signature")}
        assert (
            e.hash == hashlib.sha256(rfc8785.dumps(body)).hexdigest() == content_hash(e.content())
        )
        # ... and the signature is Ed25519 by the node key over those 32 bytes, base64url unpadded.
        NODE_KEY.public_key().verify(
            base64.urlsafe_b64decode(e.signature + "=="), bytes.fromhex(e.hash)
        )
    report = log.verify(public_key_for)
    assert report.ok and report.count == 5 and report.problems == []


def test_a_restarted_node_continues_the_chain(tmp_path: Path, data_key: bytes) -> None:
    first = Vault(tmp_path / "vault.db", Sealer(data_key))
    fill(AuditLog(first, signer_did=NODE_DID, sign=NODE_KEY.sign), 3)
    last = AuditLog(first, signer_did=NODE_DID).entries()[-1]
    first.close()

    reopened = Vault(tmp_path / "vault.db", Sealer(data_key))
    log = AuditLog(reopened, signer_did=NODE_DID, sign=NODE_KEY.sign)
    entry = log.append("nostr.publish", target="wss://relay.example", details={"kind": 1})
    assert (entry.seq, entry.prev) == (3, last.hash)
    assert log.verify(public_key_for).ok
    reopened.close()


def test_empty_log_verifies(log: AuditLog) -> None:
    report = log.verify(public_key_for)
    assert report.ok and report.count == 0


def test_read_only_log_and_bad_input_record_nothing(vault: Vault, log: AuditLog) -> None:
    with pytest.raises(AuditError, match="read-only"):
        AuditLog(vault, signer_did=NODE_DID).append("a2a.send", target=PEER_DID, details={})
    with pytest.raises(AuditError, match="plain JSON"):
        log.append("a2a.send", target=PEER_DID, details={"when": object()})
    with pytest.raises(AuditError, match="plain JSON"):
        log.append("a2a.send", target=PEER_DID, details={"big": 2**60})
    with pytest.raises(AuditError, match="action"):
        log.append("Send Message", target=PEER_DID, details={})
    assert log.entries() == []


def test_concurrent_appends_make_one_chain(log: AuditLog) -> None:
    threads = [
        threading.Thread(
            target=log.append,
            args=("http.request",),
            kwargs={"target": "https://x.example", "details": {"i": i}},
        )
        for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.seq for e in log.entries()] == list(range(20))
    assert log.verify(public_key_for).ok


# --- tampering -------------------------------------------------------------------------------


def test_a_deleted_middle_entry_is_a_gap(vault: Vault, log: AuditLog) -> None:
    fill(log)
    assert vault.delete_record("audit", key(2))
    assert messages(log) == ["entry 2: missing: it was deleted from the vault"]


def test_edited_details_under_the_old_hash(vault: Vault, log: AuditLog) -> None:
    fill(log)
    record = vault.get_record("audit", key(2))
    assert record is not None
    record["details"] = {"task": "something else", "n": 2}
    vault.put_record("audit", key(2), record)
    assert messages(log) == ["entry 2: hash does not match its content"]


def test_rehashed_but_not_resigned(vault: Vault, log: AuditLog) -> None:
    fill(log)
    record = vault.get_record("audit", key(2))
    assert record is not None
    record["details"] = {"task": "something else", "n": 2}
    record["hash"] = content_hash(
        {k: v for k, v in record.items() if k not in ("hash", "signature")}
    )
    vault.put_record("audit", key(2), record)
    found = messages(log)
    assert "entry 2: signature is not valid" in found
    assert "entry 3: does not link to entry 2 (prev hash differs)" in found


def test_a_chain_forged_with_another_key(vault: Vault, log: AuditLog) -> None:
    fill(log)
    forger = Ed25519PrivateKey.generate()
    # Someone holding the data key but not the node key rebuilds the whole log ...
    for k, _ in vault.records("audit"):
        vault.delete_record("audit", k)
    vault.delete_record("audit-head", "head")
    # ... claiming to be the node: every signature fails,
    fill(AuditLog(vault, signer_did=NODE_DID, sign=forger.sign), 3)
    assert messages(log) == [f"entry {i}: signature is not valid" for i in range(3)]
    # ... or under its own DID: every entry is signed by someone who is not the node.
    for k, _ in vault.records("audit"):
        vault.delete_record("audit", k)
    vault.delete_record("audit-head", "head")
    fill(AuditLog(vault, signer_did=did_of(forger), sign=forger.sign), 3)
    found = messages(log)
    assert len(found) == 3 and all("not by this node" in m for m in found)


def test_truncation_is_caught_by_the_head(vault: Vault, log: AuditLog) -> None:
    fill(log)
    vault.delete_record("audit", key(4))
    vault.delete_record("audit", key(3))
    # The remaining entries 0-2 are a valid chain on their own: only the head notices.
    report = log.verify(public_key_for)
    assert report.count == 3
    assert [(p.seq, p.message) for p in report.problems] == [
        (
            None,
            "the head counts 5 entries but the log ends before entries 3-4: entries were removed from the end",
        )
    ]


def test_a_head_that_does_not_match_the_last_entry(vault: Vault, log: AuditLog) -> None:
    fill(log, 3)
    vault.put_record("audit-head", "head", {"count": 3, "last_hash": "ab" * 32})
    assert messages(log) == [
        "entry 2 is not the entry the head recorded last: the log was rewritten"
    ]


def test_a_missing_head_is_reported_and_stops_appends(vault: Vault, log: AuditLog) -> None:
    fill(log, 2)
    vault.delete_record("audit-head", "head")
    assert messages(log) == [
        "the head record is missing, so entries removed from the end cannot be detected"
    ]
    with pytest.raises(AuditError, match="no head record"):
        log.append("a2a.send", target=PEER_DID, details={})


def test_bytes_altered_without_the_data_key_are_reported_not_raised(
    vault: Vault, log: AuditLog
) -> None:
    fill(log)
    # Someone with the file but not the key can only change bytes (or move rows): nothing opens.
    raw = sqlite3.connect(vault.path)
    (body,) = raw.execute("SELECT body FROM records WHERE kind='audit' AND seq=2").fetchone()
    raw.execute(
        "UPDATE records SET body=? WHERE kind='audit' AND seq=2",
        (body[:-1] + bytes([body[-1] ^ 1]),),
    )
    raw.commit()
    raw.close()
    found = messages(log)
    assert (
        found[0]
        == "entry 2: cannot be opened: its sealed bytes were altered, moved or written under another key"
    )
    assert len(found) == 1  # entry 3's link cannot be checked, which is not a second finding
    with pytest.raises(AuditError, match="flurry audit verify"):
        log.entries()


def test_an_altered_head_is_reported_not_raised(vault: Vault, log: AuditLog) -> None:
    fill(log, 2)
    raw = sqlite3.connect(vault.path)
    raw.execute("UPDATE records SET body=zeroblob(60) WHERE kind='audit-head'")
    raw.commit()
    raw.close()
    assert messages(log) == [
        "the head record cannot be opened: it was altered, so truncation cannot be checked"
    ]


def test_an_append_interrupted_before_its_head_is_finished_later(
    vault: Vault, log: AuditLog
) -> None:
    fill(log, 2)
    head_before = vault.get_record("audit-head", "head")
    assert head_before is not None
    log.append("a2a.send", target=PEER_DID, details={"n": 2})
    vault.put_record(
        "audit-head", "head", head_before
    )  # as if the node died between the two writes
    assert log.verify(public_key_for).ok  # nothing lost: the extra entry chains
    entry = log.append("a2a.send", target=PEER_DID, details={"n": 3})
    assert entry.seq == 3
    report = log.verify(public_key_for)
    assert report.ok and report.count == 4
    assert vault.get_record("audit-head", "head") == {"count": 4, "last_hash": entry.hash}


def test_unresolvable_signer_is_a_finding(log: AuditLog) -> None:
    fill(log, 1)

    def nobody(did_url: str) -> Ed25519PublicKey:
        raise LookupError("unknown key")

    assert [str(p) for p in log.verify(nobody).problems] == [
        f"entry 0: the signer {verification_method_id(NODE_DID)} cannot be resolved: unknown key"
    ]


def test_nothing_readable_reaches_the_disk(vault: Vault, log: AuditLog) -> None:
    log.append("a2a.send", target=PEER_DID, details={"message": "meet at the lighthouse"})
    wal = Path(str(vault.path) + "-wal")
    on_disk = vault.path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    for plain in (PEER_DID, NODE_DID.removeprefix("did:key:"), "lighthouse", "a2a.send"):
        assert plain.encode() not in on_disk


def test_problem_text_names_the_entry() -> None:
    assert (
        str(AuditProblem(7, "hash does not match its content"))
        == "entry 7: hash does not match its content"
    )
    assert str(AuditProblem(None, "the head record is missing")) == "the head record is missing"
