"""Metered inference between two real nodes on loopback (issue 15): B grants A "infer", A
runs prompts on B's model (the real SmolLM2) over A2A and the OpenAI-compatible /v1, and both
ledgers agree to the token. Every refusal (no grant, over a token quota, max_tokens over the
cap, an oversized prompt, reaching the owner's data or tools through infer) is a clear error
with nothing charged."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import Served, open_new_home, write_corpus
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import receipts
from agent.grants import Grant, Quota
from agent.grounding import NOT_FOUND
from agent.tokens import TokenError
from identity.did_key import did_key_from_ed25519_public, verification_method_id
from identity.signing_client import signed_client
from node import infer
from node.errors import OwnerError
from node.ledger import Ledger
from node.node import Node
from node.owner import LocalOwner

SECRET = "the spare key is under the blue flowerpot"  # in B's notes; infer must never reach it


def _node(root, name: str) -> Node:
    return open_new_home(root / name)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, models_dir) -> Iterator[tuple[Node, Node]]:
    """A asks; B lends its model, and holds notes with a secret."""
    root = tmp_path_factory.mktemp("infer")
    os.environ["FLURRY_MODELS"] = str(models_dir)
    a, b = _node(root, "a"), _node(root, "b")
    notes = write_corpus(root / "notes")
    (notes / "secret.md").write_text(f"# Home\n\n{SECRET}.\n")
    b.add(str(notes))
    yield a, b
    a.close()
    b.close()


@pytest.fixture(scope="module")
def served(served_pair) -> tuple[Served, Served]:
    return served_pair


@pytest.fixture
def lent(nodes, served) -> Iterator[Grant]:
    """B grants A's node DID "infer": 2000 tokens an hour, 5000 a day, 32 per answer; A pins B."""
    a, b = nodes
    grant = Grant(
        did=a.keys.node_did,
        allow=frozenset({"infer"}),
        tokens=(Quota(2000, "hour"), Quota(5000, "day")),
        max_tokens=32,
    )
    b.grants.add(grant)
    if not any(p["name"] == "b" for p in LocalOwner(a).list_peers()):
        asyncio.run(LocalOwner(a).add_peer(served[1].url, "b"))
    yield grant
    b.grants.remove(a.keys.node_did)


def _v1(node: Node, url: str) -> httpx.Client:
    """A client signing as ``node``'s node key (agent-made on its owner's behalf)."""
    keys = node.keys
    return signed_client(
        keys.node_key,
        verification_method_id(keys.node_did),
        keys.owner_did,
        base_url=url,
        timeout=120,
    )


def _chat(text: str, **extra) -> dict:
    return {"model": "flurry", "messages": [{"role": "user", "content": text}], **extra}


def _served_for(b: Node, did: str):
    return Ledger(b.vault).entries(peer=did, direction="served")


def test_a_runs_prompts_on_b_over_a2a_and_v1_and_both_ledgers_agree(nodes, served, lent):
    a, b = nodes
    owner_a = LocalOwner(a)
    left_before = b.grants.tokens_left(a.keys.node_did)

    # Over A2A, as `flurry infer b PROMPT` does: the usage comes back with the answer.
    replies = [
        asyncio.run(owner_a.infer("b", prompt, 16, 0.0))
        for prompt in ("Name three colours.", "What is two plus two?")
    ]
    for reply in replies:
        assert reply["state"] == "TASK_STATE_COMPLETED" and reply["text"]
        assert 1 <= reply["usage"]["completion_tokens"] <= 16
        # B signed a receipt of the run, made out to A; A kept it (sealed) to verify later.
        assert reply.get("receipt_id"), reply.get("receipt_error")
    # A has the same model file: it re-executes each kept receipt with the prompt it sent and
    # gets B's tokens back exactly (greedy), and the fast prefill check agrees.
    for prompt, reply in zip(
        ("Name three colours.", "What is two plus two?"), replies, strict=True
    ):
        found = receipts.find_receipt(a.vault, reply["receipt_id"])
        assert found is not None
        kept = found[1]
        messages = [{"role": "user", "content": prompt}]
        verdict = receipts.verify(kept["receipt"], a.chat_model, messages)
        assert verdict.verdict == "verified", verdict
        fast = receipts.verify(
            kept["receipt"], a.chat_model, messages, kept["output_tokens"], fast=True
        )
        assert fast.verdict == "verified", fast
        assert kept["receipt"]["issuer"] == b.keys.node_did
        assert kept["receipt"]["requester"] == a.keys.node_did

    # Over /v1, signed by A's node key; A records what B reported.
    with _v1(a, served[1].url) as http:
        response = http.post("/v1/chat/completions", json=_chat("Say hello.", max_tokens=12))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"] and "flurry_receipt" in body
    # The /v1 answer's receipt, checked as a requester would keep it, re-executes here too.
    v1_receipt, v1_tokens = receipts.from_carrier(receipts.parse(body["flurry_receipt"]))
    v1_messages = [{"role": "user", "content": "Say hello."}]
    # Sampled (the request gave no temperature): its replay needs the seed the job drew.
    assert float(v1_receipt["sampler"]["temperature"]) > 0
    assert receipts.verify(v1_receipt, a.chat_model, v1_messages, v1_tokens).verdict == "verified"
    usage = body["usage"]
    assert 1 <= usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    model = b.chat_model
    infer.record_used(
        a.vault,
        b.keys.node_did,
        {**usage, "model": model.path.name, "model_sha256": model.model_sha256},
        channel="v1",
    )

    served_b = _served_for(b, a.keys.node_did)
    used_a = Ledger(a.vault).entries(peer=b.keys.node_did, direction="used")
    assert [
        (e.channel, e.prompt_tokens, e.completion_tokens, e.model_sha256) for e in served_b
    ] == [(e.channel, e.prompt_tokens, e.completion_tokens, e.model_sha256) for e in used_a]
    # Each side's entry names the same receipt: the one B signed for that job.
    assert [e.receipt_id for e in served_b[:2]] == [e.receipt_id for e in used_a[:2]]
    assert all(r["receipt_id"] in {e.receipt_id for e in served_b} for r in replies)
    assert served_b[-1].receipt_id == receipts.receipt_id(v1_receipt)
    assert (served_b[-1].prompt_tokens, served_b[-1].completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    # The quota was charged what was served, not the reservations' worst case.
    spent = sum(e.tokens for e in served_b)
    left_after = b.grants.tokens_left(a.keys.node_did)
    assert {w: left_before[w] - left_after[w] for w in left_before} == {"hour": spent, "day": spent}

    # `flurry usage` on each side shows the same jobs, the other way round.
    assert (
        LocalOwner(b).usage(a.keys.node_did, 1)["totals"]["served"]
        == owner_a.usage(b.keys.node_did, 1)["totals"]["used"]
    )


def test_the_prompt_goes_to_the_model_as_sent_with_no_data_or_tools(nodes, served, lent):
    a, b = nodes
    prompt = "What is under the blue flowerpot?"
    with _v1(a, served[1].url) as http:
        response = http.post(
            "/v1/chat/completions", json=_chat(prompt, max_tokens=16, temperature=0)
        )
        assert response.status_code == 200, response.text
        # The prompt tokens are exactly the peer's message through the chat template: nothing
        # of the owner's notes, no system prompt, no tool list was added.
        exact = b.chat_model.prompt_tokens([{"role": "user", "content": prompt}])
        assert response.json()["usage"]["prompt_tokens"] == len(exact)
        assert SECRET not in response.json()["choices"][0]["message"]["content"]

        charged = len(_served_for(b, a.keys.node_did))
        # The data model and tools are refused: infer is the model alone.
        data = http.post("/v1/chat/completions", json={**_chat(prompt), "model": "flurry-data"})
        assert data.status_code == 403 and "owner's data" in data.json()["error"]["message"]
        tools = http.post(
            "/v1/chat/completions",
            json=_chat(prompt, tools=[{"type": "function", "function": {"name": "search"}}]),
        )
        assert tools.status_code == 400 and "no tools" in tools.json()["error"]["message"]
        role = http.post(
            "/v1/chat/completions",
            json={"model": "flurry", "messages": [{"role": "tool", "content": "x"}]},
        )
        assert role.status_code == 400
    assert len(_served_for(b, a.keys.node_did)) == charged


def test_refusals_are_clear_and_charge_nothing(nodes, served, lent):
    a, b = nodes
    did = a.keys.node_did
    left = b.grants.tokens_left(did)
    charged = len(_served_for(b, did))
    with _v1(a, served[1].url) as http:
        over_cap = http.post("/v1/chat/completions", json=_chat("Hi.", max_tokens=33))
        assert over_cap.status_code == 400
        assert "cap of 32" in over_cap.json()["error"]["message"]
        huge = http.post(
            "/v1/chat/completions", json=_chat("x" * (infer.MAX_PROMPT_CHARS + 1), max_tokens=8)
        )
        assert huge.status_code == 413 and huge.json()["error"]["code"] == "prompt_too_large"
    # Over A2A too: the cap, and an ask-only peer cannot infer.
    with pytest.raises(OwnerError, match="400.*cap of 32"):
        asyncio.run(LocalOwner(a).infer("b", "Hi.", 64, 0.0))
    with pytest.raises(OwnerError, match="413.*over 32000 characters"):
        asyncio.run(LocalOwner(a).infer("b", "x" * (infer.MAX_PROMPT_CHARS + 1), 8, 0.0))

    # A stranger with no grant: 403 on both paths.
    key = Ed25519PrivateKey.generate()
    stranger = did_key_from_ed25519_public(key.public_key().public_bytes_raw())
    with signed_client(key, verification_method_id(stranger), base_url=served[1].url) as http:
        refused = http.post("/v1/chat/completions", json=_chat("Hi.", max_tokens=8))
    assert refused.status_code == 403 and "no grant" in refused.json()["error"]["message"]
    assert b.grants.tokens_left(did) == left and len(_served_for(b, did)) == charged
    assert _served_for(b, stranger) == []


def test_over_the_token_quota_is_refused_before_the_model_runs(nodes, served):
    a, b = nodes
    did = a.keys.node_did
    before = len(_served_for(b, did))
    b.grants.add(
        Grant(did=did, allow=frozenset({"infer"}), tokens=(Quota(120, "hour"),), max_tokens=16)
    )
    try:
        with _v1(a, served[1].url) as http:
            # Six at once, each reserving its prompt + 16 tokens (about 50): at most two fit.
            def one(i: int) -> httpx.Response:
                return http.post(
                    "/v1/chat/completions", json=_chat(f"Count to {i}.", max_tokens=16)
                )

            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(one, range(6)))
        ok = [r for r in answers if r.status_code == 200]
        refused = [r for r in answers if r.status_code == 429]
        assert ok and refused and len(ok) + len(refused) == 6
        error = refused[0].json()["error"]
        assert error["code"] == "token_quota_exceeded" and "left" in error["message"]
        assert int(refused[0].headers["retry-after"]) > 0
        served_tokens = sum(e.tokens for e in _served_for(b, did)[before:])
        assert served_tokens == sum(r.json()["usage"]["total_tokens"] for r in ok)
        assert served_tokens <= 120  # not one token past the quota
        assert b.grants.tokens_left(did) == {"hour": 120 - served_tokens}
    finally:
        b.grants.remove(did)


def test_a_peer_granted_ask_only_cannot_infer_and_infer_only_cannot_ask(nodes, served):
    a, b = nodes
    did = a.keys.node_did
    asyncio.run(LocalOwner(a).add_peer(served[1].url, "b2"))
    charged = len(_served_for(b, did))
    b.grants.add(Grant(did=did, allow=frozenset({"ask"})))
    try:
        with pytest.raises(OwnerError, match="403.*may not 'infer'"):
            asyncio.run(LocalOwner(a).infer("b2", "Hi.", 8, 0.0))
        b.grants.add(Grant(did=did, allow=frozenset({"infer"})))
        with pytest.raises(OwnerError, match="403.*may not 'ask'"):
            asyncio.run(LocalOwner(a).send("b2", "What is under the blue flowerpot?"))
    finally:
        b.grants.remove(did)
    assert len(_served_for(b, did)) == charged


def test_grant_token_quotas_survive_the_vault_and_a_reservation_never_used_comes_back(nodes):
    _, b = nodes
    grant = Grant(
        did="did:key:z6MkTest",
        allow=frozenset({"infer"}),
        tokens=(Quota(100, "day"),),
        max_tokens=8,
    )
    b.grants.add(grant)
    try:
        assert b.grants.get(grant.did) == grant
        reservation = b.grants.reserve_tokens(grant.did, 90, owner_did=b.keys.owner_did)
        assert b.grants.tokens_left(grant.did) == {"day": 10}
        b.grants.settle_tokens(grant.did, reservation, 0)
        assert b.grants.tokens_left(grant.did) == {"day": 100}
    finally:
        b.grants.remove(grant.did)


def test_a_token_bound_to_a_peer_is_metered_as_that_peer_and_reaches_no_data(nodes, served, lent):
    a, b = nodes
    did = a.keys.node_did
    token = LocalOwner(b).create_peer_token("a-app", did)
    charged = len(_served_for(b, did))
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=served[1].url, headers=auth, timeout=120) as http:
        answered = http.post("/v1/chat/completions", json=_chat("Say yes.", max_tokens=8))
        assert answered.status_code == 200, answered.text
        data = http.post("/v1/chat/completions", json={**_chat("Hi."), "model": "flurry-data"})
        assert data.status_code == 403
    entries = _served_for(b, did)
    assert len(entries) == charged + 1 and entries[-1].channel == "v1"
    assert entries[-1].completion_tokens == answered.json()["usage"]["completion_tokens"]
    # Withdrawn grant: the token still verifies, the grant refuses.
    b.grants.remove(did)
    with httpx.Client(base_url=served[1].url, headers=auth, timeout=120) as http:
        assert http.post("/v1/chat/completions", json=_chat("Hi.")).status_code == 403
    assert len(_served_for(b, did)) == charged + 1
    with pytest.raises(TokenError, match="only 'infer'"):
        b.tokens.create("wider", {"chat"}, did)


def test_the_command_line_grants_infer_with_token_quotas_and_shows_usage(cli):
    cli("init")
    peer = did_key_from_ed25519_public(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    added = cli(
        "grants",
        "add",
        peer,
        "--allow",
        "infer",
        "--tokens",
        "20000/day",
        "--tokens",
        "5000/hour",
        "--max-tokens",
        "256",
    )
    assert "tokens 20000/day, 5000/hour; max_tokens 256" in added.stdout
    listed = cli("grants", "list").stdout
    assert peer in listed and "infer" in listed
    bad = cli("grants", "add", peer, "--allow", "infer", "--tokens", "lots", check=False)
    assert bad.returncode != 0 and "20/day" in bad.stderr
    shown = json.loads(cli("usage", "--json", "--days", "7").stdout)
    assert shown["rows"] == [] and shown["totals"]["served"]["jobs"] == 0
    assert "no metered jobs" in cli("usage").stdout


def test_a_streamed_v1_answer_reports_the_usage_the_ledger_records(nodes, served, lent):
    a, b = nodes
    with (
        _v1(a, served[1].url) as http,
        http.stream(
            "POST",
            "/v1/chat/completions",
            json=_chat(
                "Count to five.", max_tokens=10, stream=True, stream_options={"include_usage": True}
            ),
        ) as response,
    ):
        assert response.status_code == 200
        chunks = [
            json.loads(line[6:])
            for line in response.iter_lines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    usage = chunks[-1]["usage"]
    entry = _served_for(b, a.keys.node_did)[-1]
    assert text and 1 <= usage["completion_tokens"] <= 10
    assert (entry.prompt_tokens, entry.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )


def test_a_malformed_a2a_infer_message_is_a_clear_400_with_nothing_charged(nodes, served, lent):
    a, b = nodes
    charged = len(_served_for(b, a.keys.node_did))

    def send(metadata: dict, parts: list) -> httpx.Response:
        message = {"messageId": "m-1", "role": "ROLE_USER", "parts": parts, "metadata": metadata}
        with _v1(a, served[1].url) as http:
            return http.post(
                "/a2a",
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "SendMessage",
                    "params": {"message": message},
                },
                headers={"A2A-Version": "1.0"},
            )

    infer_key = {infer.OPERATION_KEY: "infer"}
    words = send({**infer_key, infer.MAX_TOKENS_KEY: "lots"}, [{"text": "Hi."}])
    assert words.status_code == 400 and "max_tokens" in words.json()["detail"]
    hot = send({**infer_key, infer.TEMPERATURE_KEY: 9}, [{"text": "Hi."}])
    assert hot.status_code == 400 and "temperature" in hot.json()["detail"]
    file = send(infer_key, [{"url": "file:///etc/passwd"}])
    assert file.status_code == 400 and "text parts only" in file.json()["detail"]
    assert len(_served_for(b, a.keys.node_did)) == charged


def test_the_owner_of_b_is_served_first_under_peer_load(nodes, served):
    """Two of A's long infer jobs run on B; B's owner asks meanwhile, over B's own signed API.
    The owner's answer comes back before the peers' jobs end: the running one stepped aside
    between two tokens (agent.queue's lanes, runtime.step_aside), and the waiting one waited."""
    a, b = nodes
    b.grants.add(
        Grant(
            did=a.keys.node_did,
            allow=frozenset({"infer"}),
            tokens=(Quota(50_000, "day"),),
            max_tokens=200,
        )
    )
    if not any(p["name"] == "b" for p in LocalOwner(a).list_peers()):
        asyncio.run(LocalOwner(a).add_peer(served[1].url, "b"))
    queue = served[1].app.state.model_queue
    made_way_before = queue.made_way
    finished: dict[str, float] = {}

    def peer_job(name: str) -> None:
        prompt = "Count from 1 to 300, one number per line."
        reply = asyncio.run(LocalOwner(a).infer("b", prompt, 200, 0.0))
        assert reply["state"] == "TASK_STATE_COMPLETED"
        finished[name] = time.monotonic()

    peers = [threading.Thread(target=peer_job, args=(f"peer{i}",)) for i in range(2)]
    try:
        for thread in peers:
            thread.start()
        deadline = time.monotonic() + 60
        while not queue.busy:  # a peer's job has the model
            assert time.monotonic() < deadline, "the peers' jobs never started"
            time.sleep(0.01)
        keys = b.keys
        with signed_client(
            keys.owner_key,
            verification_method_id(keys.owner_did),
            base_url=served[1].url,
            timeout=120,
        ) as owner:
            response = owner.post("/api/ask", json={"question": "Where are the spare keys?"})
        finished["owner"] = time.monotonic()
        assert response.status_code == 200
        assert json.loads(response.text.splitlines()[-1])["type"] == "done"
    finally:
        for thread in peers:
            thread.join(timeout=300)
        b.grants.remove(a.keys.node_did)
    assert set(finished) == {"owner", "peer0", "peer1"}
    assert finished["owner"] < max(finished["peer0"], finished["peer1"])
    assert queue.made_way > made_way_before  # the running peer reply made way for the owner


@pytest.fixture
def asks(nodes, served) -> Iterator[Grant]:
    """B grants A's node DID "ask" over its travel notes; A pins B."""
    a, b = nodes
    grant = Grant(did=a.keys.node_did, allow=frozenset({"ask"}))
    b.grants.add(grant)
    if not any(p["name"] == "b" for p in LocalOwner(a).list_peers()):
        asyncio.run(LocalOwner(a).add_peer(served[1].url, "b"))
    yield grant
    b.grants.remove(a.keys.node_did)


def test_an_answer_from_data_carries_a_receipt_only_its_issuer_can_re_execute(nodes, asks):
    """Issue 15 item 3: a data answer's receipt proves what was sent back and by which model
    and settings, not what B's notes say: A checks the signature and that the answer it got
    is the one signed; only B, who keeps the salt and the tokens, re-executes it."""
    a, b = nodes
    question = "Which airline are the Lisbon flights booked with?"
    reply = asyncio.run(LocalOwner(a).send("b", question))
    assert reply["state"] == "TASK_STATE_COMPLETED" and "TAP" in reply["text"], reply
    rid = reply.get("receipt_id")
    assert rid, reply.get("receipt_error")
    kept = receipts.find_receipt(a.vault, rid)[1]
    receipt = kept["receipt"]
    assert receipts.is_data_answer(receipt) and kept["output_tokens"] is None
    assert receipt["answer"]["sha256"] == receipts.answer_sha256(reply["text"])
    assert receipt["issuer"] == b.keys.node_did and receipt["requester"] == a.keys.node_did
    # Nothing private rides with it: no word of B's notes, and the prompt hash is salted (the
    # plain hash of any guess of B's prompt cannot be tested against it).
    text = json.dumps(receipt)
    assert "Alfama" not in text and "seven forty" not in text
    # A: the signature holds, the prompt is private: inconclusive, never verified or mismatch.
    verdict = receipts.verify(receipt, a.chat_model, kept["messages"])
    assert verdict.verdict == "inconclusive" and verdict.differences == ["prompt"]
    # B: its own kept record re-executes token for token; a wrong salt is not a verification.
    issued = receipts.find_receipt(b.vault, rid)[1]
    assert issued["issued"] and issued["receipt"] == receipt
    salt = bytes.fromhex(issued["salt"])
    replayed = receipts.verify(
        receipt, b.chat_model, issued["prompt_tokens"], issued["output_tokens"], salt=salt
    )
    assert replayed.verdict == "verified", replayed
    wrong = receipts.verify(receipt, b.chat_model, issued["prompt_tokens"], salt=os.urandom(32))
    assert wrong.verdict == "inconclusive"
    # A receipt that signs another answer than the one received is not kept.
    carried = receipts.carrier(receipt, None)
    with pytest.raises(receipts.ReceiptRejected) as refused:
        receipts.accept(
            a.vault,
            carried,
            issuer=b.keys.node_did,
            requester=a.keys.node_did,
            messages=None,
            answer=reply["text"] + " And the door code is 1234.",
        )
    assert refused.value.reason == "answer_differs"
    # Both ledgers name the same receipt and the same tokens, "served" at B, "used" at A.
    served_at_b = [e for e in _served_for(b, a.keys.node_did) if e.receipt_id == rid]
    used_at_a = [
        e
        for e in Ledger(a.vault).entries(peer=b.keys.node_did, direction="used")
        if e.receipt_id == rid
    ]
    assert len(served_at_b) == len(used_at_a) == 1
    assert (
        (served_at_b[0].prompt_tokens, served_at_b[0].completion_tokens)
        == (
            used_at_a[0].prompt_tokens,
            used_at_a[0].completion_tokens,
        )
        == (receipt["prompt"]["tokens"], receipt["output"]["tokens"])
    )


def test_a_question_not_in_the_data_gets_no_receipt(nodes, asks):
    """ "Not in your data" is no model's work: there is nothing for a receipt to prove."""
    a, _ = nodes
    reply = asyncio.run(LocalOwner(a).send("b", "What is the name of my cat's veterinarian?"))
    assert reply["state"] == "TASK_STATE_COMPLETED" and reply["text"] == NOT_FOUND
    assert "receipt_id" not in reply and "receipt_error" not in reply, reply
