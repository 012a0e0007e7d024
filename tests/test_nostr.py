"""Private messages over Nostr, end to end: nostr-sdk's LocalRelay on loopback, two real nodes
behind real uvicorn exchanging NIP-17 gift wraps through it (a granted question answered by the
model, an ungranted one left in the inbox), a plain nostr-sdk client reading what a node sent,
forged and broken wraps refused without stopping the listener, and the NIP-44 v2 vectors read
through the node's own receive path."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import httpx
import nostr_sdk
import pytest
from conftest import CORPUS, PASSPHRASE, Served, open_new_home
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import receipts
from agent.grants import Grant
from identity.did_key import did_key_from_ed25519_public, verification_method_id
from identity.errors import SignatureRejected
from identity.keyring import Keyring
from identity.nostr_http_auth import http_auth_header, verify_http_auth
from identity.nostr_key import (
    AGENT_MADE,
    LABEL_NAMESPACE,
    GiftWrapRejected,
    Nip44Error,
    NostrKey,
    conversation_key,
    decrypt,
    encrypt,
    gift_wrap,
    message_keys,
    open_payload,
    padded_length,
    public_key_of,
    rumor_json,
    unwrap,
)
from identity.signing_client import signed_client
from node.home import Home
from node.node import Node
from node.nostr_owner import NostrOwner, RemoteNostrOwner
from node.nostr_wire import SEEN_KIND, STATE_KIND
from node.owner import LocalOwner, OwnerError, RemoteOwner

VECTORS = json.loads((Path(__file__).parent / "vectors" / "nip44.vectors.json").read_text())["v2"]


# --- a relay and a plain Nostr client on their own event loop -------------------------------------


class Loop:
    """An asyncio loop on a thread, for nostr-sdk's async calls made by the test itself."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def loop():
    loop = Loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def relay(loop) -> Iterator[str]:
    """nostr-sdk's LocalRelay, on 127.0.0.1 only."""
    local = nostr_sdk.LocalRelayBuilder().addr("127.0.0.1").build()

    async def start() -> str:
        await local.run()
        return str(await local.url())

    url = loop.run(start())
    assert url.startswith("ws://127.0.0.1:")
    yield url
    local.shutdown()


class PlainClient:
    """Someone with nothing but nostr-sdk: a key and a client on the relay."""

    def __init__(self, loop: Loop, relay: str) -> None:
        self.loop = loop
        self.keys = nostr_sdk.Keys.generate()
        self.pubkey = bytes.fromhex(self.keys.public_key().to_hex())
        self.client = nostr_sdk.Client()
        loop.run(self._connect(relay))

    async def _connect(self, relay: str) -> None:
        await self.client.add_relay(nostr_sdk.RelayUrl.parse(relay))
        await self.client.connect()

    def publish(self, event: nostr_sdk.Event) -> None:
        output = self.loop.run(self.client.send_event(event))
        assert output.success, output.failed

    def wraps_for_me(self) -> list[nostr_sdk.Event]:
        wanted = nostr_sdk.Filter().kind(nostr_sdk.Kind(1059)).pubkey(self.keys.public_key())
        from datetime import timedelta

        return self.loop.run(
            self.client.fetch_events(
                nostr_sdk.ReqTarget.auto([wanted]), timeout=timedelta(seconds=3)
            )
        )

    def close(self) -> None:
        self.loop.run(self.client.shutdown())


# --- two nodes ------------------------------------------------------------------------------------


def _node(root: Path, name: str) -> Node:
    return open_new_home(root / name)


def _remote(served: Served) -> NostrOwner:
    keys = served.node.keys
    http = signed_client(
        keys.owner_key, verification_method_id(keys.owner_did), base_url=served.url, timeout=60
    )
    # Its methods are made from the operations table at import (node.owner.make_remote), which
    # the type checker cannot see: it is held to the protocol they are checked against.
    return cast(NostrOwner, RemoteNostrOwner(RemoteOwner(http)))


def _wait_for(check, timeout: float = 60, what: str = "the message"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} did not arrive within {timeout} s")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, models_dir, relay, monkeypatch_module):
    """A answers B's questions (B's node DID holds "ask", no vault tags); B grants A nothing.
    Both use the relay, and each has pinned the other (so each knows the other's Nostr key)."""
    monkeypatch_module.setenv("FLURRY_MODELS", str(models_dir))
    root = tmp_path_factory.mktemp("nostr")
    a, b = _node(root, "a"), _node(root, "b")
    for node in (a, b):
        from node.nostr_wire import add_relay

        add_relay(node.vault, relay)
    served_a, served_b = Served(a), Served(b)
    asyncio.run(LocalOwner(b).add_peer(served_a.url, "a"))
    asyncio.run(LocalOwner(a).add_peer(served_b.url, "b"))
    a.grants.add(Grant(did=b.keys.node_did, allow=frozenset({"ask"}), tags=frozenset()))
    yield served_a, served_b
    served_a.stop()
    served_b.stop()
    a.close()
    b.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


# --- the bars --------------------------------------------------------------------------------------


def test_a_granted_question_is_answered_through_the_relay(nodes):
    served_a, served_b = nodes
    a, b = served_a.node, served_b.node
    assert a.vault.get_record("nostr-peer", b.keys.nostr_public_key_hex)["did"] == b.keys.node_did

    sent = _remote(served_b).send("a", "Say hello in one short sentence.")
    assert sent["relays"] and sent["to"] == a.keys.nostr_key.uri

    reply = _wait_for(
        lambda: next(
            (m for m in _remote(served_b).inbox() if m["reply_to"] == sent["message_id"]), None
        ),
        timeout=240,  # the first question loads the chat model, on a machine that may be busy
        what="A's answer",
    )
    assert reply["peer_did"] == a.keys.node_did and reply["from"] == a.keys.nostr_public_key_hex
    assert reply["text"].strip() and reply["agent_made"] and reply["why"] == "a reply"
    # Each side recorded what it sent, labelled and signed, before it left.
    sent_entry = next(e for e in b.audit.entries() if e.action == "nostr.send")
    assert (
        sent_entry.details["event"] == sent["event_id"]
        and sent_entry.details["peer_did"] == a.keys.node_did
    )
    replied = next(e for e in a.audit.entries() if e.action == "nostr.reply")
    assert (
        replied.details["in_reply_to"] == sent["message_id"]
        and replied.details["text"] == reply["text"]
    )
    assert served_a.app.state.nostr.counts["answered"] == 1
    # The answer itself is not a question: B keeps it for its owner and does not answer it.
    assert served_b.app.state.nostr.counts["answered"] == 0


def test_a_peers_question_over_nostr_gets_only_the_verified_answer_and_its_quotes(nodes, tmp_path):
    """The one answer path and the one peer policy (issue 11, issue 12 item 8) over Nostr: the
    reply is the grounded answer and the quotes it rests on, drawn only from the tags the grant
    allows, never a file path; a tag the grant does not cover is not drawn on."""
    served_a, served_b = nodes
    a = served_a.node
    (tmp_path / "shared").mkdir()
    (tmp_path / "private").mkdir()
    (tmp_path / "shared" / "garden.md").write_text(CORPUS["garden.md"])
    (tmp_path / "private" / "dentist.md").write_text(CORPUS["health/dentist.md"])
    a.add(str(tmp_path / "shared"), tags=("shared",))
    a.add(str(tmp_path / "private"), tags=("private",))
    a.grants.add(
        Grant(did=served_b.node.keys.node_did, allow=frozenset({"ask"}), tags=frozenset({"shared"}))
    )
    try:

        def reply_to(question: str) -> dict:
            sent = _remote(served_b).send("a", question)
            return _wait_for(
                lambda: next(
                    (m for m in _remote(served_b).inbox() if m["reply_to"] == sent["message_id"]),
                    None,
                ),
                timeout=240,
                what="A's answer",
            )

        reply = reply_to("How should I fix the rain barrel?")
        said = reply["text"]
        # The quote comes from the evidence, whatever words the model chose around it.
        assert "replace the rubber seal" in said and "«" in said, said
        assert ".md" not in said and str(tmp_path) not in said
        # Issue 15: the answer's receipt rode inside the sealed reply; B kept it (signed by A,
        # made out to B, signing this very text); A kept the salt and tokens to re-execute it.
        rid = reply.get("receipt_id")
        assert rid, reply.get("receipt_error")
        kept = receipts.find_receipt(served_b.node.vault, rid)[1]
        assert kept["receipt"]["answer"]["sha256"] == receipts.answer_sha256(said)
        issued = receipts.find_receipt(a.vault, rid)[1]
        assert issued["issued"] and issued["receipt"] == kept["receipt"]
        said = reply_to("When is the dentist appointment?")["text"]  # only in the "private" tag
        assert "Almeida" not in said and "November" not in said, said
    finally:
        a.grants.add(
            Grant(did=served_b.node.keys.node_did, allow=frozenset({"ask"}), tags=frozenset())
        )
        a.forget(str(tmp_path))


def test_a_message_without_a_grant_waits_in_the_inbox(nodes):
    served_a, served_b = nodes
    a, b = served_a.node, served_b.node
    sent = _remote(served_a).send("b", "Are you free on Tuesday?")
    waiting = _wait_for(
        lambda: next(
            (m for m in _remote(served_b).inbox() if m["message_id"] == sent["message_id"]), None
        )
    )
    assert waiting["peer_did"] == a.keys.node_did and waiting["text"] == "Are you free on Tuesday?"
    assert "no grant" in waiting["why"] and waiting["reply_to"] is None
    assert (
        b.vault.get_record("nostr-inbox", waiting["id"])["text"] == waiting["text"]
    )  # a sealed vault record
    assert served_b.app.state.nostr.counts["answered"] == 0

    # The owner reads it, then clears it.
    assert _remote(served_b).remove_from_inbox(sent["message_id"])
    assert all(m["message_id"] != sent["message_id"] for m in _remote(served_b).inbox())


def test_a_plain_nostr_sdk_client_reads_what_the_node_sent_and_writes_to_its_inbox(
    nodes, loop, relay
):
    served_b = nodes[1]
    b = served_b.node
    plain = PlainClient(loop, relay)
    try:
        sent = _remote(served_b).send(
            plain.keys.public_key().to_bech32(), "hello from a flurry node"
        )
        wraps = _wait_for(lambda: plain.wraps_for_me(), what="the gift wrap")
        gift = nostr_sdk.UnwrappedGift.from_gift_wrap(plain.keys, wraps[0])
        assert gift.sender().to_hex() == b.keys.nostr_public_key_hex
        rumor = gift.rumor()
        assert rumor.kind().as_u16() == 14 and rumor.content() == "hello from a flurry node"
        tags = [t.to_vec() for t in rumor.tags()]
        assert ["l", AGENT_MADE, LABEL_NAMESPACE] in tags and [
            "on-behalf-of",
            b.keys.owner_did,
        ] in tags
        assert rumor.id().to_hex() == sent["message_id"]

        # Its answer, made by nostr-sdk's own NIP-17 code, lands in B's inbox: a stranger gets no task.
        plain.publish(
            nostr_sdk.nip17_make_private_msg(
                plain.keys, nostr_sdk.PublicKey.parse(b.keys.nostr_public_key_hex), "who is this?"
            )
        )
        waiting = _wait_for(
            lambda: next(
                (m for m in _remote(served_b).inbox() if m["text"] == "who is this?"), None
            )
        )
        assert waiting["peer_did"] is None and waiting["from"] == plain.keys.public_key().to_hex()
        assert "not a pinned peer" in waiting["why"]
    finally:
        plain.close()


def test_forged_and_broken_wraps_are_refused_and_the_listener_goes_on(nodes, loop, relay):
    served_b = nodes[1]
    b = served_b.node
    wire = served_b.app.state.nostr
    b_pub = bytes.fromhex(b.keys.nostr_public_key_hex)
    mallory, victim, someone_else = (
        NostrKey(bytes(31) + b"\x07"),
        NostrKey(bytes(31) + b"\x08"),
        NostrKey(bytes(31) + b"\x09"),
    )
    plain = PlainClient(loop, relay)
    try:
        rejected_before = wire.counts["rejected"]
        forged = _wrap(
            mallory, b_pub, rumor_json(victim, b_pub, "I am the victim")
        )  # seal by mallory, rumor says victim
        for_someone_else = _wrap(
            mallory, someone_else.public_key, rumor_json(mallory, b_pub, "hi"), p=b_pub
        )
        tampered = _wrap(mallory, b_pub, rumor_json(mallory, b_pub, "hi"), tamper=True)
        for event in (forged, for_someone_else, tampered):
            plain.publish(event)
        _wait_for(lambda: wire.counts["rejected"] - rejected_before == 3, what="three refusals")

        # Each refusal says why, through the same function the listener uses.
        with pytest.raises(GiftWrapRejected, match="signed by .*refused as forged"):
            unwrap(b.keys.nostr_key, forged.as_json())
        with pytest.raises(GiftWrapRejected, match="does not open: invalid MAC"):
            unwrap(b.keys.nostr_key, for_someone_else.as_json())
        with pytest.raises(GiftWrapRejected, match="does not open"):
            unwrap(b.keys.nostr_key, tampered.as_json())
        with pytest.raises(GiftWrapRejected, match="addressed to someone else"):
            unwrap(
                b.keys.nostr_key,
                gift_wrap(
                    mallory,
                    someone_else.public_key,
                    rumor_json(mallory, someone_else.public_key, "x"),
                ).as_json(),
            )
        edited = json.loads(forged.as_json()) | {"content": "AAAA"}
        with pytest.raises(GiftWrapRejected, match="id or signature does not verify"):
            unwrap(b.keys.nostr_key, json.dumps(edited))
        with pytest.raises(GiftWrapRejected, match="not a Nostr event"):
            unwrap(b.keys.nostr_key, "{not json")

        # Nothing of them reached the inbox, and the listener still reads the next good message.
        assert not [m for m in _remote(served_b).inbox() if m["text"] in ("I am the victim", "hi")]
        plain.publish(gift_wrap(mallory, b_pub, rumor_json(mallory, b_pub, "still listening?")))
        _wait_for(lambda: any(m["text"] == "still listening?" for m in _remote(served_b).inbox()))
    finally:
        plain.close()


def test_strangers_cannot_fill_the_inbox(nodes, loop, relay):
    served_b = nodes[1]
    b = served_b.node
    wire = served_b.app.state.nostr
    b_pub = bytes.fromhex(b.keys.nostr_public_key_hex)
    waiting = sum(1 for m in _remote(served_b).inbox() if m["peer_did"] is None)
    wire.max_from_strangers = waiting + 1
    plain = PlainClient(loop, relay)
    try:
        dropped = wire.counts["dropped"]
        for n, text in enumerate(("kept", "dropped")):
            stranger = NostrKey(bytes(31) + bytes([0x20 + n]))
            plain.publish(gift_wrap(stranger, b_pub, rumor_json(stranger, b_pub, f"spam {text}")))
        _wait_for(lambda: wire.counts["dropped"] == dropped + 1, what="the refusal to keep more")
        texts = [m["text"] for m in _remote(served_b).inbox()]
        assert "spam kept" in texts and "spam dropped" not in texts
    finally:
        wire.max_from_strangers = 200
        plain.close()


def test_resent_wraps_are_read_once_and_the_watermark_is_kept(nodes, loop, relay):
    served_b = nodes[1]
    b = served_b.node
    wire = served_b.app.state.nostr
    sender = NostrKey(bytes(31) + b"\x0a")
    b_pub = bytes.fromhex(b.keys.nostr_public_key_hex)
    plain = PlainClient(loop, relay)
    try:
        wrap = gift_wrap(sender, b_pub, rumor_json(sender, b_pub, "only once"))
        plain.publish(wrap)
        _wait_for(lambda: any(m["text"] == "only once" for m in _remote(served_b).inbox()))
        assert b.vault.get_record(SEEN_KIND, wrap.id().to_hex()) is not None
        watermark = _wait_for(
            lambda: b.vault.get_record(STATE_KIND, "watermark"), what="the watermark"
        )
        assert watermark["since"] <= time.time()

        # A restart asks the relay again: it sends every stored wrap, and none is read twice.
        received = wire.counts["received"]
        wire.reload()
        time.sleep(1.5)
        assert wire.counts["received"] == received
        assert [m["text"] for m in _remote(served_b).inbox()].count("only once") == 1
    finally:
        plain.close()


def test_the_node_names_its_nostr_key_in_its_did_document_and_signed_card(nodes):
    served_a = nodes[0]
    a = served_a.node
    document = httpx.get(served_a.url + "/.well-known/did.json").json()
    assert document["id"] == a.keys.node_did
    assert document["alsoKnownAs"] == [a.keys.nostr_key.uri] and a.keys.nostr_key.uri.startswith(
        "nostr:npub1"
    )
    card = httpx.get(served_a.url + "/.well-known/agent-card.json").json()
    extension = card["capabilities"]["extensions"][0]
    assert extension["params"]["pubkey"] == a.keys.nostr_public_key_hex


def test_a_card_cannot_claim_someone_elses_nostr_key(tmp_path):
    from identity.nostr_key import identity_proof
    from node.nostr_peers import CARD_EXTENSION_URI, link_peer_from_card
    from store.sealing import Sealer
    from store.vault import Vault

    vault = Vault(tmp_path / "v.sqlite3", Sealer(bytes(32)))
    victim = NostrKey(bytes(31) + b"\x0b")
    victim_did = did_key_from_ed25519_public(
        Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    )
    thief_did = did_key_from_ed25519_public(
        Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    )
    # The thief copies the victim's proof into its own card: the proof names the victim's DID.
    stolen = {
        "capabilities": {
            "extensions": [
                {
                    "uri": CARD_EXTENSION_URI,
                    "params": {
                        "pubkey": victim.public_key_hex,
                        "proof": identity_proof(victim, victim_did),
                    },
                }
            ]
        }
    }
    assert link_peer_from_card(vault, stolen, thief_did) is None
    assert link_peer_from_card(vault, stolen, victim_did) == victim.public_key_hex
    vault.close()


def test_the_nostr_key_is_the_same_at_every_unlock_and_unlock_writes_nothing(tmp_path):
    home = Home(tmp_path / "old")
    created = Node.init(home, PASSPHRASE)
    before = home.keyring.read_bytes()
    first = Keyring.unlock(home.keyring, PASSPHRASE)
    second = Keyring.unlock(home.keyring, PASSPHRASE)
    assert home.keyring.read_bytes() == before
    assert first.nostr_public_key_hex == second.nostr_public_key_hex == created.nostr_public_key_hex
    assert (
        first.nostr_public_key_hex
        != Node.init(Home(tmp_path / "other"), PASSPHRASE).nostr_public_key_hex
    )
    assert first.nostr_key.secret.hex() not in repr(first.nostr_key)


def test_owner_routes_refuse_strangers_and_bad_input_as_problems(nodes):
    served_b = nodes[1]
    stranger = Ed25519PrivateKey.generate()
    did = did_key_from_ed25519_public(stranger.public_key().public_bytes_raw())
    with signed_client(stranger, verification_method_id(did), base_url=served_b.url) as http:
        response = http.post("/api/owner/nostr/send", json={"peer": "a", "text": "hi"})
        assert (
            response.status_code == 403
            and response.headers["content-type"] == "application/problem+json"
        )
        assert http.get("/api/owner/inbox").status_code == 403
    assert httpx.get(served_b.url + "/api/owner/inbox").status_code == 401  # unsigned

    owner = _remote(served_b)
    for bad in ("http://relay.example.org", "wss://", "relay.example.org"):
        with pytest.raises(OwnerError, match="400: .*not a relay URL"):
            owner.add_relay(bad)
    with pytest.raises(OwnerError, match="400: .*neither a pinned peer"):
        owner.send("nobody", "hi")
    with pytest.raises(OwnerError, match="400: .*message is empty"):
        owner.send("a", "   ")
    with pytest.raises(OwnerError, match="400: .*missing or malformed field"):
        owner._call("POST", "/nostr/send", json={"peer": "a"})
    assert owner.list_relays() == [served_b.app.state.nostr.status()["relays"][0]]


def test_the_command_line_manages_relays_and_the_inbox(cli):
    # In process (CliRunner): the commands' arguments and error path.
    Node.init(Home(cli.home), PASSPHRASE)
    bad = cli("nostr", "relays", "add", "https://relay.example.org", check=False)
    assert bad.returncode == 1 and "ws:// or wss://" in bad.stderr and "Traceback" not in bad.stderr
    assert (
        "added wss://relay.example.org"
        in cli("nostr", "relays", "add", "wss://relay.example.org").stdout
    )
    shown = cli("nostr").stdout
    assert "npub1" in shown and "wss://relay.example.org" in shown
    assert cli("inbox").stdout.strip() == "the inbox is empty"


def test_nip98_lets_a_pinned_peer_call_the_api_under_its_did(nodes):
    served_a, served_b = nodes
    a, b = served_a.node, served_b.node
    key = b.keys.nostr_key
    whoami = served_a.url + "/api/whoami"
    header = http_auth_header(key, "GET", whoami)
    response = httpx.get(whoami, headers={"Authorization": header})
    assert response.json() == {"did": b.keys.node_did, "owner": False}

    def refused(response: httpx.Response, reason: str) -> None:
        assert response.status_code == 401, response.text
        assert (
            response.headers["content-type"] == "application/problem+json"
            and response.json()["reason"] == reason
        )

    refused(httpx.get(whoami, headers={"Authorization": header}), "replayed_nonce")
    refused(
        httpx.get(
            whoami,
            headers={"Authorization": http_auth_header(key, "GET", served_a.url + "/api/status")},
        ),
        "wrong_host",
    )
    refused(
        httpx.get(whoami, headers={"Authorization": http_auth_header(key, "POST", whoami)}),
        "components_not_covered",
    )
    stranger = NostrKey(bytes(31) + b"\x0c")
    refused(
        httpx.get(whoami, headers={"Authorization": http_auth_header(stranger, "GET", whoami)}),
        "unsupported_keyid",
    )
    refused(
        httpx.get(whoami, headers={"Authorization": "Nostr bm90IGFuIGV2ZW50"}), "signature_invalid"
    )

    # A body is bound by its hash: the grants then decide (B is not the owner).
    remove = served_a.url + "/api/owner/grants/remove"
    body = json.dumps({"did": b.keys.node_did}).encode()
    headers = {"content-type": "application/json"}
    response = httpx.post(
        remove,
        content=body,
        headers={**headers, "Authorization": http_auth_header(key, "POST", remove, body)},
    )
    assert response.status_code == 403 and response.json()["title"] == "owner only"
    assert a.grants.get(b.keys.node_did) is not None
    swapped = httpx.post(
        remove,
        content=b'{"did": "x"}',
        headers={**headers, "Authorization": http_auth_header(key, "POST", remove, body)},
    )
    refused(swapped, "body_tampered")
    unbound = httpx.post(
        remove,
        content=body,
        headers={**headers, "Authorization": http_auth_header(key, "POST", remove)},
    )
    refused(unbound, "missing_content_digest")
    with pytest.raises(SignatureRejected, match="s old"):
        verify_http_auth(
            http_auth_header(key, "GET", whoami), "GET", whoami, b"", now=time.time() + 120
        )


# --- NIP-44 v2 vectors, through the functions the receive path uses ---------------------------------


def test_nip44_valid_vectors():
    for v in VECTORS["valid"]["get_conversation_key"]:
        assert (
            conversation_key(bytes.fromhex(v["sec1"]), bytes.fromhex(v["pub2"])).hex()
            == v["conversation_key"]
        )
    keys = VECTORS["valid"]["get_message_keys"]
    for v in keys["keys"]:
        got = message_keys(bytes.fromhex(keys["conversation_key"]), bytes.fromhex(v["nonce"]))
        assert [k.hex() for k in got] == [v["chacha_key"], v["chacha_nonce"], v["hmac_key"]]
    for length, padded in VECTORS["valid"]["calc_padded_len"]:
        assert padded_length(length) == padded
    for v in VECTORS["valid"]["encrypt_decrypt"]:
        sec1, sec2 = bytes.fromhex(v["sec1"]), bytes.fromhex(v["sec2"])
        key = conversation_key(sec1, public_key_of(sec2))
        assert (
            key.hex() == v["conversation_key"] == conversation_key(sec2, public_key_of(sec1)).hex()
        )
        # The receive path: the recipient's secret, the sender's public key, the payload.
        assert open_payload(sec2, public_key_of(sec1), v["payload"]) == v["plaintext"]
        assert open_payload(sec1, public_key_of(sec2), v["payload"]) == v["plaintext"]
        assert encrypt(key, v["plaintext"], nonce=bytes.fromhex(v["nonce"])) == v["payload"]
        # nostr-sdk, given the same keys, reads the same payload: the two agree on the wire.
        assert (
            nostr_sdk.nip44_decrypt(
                nostr_sdk.SecretKey.parse(v["sec2"]),
                nostr_sdk.PublicKey.parse(public_key_of(sec1).hex()),
                v["payload"],
            )
            == v["plaintext"]
        )
    import hashlib

    for v in VECTORS["valid"]["encrypt_decrypt_long_msg"]:
        plaintext = v["pattern"] * v["repeat"]
        assert hashlib.sha256(plaintext.encode()).hexdigest() == v["plaintext_sha256"]
        payload = encrypt(
            bytes.fromhex(v["conversation_key"]), plaintext, nonce=bytes.fromhex(v["nonce"])
        )
        assert hashlib.sha256(payload.encode()).hexdigest() == v["payload_sha256"]
        assert decrypt(bytes.fromhex(v["conversation_key"]), payload) == plaintext


def test_nip44_invalid_vectors_are_refused_with_a_reason():
    reasons = {
        "unknown encryption version": "unknown encryption version",
        "invalid base64": "not valid base64",
        "invalid MAC": "invalid MAC",
        "invalid padding": "invalid padding",
        "invalid payload length": "payload",
    }
    for v in VECTORS["invalid"]["decrypt"]:
        expected = next(text for note, text in reasons.items() if v["note"].startswith(note))
        with pytest.raises(Nip44Error, match=expected):
            decrypt(bytes.fromhex(v["conversation_key"]), v["payload"])
    for v in VECTORS["invalid"]["get_conversation_key"]:
        with pytest.raises(Nip44Error, match="secp256k1|not a point"):
            conversation_key(bytes.fromhex(v["sec1"]), bytes.fromhex(v["pub2"]))
    key = bytes(range(32))
    for length in VECTORS["invalid"]["encrypt_msg_lengths"]:
        if length <= 100_000:  # the 10 MB one says the same, slower
            with pytest.raises(Nip44Error, match="1 to 65535 bytes"):
                encrypt(key, "x" * length)


# --- helpers -----------------------------------------------------------------------------------------


def _wrap(
    sender: NostrKey, recipient: bytes, rumor: str, *, p: bytes | None = None, tamper: bool = False
) -> nostr_sdk.Event:
    """A gift wrap built by hand, to forge what identity.nostr_key never writes."""
    seal_content = encrypt(conversation_key(sender.secret, recipient), rumor)
    if tamper:  # flip one byte of the sealed ciphertext; the outer signatures stay valid
        raw = bytearray(__import__("base64").b64decode(seal_content))
        raw[40] ^= 1
        seal_content = __import__("base64").b64encode(bytes(raw)).decode()
    seal = nostr_sdk.EventBuilder(nostr_sdk.Kind(13), seal_content).finalize(sender.sdk_keys())
    one_time = NostrKey(bytes(31) + b"\x63")
    content = encrypt(conversation_key(one_time.secret, recipient), seal.as_json())
    tags = [nostr_sdk.Tag.parse(["p", (p or recipient).hex()])]
    return (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(1059), content)
        .tags(tags)
        .finalize(one_time.sdk_keys())
    )


PUBLISHER = """
from skills.sdk import CapabilityDenied, Skill, node

def announce(text):
    try:
        return "published " + node.publish_nostr(text)["event_id"]
    except CapabilityDenied as e:
        return "refused: " + str(e)

def skill():
    return Skill(
        manifest={"name": "announcer", "version": "0.1.0", "description": "Publishes public notes.",
                  "permissions": ["nostr.publish"],
                  "tools": [{"name": "announce", "description": "Publish a public note.",
                             "parameters": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}}]},
        tools={"announce": announce},
    )
"""


def test_a_skill_granted_nostr_publish_posts_a_signed_labelled_note(nodes, loop, relay, tmp_path):
    from test_skills import make_wheel

    served_a, _ = nodes
    a = served_a.node
    a.skills.install(make_wheel(tmp_path, "announcer", "announcer_skill", PUBLISHER))
    a.skills.approve("announcer", [])
    try:
        refused = a._skill_process("announcer").call_tool("announce", {"text": "not granted"})
        assert refused == "refused: announcer was not granted nostr.publish"
        a.skills.approve("announcer", ["nostr.publish"])
        wire = served_a.app.state.nostr
        assert a.nostr is wire  # the server connected its wire to the node (the port)
        sent_before = wire.counts["sent"]
        published = a._skill_process("announcer").call_tool("announce", {"text": "Back on Monday."})
        event_id = published.removeprefix("published ")
        assert (
            wire.counts["sent"] == sent_before + 1
        )  # out on the server's running connection, not a brief one

        reader = PlainClient(loop, relay)  # anyone on the relay sees it, signed by A's Nostr key
        try:
            from datetime import timedelta

            wanted = (
                nostr_sdk.Filter()
                .kind(nostr_sdk.Kind(1))
                .author(nostr_sdk.PublicKey.parse(a.keys.nostr_public_key_hex))
            )
            notes = loop.run(
                reader.client.fetch_events(
                    nostr_sdk.ReqTarget.auto([wanted]), timeout=timedelta(seconds=3)
                )
            )
        finally:
            reader.close()
        note = next(n for n in notes if n.id().to_hex() == event_id)
        assert note.content() == "Back on Monday." and note.verify()
        tags = [t.to_vec() for t in note.tags()]
        assert ["l", "agent-made", "flurry"] in tags and ["on-behalf-of", a.keys.owner_did] in tags
        entry = next(e for e in a.audit.entries() if e.action == "nostr.publish")
        assert entry.details["event"] == event_id and entry.details["skill"] == "announcer"
    finally:
        a.stop_skill("announcer")
        a.skills.remove("announcer")
