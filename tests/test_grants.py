"""agent/grants.py: grants per DID, quotas that survive restarts, and bearer tokens, on a real vault."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.grants import (
    Grant,
    Grants,
    InvalidGrant,
    NotGranted,
    Quota,
    QuotaExceeded,
)
from agent.tokens import InvalidToken, TokenError, TokenNameTaken, Tokens
from identity.did_key import did_key_from_ed25519_public
from store.sealing import Sealer
from store.vault import Vault

DAY = 86400.0


def new_did() -> str:
    return did_key_from_ed25519_public(Ed25519PrivateKey.generate().public_key().public_bytes_raw())


OWNER = new_did()
PEER = new_did()


def vault_bytes(vault: Vault) -> bytes:
    """Everything SQLite has on disk for the vault, the write-ahead log included."""
    wal = Path(str(vault.path) + "-wal")
    return vault.path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


# --- grants ------------------------------------------------------------------------------------


def test_add_get_replace_list_remove(vault: Vault) -> None:
    grants = Grants(vault)
    other = new_did()
    grants.add(Grant(PEER, frozenset({"ask"}), note="Alice's agent"))
    grants.add(Grant(other, frozenset({"chat"})))
    grant = grants.get(PEER)
    assert grant is not None
    assert grant.allow == {"ask"}
    assert grant.note == "Alice's agent"

    grants.add(Grant(PEER, frozenset({"ask", "send"}), quota=Quota.parse("5/hour")))
    grant = grants.get(PEER)
    assert grant is not None
    assert grant.allow == {"ask", "send"}
    assert grant.quota == Quota(5, "hour")
    assert sorted(g.did for g in grants.list()) == sorted(
        [PEER, other]
    )  # replaced, not added twice

    assert grants.remove(PEER) is True
    assert grants.remove(PEER) is False
    assert grants.get(PEER) is None
    assert [g.did for g in grants.list()] == [other]


def test_grant_and_quota_validation() -> None:
    with pytest.raises(InvalidGrant, match="not an operation name"):
        Grant(PEER, frozenset({"Ask"}))
    with pytest.raises(InvalidGrant, match="not an operation name"):
        Grant(PEER, frozenset({"tool:"}))
    with pytest.raises(InvalidGrant, match="not an operation name"):
        Grant(PEER, frozenset({"tool:weather\n"}))  # the pattern's "$" alone would pass it
    with pytest.raises(InvalidGrant, match="DID"):
        Grant("alice", frozenset({"ask"}))
    assert Grant(PEER, frozenset({"tool:weather.today", "pod-read"})).allow == {
        "tool:weather.today",
        "pod-read",
    }
    assert Quota.parse(" 20/day ") == Quota(20, "day")
    assert str(Quota.parse("3/hour")) == "3/hour"
    for bad in ("20", "x/day", "20/week", "0/day", "-1/day"):
        with pytest.raises(InvalidGrant):
            Quota.parse(bad)


def test_owner_holds_every_grant_without_quota(vault: Vault) -> None:
    grants = Grants(vault)
    for op in ("ask", "send", "tool:anything"):
        grant = grants.authorize(OWNER, op, owner_did=OWNER)
        assert grant.allows(op) and grant.quota is None and grant.tags is None
    assert vault.records("usage") == []


def test_no_grant_and_wrong_operation_are_refused(vault: Vault) -> None:
    grants = Grants(vault)
    with pytest.raises(NotGranted, match="has no grant"):
        grants.authorize(PEER, "ask", owner_did=OWNER)
    grants.add(Grant(PEER, frozenset({"ask", "tool:weather"})))
    with pytest.raises(NotGranted, match="may not 'send'.*allows: ask, tool:weather"):
        grants.authorize(PEER, "send", owner_did=OWNER)
    assert grants.authorize(PEER, "ask", owner_did=OWNER).did == PEER
    assert grants.authorize(PEER, "tool:weather", owner_did=OWNER).did == PEER
    with pytest.raises(NotGranted):
        grants.authorize(PEER, "tool:mail", owner_did=OWNER)


def test_tags_none_means_all_and_empty_means_none(vault: Vault) -> None:
    grants = Grants(vault)
    everything, nothing, some = new_did(), new_did(), new_did()
    grants.add(Grant(everything, frozenset({"ask"}), tags=None))
    grants.add(Grant(nothing, frozenset({"ask"}), tags=frozenset()))
    grants.add(Grant(some, frozenset({"ask"}), tags=frozenset({"garden", "travel"})))
    assert grants.authorize(everything, "ask", owner_did=OWNER).tags is None
    assert grants.authorize(nothing, "ask", owner_did=OWNER).tags == frozenset()
    assert grants.authorize(some, "ask", owner_did=OWNER).tags == {"garden", "travel"}


def test_quota_exhausted_then_freed_by_the_sliding_window(vault: Vault) -> None:
    grants = Grants(vault)
    grants.add(Grant(PEER, frozenset({"ask"}), quota=Quota(3, "hour")))
    for t in (1000.0, 1010.0, 1020.0):
        grants.authorize(PEER, "ask", owner_did=OWNER, now=t)
    with pytest.raises(QuotaExceeded, match="3/hour.*try again in") as refused:
        grants.authorize(PEER, "ask", owner_did=OWNER, now=1030.0)
    assert refused.value.retry_after == pytest.approx(
        1000 + 3600 - 1030
    )  # when the oldest call leaves the window
    # A refused call uses nothing, and the first call's slot frees an hour after it was made.
    with pytest.raises(QuotaExceeded):
        grants.authorize(PEER, "ask", owner_did=OWNER, now=4599.0)
    grants.authorize(PEER, "ask", owner_did=OWNER, now=4601.0)
    with pytest.raises(QuotaExceeded) as again:
        grants.authorize(PEER, "ask", owner_did=OWNER, now=4602.0)
    assert again.value.retry_after == pytest.approx(1010 + 3600 - 4602)


def test_quota_use_survives_a_restart(tmp_path: Path, data_key: bytes) -> None:
    first = Vault(tmp_path / "vault.db", Sealer(data_key))
    Grants(first).add(Grant(PEER, frozenset({"ask"}), quota=Quota(2, "day")))
    Grants(first).authorize(PEER, "ask", owner_did=OWNER, now=DAY)
    Grants(first).authorize(PEER, "ask", owner_did=OWNER, now=DAY + 1)
    first.close()

    reopened = Vault(tmp_path / "vault.db", Sealer(data_key))
    with pytest.raises(QuotaExceeded):
        Grants(reopened).authorize(PEER, "ask", owner_did=OWNER, now=DAY + 2)
    reopened.close()


def test_removing_a_grant_forgets_its_quota_use(vault: Vault) -> None:
    grants = Grants(vault)
    grants.add(Grant(PEER, frozenset({"ask"}), quota=Quota(1, "day")))
    grants.authorize(PEER, "ask", owner_did=OWNER, now=DAY)
    grants.remove(PEER)
    grants.add(Grant(PEER, frozenset({"ask"}), quota=Quota(1, "day")))
    grants.authorize(PEER, "ask", owner_did=OWNER, now=DAY + 1)


def test_concurrent_calls_never_exceed_the_quota(vault: Vault) -> None:
    grants = Grants(vault)
    grants.add(Grant(PEER, frozenset({"ask"}), quota=Quota.parse("20/day")))
    allowed, refused, errors = [], [], []
    start = threading.Barrier(50)

    def call() -> None:
        start.wait()
        try:
            grants.authorize(PEER, "ask", owner_did=OWNER)
            allowed.append(1)
        except QuotaExceeded:
            refused.append(1)
        except Exception as other:  # noqa: BLE001 - anything else is a bug this test must show
            errors.append(other)

    threads = [threading.Thread(target=call) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert (len(allowed), len(refused)) == (20, 30)


def test_dids_never_reach_the_disk_in_plaintext(vault: Vault) -> None:
    grants = Grants(vault)
    grants.add(
        Grant(
            PEER,
            frozenset({"ask"}),
            tags=frozenset({"secret-tag"}),
            quota=Quota(5, "day"),
            note="Bob's agent",
        )
    )
    grants.authorize(PEER, "ask", owner_did=OWNER)
    on_disk = vault_bytes(vault)
    for plain in (PEER, PEER.removeprefix("did:key:"), "secret-tag", "Bob's agent"):
        assert plain.encode() not in on_disk


# --- tokens ------------------------------------------------------------------------------------


def test_token_create_verify_list_revoke(vault: Vault) -> None:
    tokens = Tokens(vault)
    token = tokens.create("laptop editor", {"chat"})
    assert token.startswith("flurry_") and len(token) == len("flurry_") + 43
    grant = tokens.verify(token)
    assert (grant.name, grant.allow) == ("laptop editor", {"chat"})
    assert grant.allows("chat") and not grant.allows("send")

    other = tokens.create("phone", {"chat", "ask"})
    assert other != token
    listed = {t.name: t.allow for t in tokens.list()}
    assert listed == {"laptop editor": {"chat"}, "phone": {"chat", "ask"}}
    assert token not in repr(tokens.list())

    assert tokens.revoke("laptop editor") is True
    assert tokens.revoke("laptop editor") is False
    with pytest.raises(InvalidToken, match="unknown or revoked"):
        tokens.verify(token)
    assert tokens.verify(other).name == "phone"


def test_bad_tokens_and_names_are_refused(vault: Vault) -> None:
    tokens = Tokens(vault)
    token = tokens.create("app", {"chat"})
    with pytest.raises(InvalidToken, match="unknown or revoked"):
        tokens.verify(token[:-1] + ("A" if token[-1] != "A" else "B"))
    with pytest.raises(InvalidToken, match="not a flurry token"):
        tokens.verify("sk-something")
    with pytest.raises(TokenNameTaken):
        tokens.create("app", {"chat"})
    with pytest.raises(TokenError, match="token name"):
        tokens.create("", {"chat"})
    with pytest.raises(InvalidGrant):
        tokens.create("other", {"Chat!"})


def test_tokens_never_reach_the_disk(vault: Vault) -> None:
    tokens = Tokens(vault)
    token = tokens.create("secret-app-name", {"chat"})
    tokens.verify(token)
    on_disk = vault_bytes(vault)
    assert token.encode() not in on_disk
    assert token.removeprefix("flurry_").encode() not in on_disk
    assert b"secret-app-name" not in on_disk
