"""Key rotation (issue 14, item 5): `flurry keys rotate`, the signed chain it keeps and serves,
a real second node on loopback that follows it only when it verifies, and kill -9 in the
middle of a rotation. No model is loaded: nothing here asks a question that gets answered."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import conftest
import httpx
import pytest
from conftest import PASSPHRASE, Served
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from agent.grants import Grant
from identity.did_key import (
    did_key_from_ed25519_public,
    ed25519_public_from_did_key,
    verification_method_id,
)
from identity.jws import canonical_json
from identity.keyring import Keyring, KeyringError, UnlockedKeyring
from identity.rotation import (
    MAX_CHAIN_BYTES,
    MAX_LINKS,
    RotationRejected,
    chain_document,
    make_statement,
    parse_chain,
    verify_chain,
)
from identity.signing_client import signed_client
from node.home import Home, HomeError
from node.node import Node
from node.nostr_peers import PEER_KEY_KIND, peer_key_for
from node.owner import LocalOwner, OwnerError
from node.peering import send_to_peer
from node.peers import CARD_PATH, find_peer, list_peers, verify_card
from node.rotation import (
    CARD_EXTENSION_URI,
    CHAIN_PATH,
    PUSH_PATH,
    RETIRED_KIND,
    announce,
    card_rotations,
    rotate_home,
)


def _key() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    return key, did_key_from_ed25519_public(key.public_key().public_bytes_raw())


def _did(key: Ed25519PrivateKey) -> str:
    return did_key_from_ed25519_public(key.public_key().public_bytes_raw())


def _audit_key(did_url: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(ed25519_public_from_did_key(did_url))


def _keys(n: int) -> list[Ed25519PrivateKey]:
    return [Ed25519PrivateKey.generate() for _ in range(n)]


def _chain_of(*pairs: tuple[Ed25519PrivateKey, Ed25519PrivateKey]) -> list[dict]:
    """Statements rotating through ``pairs`` of (owner, node) keys, one second apart."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    return [
        make_statement(*pairs[i], *pairs[i + 1], issued=start + timedelta(seconds=i))
        for i in range(len(pairs) - 1)
    ]


# --- the statement and the chain, on their own ------------------------------------------------


def test_a_chain_verifies_and_names_each_retired_did_s_latest_successor():
    p0, p1, p2 = (tuple(_keys(2)) for _ in range(3))
    chain = parse_chain(canonical_json(chain_document(_chain_of(p0, p1, p2))))
    did = lambda key: did_key_from_ed25519_public(key.public_key().public_bytes_raw())  # noqa: E731
    assert chain.owner == did(p2[0]) and chain.node == did(p2[1])
    # Any DID in the chain leads to the latest one in its role, never to an intermediate one.
    assert chain.successor(did(p0[1])) == chain.successor(did(p1[1])) == did(p2[1])
    assert chain.successor(did(p0[0])) == did(p2[0])
    assert chain.successor(did(p2[1])) is None


def _reason(statements: object) -> str:
    with pytest.raises(RotationRejected) as refused:
        verify_chain(statements)
    return refused.value.reason


def test_statements_that_do_not_hold_are_refused_with_a_reason():
    p0, p1, p2 = (tuple(_keys(2)) for _ in range(3))
    good = _chain_of(p0, p1, p2)

    # Signed by a stranger instead of the retired node key.
    stranger = Ed25519PrivateKey.generate()
    forged = make_statement(p0[0], stranger, *p1)
    forged["previous"]["node"] = good[0]["previous"]["node"]
    assert _reason([forged]) == "bad_signature"  # the payload changed under the signatures
    # A stranger's valid signature in place of the retired node key's.
    from identity.jws import sign_json

    swapped = json.loads(json.dumps(good[0]))
    swapped["signatures"][1] = sign_json(
        swapped, stranger, kid=verification_method_id(_did(stranger))
    )
    assert _reason([swapped]) == "wrong_signers"

    # A Nostr key named without its own proof, though all four keys signed the statement.
    unproven = {name: value for name, value in good[0].items() if name != "signatures"}
    unproven["next"] = {**unproven["next"], "nostr": "ab" * 32}
    unproven["signatures"] = [
        sign_json(unproven, key, kid=verification_method_id(_did(key))) for key in (*p0, *p1)
    ]
    assert _reason([unproven]) == "bad_nostr_proof"

    # Any change to a signed statement breaks its signatures.
    tampered = json.loads(json.dumps(good[0]))
    tampered["next"]["node"] = verification_method_id(_key()[1]).partition("#")[0]
    assert _reason([tampered]) == "bad_signature"

    # A signature missing, or one too many.
    short = {**good[0], "signatures": good[0]["signatures"][:3]}
    assert _reason([short]) == "wrong_signers"
    doubled = {**good[0], "signatures": good[0]["signatures"][:3] + good[0]["signatures"][:1]}
    assert _reason([doubled]) == "wrong_signers"

    # Truncated: the middle of a chain cut out.
    assert _reason([good[1], good[0]]) in ("broken_chain", "out_of_order")
    p3 = tuple(_keys(2))
    longer = _chain_of(p0, p1, p2, p3)
    assert _reason([longer[0], longer[2]]) == "broken_chain"

    # A loop: back to keys the chain already left.
    looped = _chain_of(p0, p1, p0)
    assert _reason(looped) == "loop"

    # Issued in the wrong order, or in the future.
    now = datetime.now(UTC).replace(microsecond=0)
    late, early = (
        make_statement(*p0, *p1, issued=now),
        make_statement(*p1, *p2, issued=now - timedelta(days=1)),
    )
    assert _reason([late, early]) == "out_of_order"
    assert _reason([make_statement(*p0, *p1, issued=now + timedelta(days=1))]) == "future"

    # Not a statement at all.
    assert _reason([]) == "malformed"
    assert _reason([{"type": "flurry-key-rotation"}]) == "malformed"


def test_a_chain_is_bounded_before_it_is_read():
    with pytest.raises(RotationRejected) as refused:
        parse_chain(b"[" * (MAX_CHAIN_BYTES + 1))
    assert refused.value.reason == "too_large"
    with pytest.raises(RotationRejected) as refused:
        parse_chain(b"[" * 10_000 + b"]" * 10_000)  # deep nesting within the bound
    assert refused.value.reason == "malformed"
    with pytest.raises(RotationRejected) as refused:
        parse_chain(b'{"type": "flurry-key-rotations", "statements": [1e999]}')
    assert refused.value.reason == "malformed"
    statement = _chain_of(tuple(_keys(2)), tuple(_keys(2)))[0]
    assert _reason([statement] * (MAX_LINKS + 1)) == "too_many_links"
    padded = {**statement, "issued": statement["issued"] + " " * 5000}
    assert _reason([padded]) == "too_large"


# --- the command line ---------------------------------------------------------------------


def test_keys_rotate_through_the_command_line_keeps_data_grants_and_audit(cli, flurry):
    cli("init")
    home = Home(Path(cli.env["FLURRY_HOME"]))
    before = json.loads(cli("keys", "show", "--json").stdout)
    assert before["rotations"] == []
    peer_did = _key()[1]
    cli("grants", "add", peer_did, "--allow", "ask", "--note", "a friend")
    cli("tokens", "create", "editor")
    with Node.open(home, PASSPHRASE, say=lambda line: None) as node:
        node.audit.append("test.before", target="here", details={})  # signed by the first key
        data_key = node.keys.data_key

    rotated = cli("keys", "rotate")
    after = json.loads(cli("keys", "show", "--json").stdout)
    assert after["owner_did"] != before["owner_did"] and after["node_did"] != before["node_did"]
    assert before["owner_did"] in rotated.stdout and after["owner_did"] in rotated.stdout
    assert "no pinned peers" in rotated.stdout
    [statement] = after["rotations"]
    assert statement["previous"] == {"owner": before["owner_did"], "node": before["node_did"]}
    assert verify_chain(after["rotations"]).node == after["node_did"]
    assert "rotation 1" in cli("keys", "show").stdout

    # A second rotation names the first one's successor.
    cli("keys", "rotate")
    latest = json.loads(cli("keys", "show", "--json").stdout)
    chain = verify_chain(latest["rotations"])
    assert latest["rotations"][1]["previous"]["node"] == after["node_did"]
    assert chain.successor(before["node_did"]) == latest["node_did"]

    # Same data key, same grants and tokens; the audit log holds entries of all three keys,
    # the rotations among them, and verifies.
    with Node.open(home, PASSPHRASE, say=lambda line: None) as node:
        assert node.keys.data_key == data_key
        assert node.grants.get(peer_did) is not None
        assert [t.name for t in node.tokens.list()] == ["editor"]
        entries = node.audit.entries()
        assert [e.action for e in entries] == ["test.before", "keys.rotate", "keys.rotate"]
        signers = [e.signer.partition("#")[0] for e in entries]
        assert signers == [before["node_did"], after["node_did"], latest["node_did"]]
        assert entries[1].details["next"]["owner"] == after["owner_did"]
        assert node.audit.verify(_audit_key).ok
        node.audit.append("test.after", target="here", details={})
        assert node.audit.verify(_audit_key).ok
    assert "4 entries" in cli("audit", "verify").stdout

    # The wrong passphrase rotates nothing.
    wrong = cli("keys", "rotate", check=False, FLURRY_PASSPHRASE="not it")
    assert wrong.returncode == 1 and "wrong passphrase" in wrong.stderr
    assert json.loads(cli("keys", "show", "--json").stdout) == latest


def test_an_entry_by_a_retired_key_after_the_rotation_does_not_verify(tmp_path, models_dir):
    home = Home(tmp_path / "home")
    Node.init(home, PASSPHRASE)
    old = Keyring.unlock(home.keyring, PASSPHRASE)
    rotate_home(home, PASSPHRASE)
    with Node.open(home, PASSPHRASE, say=lambda line: None) as node:
        # Someone holding the data key and the old node key writes as the old key.
        from agent.audit import AuditLog

        AuditLog(node.vault, signer_did=old.node_did, sign=old.node_key.sign).append(
            "test.forged", target="here", details={}
        )
        report = node.audit.verify(_audit_key)
    assert [str(p) for p in report.problems] == [
        f"entry 1: signed by {verification_method_id(old.node_did)}, "
        "a key this node had already rotated away from"
    ]


def test_rotation_refuses_while_the_node_is_served(cli):
    cli("init")
    home = Home(Path(cli.env["FLURRY_HOME"]))
    # What `flurry serve` writes while it runs (node.serve): a live process and its URL.
    home.serve_info.write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": os.getpid()}))
    refused = cli("keys", "rotate", check=False)
    assert refused.returncode == 1 and "stop it, rotate" in refused.stderr
    assert json.loads(cli("keys", "show", "--json").stdout)["rotations"] == []


# --- two real nodes on loopback ------------------------------------------------------------


def _open(home: Home) -> Node:
    return Node.open(home, PASSPHRASE, say=lambda line: None)


def _served_at(node: Node, port: int, monkeypatch) -> Served:
    """The node behind uvicorn on ``port``: a node that comes back after a rotation keeps its URL."""
    monkeypatch.setattr(conftest, "free_port", lambda: port)
    served = Served(node)
    monkeypatch.undo()
    return served


def _push(keys_of: tuple[Ed25519PrivateKey, str], url: str, body: bytes) -> httpx.Response:
    key, did = keys_of
    with signed_client(key, verification_method_id(did), timeout=30) as http:
        return http.post(
            url + PUSH_PATH, content=body, headers={"Content-Type": "application/json"}
        )


def _state_of(node: Node) -> tuple:
    """What a rotation may move on a node: pins, grants, Nostr links, retired DIDs."""
    return (
        sorted((p.name, p.did) for p in list_peers(node.vault)),
        sorted(g.did for g in node.grants.list()),
        sorted((k, v["did"]) for k, v in node.vault.records(PEER_KEY_KIND)),
        sorted(k for k, _ in node.vault.records(RETIRED_KIND)),
    )


def test_a_pinned_peer_follows_a_rotation_only_with_the_signed_chain(
    tmp_path, models_dir, monkeypatch
):
    os.environ["FLURRY_MODELS"] = str(models_dir)
    home_a, home_b, home_c = (Home(tmp_path / n) for n in "abc")
    for home in (home_a, home_b, home_c):
        Node.init(home, PASSPHRASE)
    a, b, c = _open(home_a), _open(home_b), _open(home_c)
    port_a = conftest.free_port()
    served_a, served_b = _served_at(a, port_a, monkeypatch), Served(b)
    try:
        old = a.keys
        # B pins A (and A's Nostr key, from its card) and grants A's node; A pins B; C pins A.
        asyncio.run(LocalOwner(b).add_peer(served_a.url, "alice"))
        b.grants.add(Grant(did=old.node_did, allow=frozenset({"ask"}), tags=frozenset({"travel"})))
        asyncio.run(LocalOwner(a).add_peer(served_b.url, "bob"))
        asyncio.run(LocalOwner(c).add_peer(served_a.url, "alice"))
        assert peer_key_for(b.vault, old.node_did) == old.nostr_public_key_hex
        served_a.stop()
        a.close()

        first = rotate_home(home_a, PASSPHRASE)
        a = _open(home_a)
        new_key = (first.node_key, first.node_did)
        chain_body = canonical_json(chain_document(first.rotations))

        # Without the statement, the new DID is a stranger to B: no grant, no pin.
        with signed_client(
            first.node_key, verification_method_id(first.node_did), timeout=30
        ) as http:
            asked = http.post(served_b.url + "/api/ask", json={"question": "hello?"})
        assert asked.status_code == 403
        unchanged = _state_of(b)

        # Attacks on the push, each refused with nothing changed on B.
        stranger_key, stranger_did = _key()
        forged = make_statement(
            old.owner_key, Ed25519PrivateKey.generate(), first.owner_key, first.node_key
        )
        attacks = {
            "chain signed for another DID than the request's": (
                (stranger_key, stranger_did),
                chain_body,
                403,
                "but " + stranger_did,
            ),
            "statement not signed by the pinned node key": (
                new_key,
                canonical_json(chain_document([forged])),
                403,
                "no DID this node knows",
            ),
            "a statement altered after signing": (
                new_key,
                canonical_json(
                    chain_document([{**first.rotations[0], "issued": "2020-01-01T00:00:00Z"}])
                ),
                400,
                "",
            ),
            "oversized": (new_key, b" " * (MAX_CHAIN_BYTES + 1), 413, ""),
            "no chain at all": (new_key, b"{}", 400, ""),
        }
        for what, (signer, body, status, says) in attacks.items():
            response = _push(signer, served_b.url, body)
            assert response.status_code == status, (what, response.text)
            assert says in response.json()["detail"], what
            assert _state_of(b) == unchanged, what

        # The real announcement: B moves its pin, grant and Nostr link to A's new DIDs.
        [told] = asyncio.run(announce(a.keys, a.vault, a.audit))
        assert told["ok"], told
        assert find_peer(b.vault, "alice").did == first.node_did
        grant = b.grants.get(first.node_did)
        assert grant is not None and grant.tags == frozenset({"travel"})
        assert b.grants.get(old.node_did) is None
        assert peer_key_for(b.vault, first.node_did) == first.nostr_public_key_hex
        assert peer_key_for(b.vault, old.node_did) is None
        assert [e.action for e in b.audit.entries()][-1:] == ["peer.rotated"]
        # Pushed again: nothing more to move, and nothing refused.
        assert asyncio.run(announce(a.keys, a.vault, a.audit))[0]["detail"] == "already current"
        with signed_client(old.node_key, verification_method_id(old.node_did), timeout=30) as http:
            assert http.post(served_b.url + "/api/ask", json={"question": "hi"}).status_code == 403
        assert [e.action for e in a.audit.entries()] == [
            "keys.rotate",
            "keys.announce",
            "keys.announce",
        ]

        # A second rotation; B follows to the latest keys.
        a.close()
        second = rotate_home(home_a, PASSPHRASE)
        a = _open(home_a)
        asyncio.run(announce(a.keys, a.vault, a.audit))
        assert find_peer(b.vault, "alice").did == second.node_did
        after_second = _state_of(b)

        # A replay of the first statement, by the first successor's key: history, not the pin.
        replay = _push(new_key, served_b.url, chain_body)
        assert replay.status_code == 403 and "already rotated to" in replay.json()["detail"]
        # A conflicting successor of a retired DID (its keys leaked) is refused as well.
        fork_owner, fork_node = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        fork = make_statement(first.owner_key, first.node_key, fork_owner, fork_node)
        fork_did = did_key_from_ed25519_public(fork_node.public_key().public_bytes_raw())
        forked = canonical_json(chain_document([first.rotations[0], fork]))
        refused = _push((fork_node, fork_did), served_b.url, forked)
        assert refused.status_code == 403 and "conflicting" in refused.json()["detail"], (
            refused.text
        )
        assert _state_of(b) == after_second

        # What A serves about itself names the chain.
        served_a = _served_at(a, port_a, monkeypatch)
        with httpx.Client(base_url=served_a.url, timeout=30) as http:
            served_chain = http.get(CHAIN_PATH).json()
            did_document = http.get("/.well-known/did.json").json()
            profile = http.get("/profile/card", headers={"Accept": "text/turtle"}).text
            card = http.get(CARD_PATH).json()
        assert verify_chain(served_chain["statements"]).node == second.node_did
        assert served_chain["node"] == second.node_did
        assert did_document["id"] == second.node_did
        assert did_document["alsoKnownAs"][1:] == [first.node_did, old.node_did]
        assert did_document["service"][0]["serviceEndpoint"] == served_a.url + CHAIN_PATH
        assert old.owner_did in profile and first.owner_did in profile and CHAIN_PATH in profile
        assert verify_card(card) == second.node_did
        assert verify_chain(card_rotations(card)).node == second.node_did
        assert any(e["uri"] == CARD_EXTENSION_URI for e in card["capabilities"]["extensions"])

        # C was never told; it follows the chain in A's card the next time it sends to A.
        assert find_peer(c.vault, "alice").did == old.node_did
        with pytest.raises(OwnerError, match="403"):  # A gave C no grant: the send is refused,
            asyncio.run(send_to_peer(c, "alice", "hello?"))  # but to the right node
        assert find_peer(c.vault, "alice").did == second.node_did
        assert peer_key_for(c.vault, second.node_did) == second.nostr_public_key_hex
        assert [e.action for e in c.audit.entries()] == ["peer.rotated", "a2a.send"]

        # A pin that the chain does not lead from is not moved: a card signed by another DID
        # is refused as before.
        from node.peers import add_peer

        other = _key()[1]
        add_peer(c.vault, served_a.url, other, "alice")
        with pytest.raises(OwnerError, match="not the pinned"):
            asyncio.run(send_to_peer(c, "alice", "hello?"))
        assert find_peer(c.vault, "alice").did == other
        served_a.stop()
    finally:
        served_b.stop()
        for node in (a, b, c):
            node.close()


# --- kill -9 in the middle of a rotation ----------------------------------------------------------

# The child runs the real `flurry keys rotate` with one real function wrapped: it says where it
# is and waits to be killed there.
_CHILD = r"""
import os, sys, time
moment = sys.argv[1]
real_replace = os.replace

def stop_here():
    print("at " + moment, flush=True)
    time.sleep(120)

def replace(src, dst):
    keyring = str(dst).endswith("keyring.json")
    if keyring and moment == "before-rename":
        stop_here()
    real_replace(src, dst)
    if keyring and moment == "after-rename":
        stop_here()

os.replace = replace
import node.cli.keys as keys
real_announce = keys.announce

async def announce(*args, **kwargs):
    if moment == "after-audit":
        stop_here()
    return await real_announce(*args, **kwargs)

keys.announce = announce
from node.cli import main
sys.argv = ["flurry", "keys", "rotate"]
main()
"""


@pytest.mark.parametrize("moment", ["before-rename", "after-rename", "after-audit"])
def test_kill_9_during_rotate_leaves_the_old_keys_or_the_new_ones(flurry, moment):
    home = Home(flurry.home)
    Node.init(home, PASSPHRASE)  # in this process: only the rotation needs to be a real `flurry`
    before = Keyring.read_public(home.keyring)
    if moment == "after-audit":  # a pinned peer, so that the rotation has someone to tell
        with _open(home) as node:
            from node.peers import add_peer

            add_peer(node.vault, "http://127.0.0.1:9", _key()[1], "gone")
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, moment],
        env=flurry.env,
        cwd=flurry.cwd,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        lines = iter(child.stdout.readline, "")  # the command's own output comes first
        assert f"at {moment}" in (line.strip() for line in lines)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)

    keys = Keyring.unlock(home.keyring, PASSPHRASE)
    expected_new = moment != "before-rename"
    assert (keys.node_did != before["node_did"]) is expected_new
    if expected_new:
        assert verify_chain(list(keys.rotations)).node == keys.node_did
        assert keys.rotations[0]["previous"]["node"] == before["node_did"]
    else:
        assert keys.rotations == ()
    # The node opens, and its audit log holds the rotation whether or not the killed process
    # wrote it (a missing entry is written at open).
    with _open(home) as node:
        actions = [e.action for e in node.audit.entries()]
        assert actions == (["keys.rotate"] if expected_new else [])
        assert node.audit.verify(_audit_key).ok
    # A left-over temp file of the killed write is all there is besides the keyring (and the
    # writers' lock file, identity.keyring._writer_lock).
    assert {
        p.name for p in home.keyring.parent.glob("*keyring*") if not p.name.endswith(".tmp")
    } == {"keyring.json", "keyring.json.lock"}


def test_rotation_refuses_a_home_without_a_keyring(tmp_path):
    with pytest.raises(HomeError, match="flurry init"):
        rotate_home(Home(tmp_path / "nothing"), PASSPHRASE)


def test_a_keyring_whose_last_statement_names_other_keys_is_damaged(tmp_path):
    path = tmp_path / "keyring.json"
    Keyring.create(path, PASSPHRASE)
    rotated: UnlockedKeyring = Keyring.rotate(path, PASSPHRASE)
    document = json.loads(path.read_text())
    other = _chain_of(tuple(_keys(2)), tuple(_keys(2)))
    document["rotations"] = other
    from identity.keyring import _checksum  # the damage must be past the checksum to be seen

    document["checksum"] = _checksum(document)
    path.write_text(json.dumps(document))
    from identity.keyring import KeyringCorrupt

    with pytest.raises(KeyringCorrupt, match="last rotation statement"):
        Keyring.unlock(path, PASSPHRASE)
    assert rotated.rotations


def test_a_rotation_replaces_the_recovery_code_whose_copy_holds_the_retired_keys(tmp_path):
    """The recovery section seals the seeds a second way: after a rotation the old code would
    bring the retired keys back. So rotating needs (and seals under) a new code; the old one
    then opens nothing."""
    from identity.keyring import WrongRecoveryCode
    from identity.recovery_code import RecoveryCode

    path = tmp_path / "keyring.json"
    old_code = RecoveryCode.generate()
    first = Keyring.create(path, PASSPHRASE, old_code)
    untouched = path.read_bytes()
    with pytest.raises(KeyringError, match="needs a new recovery code"):
        Keyring.rotate(path, PASSPHRASE)
    assert path.read_bytes() == untouched  # refused before writing

    new_code = RecoveryCode.generate()
    rotated = Keyring.rotate(path, PASSPHRASE, new_code)
    assert rotated.node_did != first.node_did
    with pytest.raises(WrongRecoveryCode):
        Keyring.unlock_with_recovery_code(path, old_code)
    recovered = Keyring.recover(path, new_code, "a new passphrase")
    assert (recovered.owner_did, recovered.node_did) == (rotated.owner_did, rotated.node_did)
    assert recovered.data_key == first.data_key and recovered.rotations == rotated.rotations
    assert Keyring.unlock(path, "a new passphrase").node_did == rotated.node_did


def test_keys_rotate_on_the_command_line_prints_the_new_recovery_code(cli):
    import re

    from identity.recovery_code import RecoveryCode

    def printed_code(output: str) -> RecoveryCode:
        numbered = re.findall(r"(\d+) ([a-z]+)", output.split("Recovery code", 1)[1])
        assert len(numbered) == 24
        return RecoveryCode.from_words(" ".join(word for _, word in numbered))

    old_code = printed_code(cli("init").stdout)
    rotated = cli("keys", "rotate").stdout
    assert "Recovery code (new: the old one no longer works)" in rotated
    new_code = printed_code(rotated)
    keyring = Path(cli.env["FLURRY_HOME"]) / "keyring.json"
    public = Keyring.read_public(keyring)
    assert Keyring.unlock_with_recovery_code(keyring, new_code).node_did == public["node_did"]
    with pytest.raises(KeyringError):
        Keyring.unlock_with_recovery_code(keyring, old_code)
