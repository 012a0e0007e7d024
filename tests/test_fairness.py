"""Issue 15 item 1: the owner's work goes first. Peer jobs wait while owner jobs wait, and a
peer's long generation makes way between two tokens when the owner asks something, then
goes on with the very reply it would have given alone (the real default model, greedy)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from conftest import Served, new_node
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.grants import Grant
from agent.models import CATALOG, DEFAULT_CHAT_MODEL
from agent.queue import JobCancelled, ModelQueue, QueueFull, lane_for
from agent.runtime import ChatModel
from identity.did_key import did_key_from_ed25519_public, verification_method_id
from identity.signing_client import signed_client

PEER = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]
OWNER = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def model(models_dir) -> ChatModel:
    return ChatModel(models_dir / CATALOG[DEFAULT_CHAT_MODEL].filename, n_ctx=1024)


def _reply(model: ChatModel, messages: list[dict], max_tokens: int, events: list, who: str):
    """Model work that notes each piece in ``events``, then llama.cpp's counts for its reply."""

    def work() -> Iterator[str]:
        for piece in model.stream(messages, max_tokens=max_tokens):
            events.append((who, piece))
            yield piece
        events.append(
            (who, ("counted", model.last_prompt_tokens_read, model.last_tokens_generated))
        )

    return work


def _alone(model: ChatModel, messages: list[dict], max_tokens: int) -> list:
    queue = ModelQueue()
    try:
        events: list = []
        list(queue.submit(_reply(model, messages, max_tokens, events, "alone"), lane="peer"))
        return [piece for _, piece in events]
    finally:
        queue.close()


def test_an_owner_job_runs_between_two_tokens_of_a_peers_reply_which_stays_the_same(model):
    # Each run starts from the same context (the owner's question in it), so that llama.cpp
    # reuses the same prefix and counts the same tokens read.
    list(model.stream(OWNER, max_tokens=1))
    alone = _alone(model, PEER, 60)
    assert len(alone) > 20  # a long reply, so there is a middle to make way in

    queue = ModelQueue()
    events: list = []
    owner_asked = threading.Event()
    peer_reply = _reply(model, PEER, 60, events, "peer")

    def peer_work() -> Iterator[str]:
        pieces = peer_reply()
        yield next(pieces)
        assert owner_asked.wait(30)  # the owner asks while the peer's reply is under way
        yield from pieces

    list(model.stream(OWNER, max_tokens=1))
    try:
        peer_job = queue.submit(peer_work, lane="peer")
        first = peer_job.next_piece(timeout=120)  # the peer's reply has begun
        assert first is not None
        owner_job = queue.submit(_reply(model, OWNER, 12, events, "owner"), lane="owner")
        owner_asked.set()
        owner_text = "".join(owner_job)
        peer_text = first + "".join(peer_job)
    finally:
        queue.close()

    who = [w for w, _ in events]
    first_owner, last_owner = who.index("owner"), len(who) - 1 - who[::-1].index("owner")
    # The owner's whole reply, counts included, came after the peer's first piece and before
    # the peer's last: the peer made way, once, and went on afterwards.
    assert who[0] == "peer" and "peer" in who[last_owner:]
    assert set(who[first_owner : last_owner + 1]) == {"owner"}
    assert queue.made_way == 1 and owner_text
    # The peer's reply is the uninterrupted one, token for token, and so are llama.cpp's counts
    # of what it read and generated (what a ledger meters).
    assert [piece for w, piece in events if w == "peer"] == alone
    assert peer_text == "".join(p for p in alone if isinstance(p, str))


def test_a_peer_job_never_starts_while_an_owner_job_waits():
    """The lanes' order, with plain work (the model is not what is tested here)."""
    queue = ModelQueue()
    started: list[str] = []
    gate = threading.Event()
    jobs: dict = {}

    def work(name: str) -> object:
        def run() -> Iterator[str]:
            # At a peer's start, every owner job submitted so far has finished.
            owners_left = [n for n, j in jobs.items() if n.startswith("owner") and j.position != -1]
            started.append(name if name.startswith("owner") or not owners_left else "VIOLATION")
            if name == "first":
                gate.wait(30)
            yield name

        return run

    try:
        jobs["first"] = queue.submit(work("first"), lane="peer")
        while not started:  # the first job runs and holds the worker
            threading.Event().wait(0.01)
        for name, lane in [
            ("background", "background"),
            ("peer 1", "peer"),
            ("owner 1", "owner"),
            ("peer 2", "peer"),
            ("owner 2", "owner"),
        ]:
            jobs[name] = queue.submit(work(name), lane=lane)
        assert jobs["owner 1"].position < jobs["owner 2"].position < jobs["peer 1"].position
        assert jobs["peer 1"].position < jobs["peer 2"].position < jobs["background"].position
        gate.set()
        for job in jobs.values():
            list(job)
    finally:
        queue.close()
    assert started == ["first", "owner 1", "owner 2", "peer 1", "peer 2", "background"]


def test_peers_filling_their_lane_never_refuse_the_owner():
    queue = ModelQueue(max_waiting=2)
    gate = threading.Event()

    def held() -> Iterator[str]:
        gate.wait(30)
        yield "done"

    try:
        first = queue.submit(held, lane="peer")
        first.started.wait(10)
        peers = [queue.submit(held, lane="peer") for _ in range(2)]
        with pytest.raises(QueueFull):
            queue.submit(held, lane="peer")
        owner = queue.submit(held, lane="owner")  # the owner's own lane has room
        assert owner.position == 1 and peers[0].position == 2
        with pytest.raises(ValueError, match="no lane"):
            queue.submit(held, lane="vip")
        gate.set()
        assert "".join(owner) == "done"
    finally:
        gate.set()
        queue.close()
    assert lane_for(True) == "owner" and lane_for(False) == "peer"


@pytest.fixture(scope="module")
def served_node(tmp_path_factory, models_dir) -> Iterator[tuple[Served, list]]:
    node = new_node(tmp_path_factory.mktemp("fair"), models_dir, notes=True)
    served = Served(node)
    queue = served.app.state.model_queue
    lanes: list = []
    submit = queue.submit

    def noting(work, **options):  # what lane each job got: the queue itself is the real one
        job = submit(work, **options)
        lanes.append(job.lane)
        return job

    queue.submit = noting
    yield served, lanes
    served.stop()
    node.close()


def test_a_peer_cannot_claim_the_owners_lane(served_node):
    """The lane follows the signature on the request, not anything in its body."""
    served, lanes = served_node
    node = served.node
    key = Ed25519PrivateKey.generate()
    did = did_key_from_ed25519_public(key.public_key().public_bytes_raw())
    node.grants.add(Grant(did=did, allow=frozenset({"ask"}), tags=frozenset({"travel"})))
    claim = {"lane": "owner", "owner": True, "priority": "owner", "background": False}
    question = {"question": "Which airline are the Lisbon flights booked with?", **claim}
    with signed_client(key, verification_method_id(did), base_url=served.url, timeout=120) as peer:
        response = peer.post("/api/ask", json=question)
        assert response.status_code == 200
        assert json.loads(response.text.splitlines()[-1])["type"] == "done"
        # A2A too: a peer's message, with metadata claiming the owner, is a peer's job.
        rpc = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "SendMessage",
            "params": {
                "message": {
                    "messageId": "m1",
                    "role": "ROLE_USER",
                    "parts": [{"text": "Which airline are the Lisbon flights booked with?"}],
                    "metadata": claim,
                },
                "metadata": claim,
            },
        }
        response = peer.post("/a2a", json=rpc, headers={"A2A-Version": "1.0"})
        assert response.status_code == 200, response.text
    assert lanes == ["peer", "peer"]
    keys = node.keys
    with signed_client(
        keys.owner_key, verification_method_id(keys.owner_did), base_url=served.url, timeout=120
    ) as owner:
        assert owner.post("/api/ask", json=question).status_code == 200
    assert lanes[-1] == "owner"


def test_an_unsigned_request_gets_no_lane(served_node):
    served, lanes = served_node
    before = len(lanes)
    response = httpx.post(served.url + "/api/ask", json={"question": "hi", "lane": "owner"})
    assert response.status_code == 401 and len(lanes) == before


def test_a_peer_cancelled_while_it_made_way_ends_and_leaves_the_model_sound(model):
    """The peer's client goes away while the owner's job runs in its place: the peer's job ends
    as cancelled once its place is back, and the next reply is the one the model gives alone."""
    list(model.stream(OWNER, max_tokens=1))
    before = _alone(model, PEER, 30)
    queue = ModelQueue()
    owner_asked = threading.Event()
    events: list = []
    peer_reply = _reply(model, PEER, 200, events, "peer")

    def peer_work() -> Iterator[str]:
        pieces = peer_reply()
        yield next(pieces)
        assert owner_asked.wait(30)
        yield from pieces

    try:
        peer_job = queue.submit(peer_work, lane="peer")
        assert peer_job.next_piece(timeout=120) is not None
        owner_job = queue.submit(_reply(model, OWNER, 8, events, "owner"), lane="owner")
        peer_job.cancel()
        owner_asked.set()
        assert "".join(owner_job)
        with pytest.raises(JobCancelled):
            "".join(peer_job)
        assert queue.made_way == 1
        assert [w for w, _ in events].count("peer") < 10  # stopped, not run to its 200 tokens
    finally:
        queue.close()
    list(model.stream(OWNER, max_tokens=1))
    assert _alone(model, PEER, 30) == before


def test_a_metered_infer_generation_steps_aside_for_the_owner_with_the_same_tokens(model):
    """node.infer runs a peer's prompt with ``Llama.generate`` itself (exact tokens, for its
    meter), not through ``ChatModel.stream``: ``step_aside`` is its way of making way."""
    from agent.runtime import step_aside

    llm = model._llm
    tokens = model.prompt_tokens(PEER)

    def generate(out: list[int], asked: threading.Event | None) -> Iterator[str]:
        for token in llm.generate(tokens, temp=0.0, repeat_penalty=1.1):
            out.append(token)
            yield str(token)
            if len(out) >= 40:
                break
            if asked is not None and len(out) == 5:
                assert asked.wait(30)  # the owner has asked by now
            step_aside(llm)

    alone: list[int] = []
    list(generate(alone, None))

    queue = ModelQueue()
    events: list = []
    asked = threading.Event()
    paused: list[int] = []
    try:
        peer_job = queue.submit(lambda: generate(paused, asked), lane="peer")
        assert peer_job.next_piece(timeout=120) is not None
        owner_job = queue.submit(_reply(model, OWNER, 8, events, "owner"), lane="owner")
        asked.set()
        assert "".join(owner_job)
        list(peer_job)
    finally:
        queue.close()
    assert queue.made_way == 1
    assert paused == alone  # token for token, as if the owner had never asked
