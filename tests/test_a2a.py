"""A2A between two real nodes on loopback: the signed agent card, grants in front of the
SDK, tasks sent, streamed, read and cancelled with the a2a-sdk client, node-to-node sends
recorded in the audit log, and the `flurry peers` / `flurry send` commands."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from a2a.client import ClientConfig, ClientFactory
from a2a.client.card_resolver import parse_agent_card
from a2a.client.errors import A2AClientError
from a2a.helpers import get_artifact_text, new_text_artifact, new_text_message
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.errors import TaskNotFoundError
from conftest import CORPUS, PASSPHRASE, Served, open_new_home
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
from identity.jws import JWSRejected, verify_json
from identity.signing_client import async_signed_client, signed_client
from node.a2a import AGENT_MADE_METADATA
from node.home import Home
from node.node import Node
from node.nostr_peers import CARD_EXTENSION_URI
from node.peers import CARD_PATH, PeerError, fetch_peer_card, send_message, verify_card

LISBON = "Which airline are the Lisbon flights booked with?"
RPC_HEADERS = {"A2A-Version": "1.0"}


class Peer:
    """Another agent: just a key, and the a2a-sdk client signed with it."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.did = did_key_from_ed25519_public(self.key.public_key().public_bytes_raw())
        self.keyid = verification_method_id(self.did)

    async def clients(self, url: str):
        """(httpx client, plain a2a client, streaming a2a client); close the httpx client."""
        http = async_signed_client(self.key, self.keyid, timeout=120)
        card = parse_agent_card((await http.get(url + CARD_PATH)).json())
        plain = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)
        stream = ClientFactory(ClientConfig(httpx_client=http, streaming=True)).create(card)
        return http, plain, stream


def _node(root, name: str) -> Node:
    return open_new_home(root / name)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, models_dir) -> Iterator[tuple[Node, Node]]:
    """Node A holds the notes (travel ones tagged "travel"); node B holds nothing and asks A."""
    root = tmp_path_factory.mktemp("a2a")
    os.environ["FLURRY_MODELS"] = str(models_dir)
    notes = root / "notes"
    for name, text in CORPUS.items():
        (notes / name).parent.mkdir(parents=True, exist_ok=True)
        (notes / name).write_text(text)
    a, b = _node(root, "a"), _node(root, "b")
    a.add(str(notes))
    a.add(str(notes / "travel"), tags=("travel",))
    yield a, b
    a.close()
    b.close()


@pytest.fixture(scope="module")
def served(served_pair) -> tuple[Served, Served]:
    return served_pair


@pytest.fixture
def granted_peer(nodes) -> Iterator[Peer]:
    peer = Peer()
    nodes[0].grants.add(Grant(did=peer.did, allow=frozenset({"ask"}), tags=frozenset({"travel"})))
    yield peer
    nodes[0].grants.remove(peer.did)


def _message(text: str) -> SendMessageRequest:
    return SendMessageRequest(message=new_text_message(text, role=Role.ROLE_USER))


def _state(task) -> str:
    return TaskState.Name(task.status.state)


def _rpc(method: str, params: dict) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


def _send_params(text: str, message_id: str = "m-1") -> dict:
    return {"message": {"messageId": message_id, "role": "ROLE_USER", "parts": [{"text": text}]}}


class SlowConversation:
    """Stands in for node.conversation: ten pieces a second, and it notes when it is stopped."""

    def __init__(self) -> None:
        self.produced = 0
        self.closed = threading.Event()

    def __call__(self, title: str, tags=None, **options) -> SlowConversation:
        return self

    def ask(self, question: str) -> Iterator[str]:
        # Not an Answer: the tests using it stop the task long before the answer would end.
        try:
            for i in range(200):
                time.sleep(0.1)
                self.produced += 1
                yield f"w{i} "
        finally:
            self.closed.set()


# --- the agent card --------------------------------------------------------------------------


def test_the_agent_card_is_signed_by_the_node_and_names_its_configured_origin(served, nodes):
    a, _ = served
    card, did = asyncio.run(fetch_peer_card(a.url))
    assert did == nodes[0].keys.node_did
    assert card["name"].startswith("flurry node of did:key:z6Mk")
    assert card["supportedInterfaces"] == [
        {"url": a.url + "/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
    ]
    assert card["capabilities"]["streaming"] is True
    # The node's Nostr key, with the key's own proof that it belongs to this DID (node.nostr_peers).
    nostr = card["capabilities"]["extensions"]
    assert [e["uri"] for e in nostr][:1] == [CARD_EXTENSION_URI] and nostr[0]["params"][
        "pubkey"
    ] == nodes[0].keys.nostr_public_key_hex
    assert [s["id"] for s in card["skills"]] == ["ask"]
    assert (
        "RFC 9421"
        in card["securitySchemes"]["httpMessageSignature"]["httpAuthSecurityScheme"]["description"]
    )
    assert parse_agent_card(dict(card)).skills[0].id == "ask"  # the SDK reads it

    # Asked under another name, the card still names the configured origin (issue 12, item 5:
    # a card that named the caller's Host could be had signed for anyone's URL).
    other = httpx.get(f"http://localhost:{a.port}{CARD_PATH}").json()
    assert other == card
    assert verify_card(other) == did

    tampered = {**card, "description": card["description"] + " And it gives your data away."}
    with pytest.raises(JWSRejected):
        verify_json(tampered, card["signatures"][0])
    with pytest.raises(PeerError, match="does not verify"):
        verify_card(tampered)
    with pytest.raises(PeerError, match="not signed"):
        verify_card({k: v for k, v in card.items() if k != "signatures"})


# --- refusals before the SDK -----------------------------------------------------------------


def test_unsigned_and_ungranted_requests_are_refused_as_problems_never_5xx(served):
    a, _ = served
    for body in (json.dumps(_rpc("SendMessage", _send_params("hi"))).encode(), b"not json", b""):
        response = httpx.post(
            a.url + "/a2a",
            content=body,
            headers={**RPC_HEADERS, "content-type": "application/json"},
        )
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["reason"] == "missing_signature"

    stranger = Peer()
    with signed_client(stranger.key, stranger.keyid, base_url=a.url, headers=RPC_HEADERS) as client:
        refused = client.post("/a2a", json=_rpc("SendStreamingMessage", _send_params("hi")))
        assert (
            refused.status_code == 403
            and refused.headers["content-type"] == "application/problem+json"
        )
        # The grant is checked before the request is read any further.
        malformed = client.post("/a2a", json=_rpc("SendMessage", {"message": 7}))
        assert malformed.status_code == 403
        # Malformed JSON-RPC from a signed caller is the SDK's to answer: a JSON-RPC error, not a crash.
        for body, code in (
            (b"not json", -32700),
            (b"[]", -32600),
            (b'{"jsonrpc": "2.0", "id": 1}', -32600),
        ):
            response = client.post(
                "/a2a", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 200 and response.json()["error"]["code"] == code, (
                response.text
            )
        # A stranger's GetTask reaches the SDK, which finds no task of its own.
        missing = client.post("/a2a", json=_rpc("GetTask", {"id": "nope"})).json()
        assert missing["error"]["code"] == -32001
        # The endpoint with a trailing slash (as the A2A TCK joins it) answers, rather than redirecting.
        slash = client.post("/a2a/", json=_rpc("GetTask", {"id": "nope"}))
        assert slash.status_code == 200 and slash.json()["error"]["code"] == -32001


def test_a_peer_without_a_grant_is_refused_by_the_sdk_client(served):
    a, _ = served

    async def attempt() -> None:
        http, plain, _ = await Peer().clients(a.url)
        try:
            async for _ in plain.send_message(_message(LISBON)):
                pass
        finally:
            await http.aclose()

    with pytest.raises(A2AClientError) as refused:
        asyncio.run(attempt())
    assert isinstance(refused.value.__cause__, httpx.HTTPStatusError)
    assert refused.value.__cause__.response.status_code == 403


def test_a_full_model_queue_answers_503_with_retry_after(nodes, granted_peer):
    busy = Served(nodes[0], max_waiting=0)  # every submit finds the queue full
    try:
        with signed_client(
            granted_peer.key, granted_peer.keyid, base_url=busy.url, headers=RPC_HEADERS
        ) as client:
            response = client.post("/a2a", json=_rpc("SendMessage", _send_params(LISBON)))
        assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
        assert response.headers["content-type"] == "application/problem+json"
    finally:
        busy.stop()


# --- tasks -------------------------------------------------------------------------------------


def test_a_granted_peer_sends_streams_and_reads_its_tasks(served, nodes, granted_peer):
    a, _ = served

    async def scenario() -> None:
        http, plain, stream = await granted_peer.clients(a.url)
        try:
            (event,) = [e async for e in plain.send_message(_message(LISBON))]
            task = event.task
            assert _state(task) == "TASK_STATE_COMPLETED"
            answer = get_artifact_text(task.artifacts[0])
            assert task.artifacts[0].name == "answer" and answer.strip()

            kinds, pieces, states, streamed_id = [], [], [], None
            async for event in stream.send_message(_message(LISBON)):
                kind = event.WhichOneof("payload")
                kinds.append(kind)
                if kind == "task":
                    streamed_id = event.task.id
                elif kind == "artifact_update":
                    pieces.append(event.artifact_update)
                elif kind == "status_update":
                    states.append(TaskState.Name(event.status_update.status.state))
            assert (
                kinds[0] == "task"
                and states[0] == "TASK_STATE_WORKING"
                and states[-1] == "TASK_STATE_COMPLETED"
            )
            # Verified sentences stream one by one (then the quotes they rest on), never raw tokens.
            assert len(pieces) >= 2 and not pieces[0].append and all(p.append for p in pieces[1:-1])
            # The last update replaces the streamed pieces with the whole answer, as one part.
            assert not pieces[-1].append and pieces[-1].last_chunk
            whole = get_artifact_text(pieces[-1].artifact)
            assert whole == "".join(p.artifact.parts[0].text for p in pieces[:-1]).strip() and whole

            fetched = await plain.get_task(GetTaskRequest(id=streamed_id))
            assert (
                _state(fetched) == "TASK_STATE_COMPLETED"
                and get_artifact_text(fetched.artifacts[0]) == whole
            )
            assert len(fetched.artifacts[0].parts) == 1

            # Another caller cannot see it.
            other_http, other, _ = await Peer().clients(a.url)
            try:
                with pytest.raises(TaskNotFoundError):
                    await other.get_task(GetTaskRequest(id=streamed_id))
            finally:
                await other_http.aclose()
        finally:
            await http.aclose()

    asyncio.run(scenario())
    # The grant's tags held: the questions drew on travel notes only (recorded in A's vault).
    conversations = [
        c for c in nodes[0].vault.conversations() if c["title"] == f"a2a from {granted_peer.did}"
    ]
    assert len(conversations) == 2
    for conversation in conversations:
        replies = [
            m for m in nodes[0].vault.messages(conversation["id"]) if m["role"] == "assistant"
        ]
        assert replies and all(
            s["path"].endswith("travel/lisbon.txt") for s in replies[0]["sources"]
        )


def test_a_peer_gets_the_checked_answer_and_its_quotes_never_the_notes_paths(
    served, nodes, granted_peer
):
    """One policy for peers (issue 12 item 8) on A2A as on /api/ask and Nostr: the verified
    answer and the quotes it rests on, from the grant's tags only; no path, chunk or snippet."""
    a, _ = served
    with signed_client(
        granted_peer.key, granted_peer.keyid, base_url=a.url, headers=RPC_HEADERS, timeout=300
    ) as client:
        task = client.post("/a2a", json=_rpc("SendMessage", _send_params(LISBON))).json()["result"][
            "task"
        ]
        said = task["artifacts"][0]["parts"][0]["text"]
        # The quote is the evidence's own line, whatever the model's words around it.
        assert "«" in said and "TAP" in said.split("«", 1)[1], said
        assert "lisbon.txt" not in json.dumps(task) and "snippet" not in json.dumps(task)
        dentist = _send_params("When is the dentist appointment?", "m-2")
        task = client.post("/a2a", json=_rpc("SendMessage", dentist)).json()["result"]["task"]
        said = task["artifacts"][0]["parts"][0]["text"]
        assert "Almeida" not in said and "November" not in said, said  # not in the grant's tags


def test_cancel_stops_a_running_streamed_task_and_its_model_work(
    served, nodes, granted_peer, monkeypatch
):
    a, _ = served
    slow = SlowConversation()
    monkeypatch.setattr(nodes[0], "conversation", slow)

    async def scenario() -> tuple[str, str]:
        http, plain, stream = await granted_peer.clients(a.url)
        try:
            events = stream.send_message(_message("tell me a long story"))
            async for event in events:
                if event.WhichOneof("payload") == "artifact_update":
                    cancelled = await plain.cancel_task(
                        CancelTaskRequest(id=event.artifact_update.task_id)
                    )
                    break
            await events.aclose()
            await asyncio.sleep(0.5)
            later = await plain.get_task(GetTaskRequest(id=cancelled.id))
            return _state(cancelled), _state(later)
        finally:
            await http.aclose()

    assert asyncio.run(scenario()) == ("TASK_STATE_CANCELED", "TASK_STATE_CANCELED")
    assert slow.closed.wait(5), "the answer generator was not closed"
    produced = slow.produced
    time.sleep(0.5)
    assert slow.produced == produced < 50, "the model went on after the cancel"


def test_a_streaming_client_that_disconnects_cancels_its_task(
    served, nodes, granted_peer, monkeypatch
):
    a, _ = served
    slow = SlowConversation()
    monkeypatch.setattr(nodes[0], "conversation", slow)
    with signed_client(
        granted_peer.key, granted_peer.keyid, base_url=a.url, headers=RPC_HEADERS, timeout=30
    ) as client:
        task_id = None
        with client.stream(
            "POST", "/a2a", json=_rpc("SendStreamingMessage", _send_params("a long story"))
        ) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    result = json.loads(line[5:])["result"]
                    task_id = task_id or result["task"]["id"]
                    if "artifactUpdate" in result:
                        break
        assert slow.closed.wait(5), "the disconnect did not stop the answer"
        deadline = time.monotonic() + 5
        while True:
            task = client.post("/a2a", json=_rpc("GetTask", {"id": task_id})).json()["result"]
            if task["status"]["state"] == "TASK_STATE_CANCELED" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert task["status"]["state"] == "TASK_STATE_CANCELED"


def test_a_failing_answer_fails_the_task_without_telling_the_peer_why(
    served, nodes, granted_peer, monkeypatch
):
    a, _ = served

    class Broken:
        def ask(self, question: str) -> Iterator[str]:
            raise RuntimeError("cannot open /home/owner/secret-notes.md")

    monkeypatch.setattr(nodes[0], "conversation", lambda title, tags=None, **options: Broken())
    with signed_client(
        granted_peer.key, granted_peer.keyid, base_url=a.url, headers=RPC_HEADERS
    ) as client:
        task = client.post("/a2a", json=_rpc("SendMessage", _send_params(LISBON))).json()["result"][
            "task"
        ]
    assert task["status"]["state"] == "TASK_STATE_FAILED"
    said = task["status"]["message"]["parts"][0]["text"]
    assert "RuntimeError" in said and "secret" not in said


# --- node to node ----------------------------------------------------------------------------


def _audit_key(did_url: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(ed25519_public_from_did_key(did_url))


def test_node_b_asks_node_a_and_records_it_in_its_audit_log(served, nodes):
    a, _ = served
    node_a, node_b = nodes
    keys = node_b.keys
    node_a.grants.add(
        Grant(did=keys.node_did, allow=frozenset({"ask"}), tags=frozenset({"travel"}))
    )
    try:
        send = dict(
            key=keys.node_key, keyid=verification_method_id(keys.node_did), owner_did=keys.owner_did
        )
        reply = asyncio.run(send_message(a.url, LISBON, pinned_did=node_a.keys.node_did, **send))
        assert (
            reply.state == "TASK_STATE_COMPLETED"
            and reply.text
            and reply.peer_did == node_a.keys.node_did
        )
        # Every A2A answer says an agent wrote it (issue 17: labelled on every channel).
        assert reply.metadata.get(AGENT_MADE_METADATA) is True
        node_b.audit.append(
            "a2a.send",
            target=a.url,
            details={"peer_did": reply.peer_did, "task_id": reply.task_id, "state": reply.state},
        )
        entry = node_b.audit.entries()[-1]
        assert (
            entry.action == "a2a.send"
            and entry.agent_made
            and entry.details["task_id"] == reply.task_id
        )
        assert node_b.audit.verify(_audit_key).ok

        # A card signed by another node than the pinned one: nothing is sent.
        asked = len(node_a.vault.conversations())
        with pytest.raises(PeerError, match="not the pinned"):
            asyncio.run(send_message(a.url, LISBON, pinned_did=node_b.keys.node_did, **send))
        assert len(node_a.vault.conversations()) == asked
    finally:
        node_a.grants.remove(keys.node_did)

    # Without the grant, the refusal says why.
    with pytest.raises(PeerError, match="403"):
        asyncio.run(send_message(a.url, LISBON, **send))


def test_the_command_line_pins_a_peer_and_sends_to_it(served, nodes, cli):
    # In process (CliRunner): the peers and send commands' wiring; node A, which answers, is
    # a real node behind uvicorn on loopback.
    a, _ = served
    cli("init")
    status = json.loads(cli("status", "--json").stdout)
    nodes[0].grants.add(
        Grant(did=status["node_did"], allow=frozenset({"ask"}), tags=frozenset({"travel"}))
    )
    try:
        added = cli("peers", "add", a.url, "--name", "alice")
        assert nodes[0].keys.node_did in added.stdout
        assert (
            nodes[0].keys.nostr_public_key_hex in added.stdout
        )  # the card proved its Nostr key too
        listed = cli("peers", "list").stdout
        assert "alice" in listed and nodes[0].keys.node_did in listed and a.url in listed
        answer = cli("send", "alice", LISBON)
        assert answer.stdout.strip()
        unknown = cli("send", "bob", LISBON, check=False)
        assert unknown.returncode == 1 and "no pinned peer" in unknown.stderr
        verified = cli("audit", "verify")
        assert "1 entries" in verified.stdout
    finally:
        nodes[0].grants.remove(status["node_did"])


def test_the_owner_manages_a_serving_node_from_the_command_line(served, nodes, cli, corpus):
    """While `flurry serve` holds the home, peers, send, grants, tokens and audit go through
    the node's signed owner API; the server itself signs the send and audits it."""
    # The commands in process (CliRunner): what is tested is that they go through the running
    # node's owner API; the node holding the home is a real `flurry serve` process.
    a, _ = served
    cli("init")
    node_did = json.loads(cli("status", "--json").stdout)["node_did"]
    nodes[0].grants.add(Grant(did=node_did, allow=frozenset({"ask"}), tags=frozenset({"travel"})))
    try:
        with cli.serving():
            assert nodes[0].keys.node_did in cli("peers", "add", a.url, "--name", "alice").stdout
            assert cli("send", "alice", LISBON).stdout.strip()
            assert "1 entries" in cli("audit", "verify").stdout
            peer = Ed25519PrivateKey.generate()
            peer_did = did_key_from_ed25519_public(peer.public_key().public_bytes_raw())
            cli("grants", "add", peer_did, "--allow", "ask", "--tags", "travel", "--quota", "3/day")
            listed = cli("grants", "list").stdout
            assert peer_did in listed and "3/day" in listed and "travel" in listed
            token = cli("tokens", "create", "editor").stdout.strip()
            assert token.startswith("flurry_") and "editor" in cli("tokens", "list").stdout
            bad = cli("grants", "add", "did:key:nonsense", "--allow", "ask", check=False)
            assert bad.returncode == 1 and "Traceback" not in bad.stderr
    finally:
        nodes[0].grants.remove(node_did)
    # Once the server has gone, the same commands open the home themselves and see the same data.
    assert peer_did in cli("grants", "list").stdout


# --- tasks kept sealed, and bounded -------------------------------------------------------------


def _task(task_id: str, state: TaskState, answer: str = "") -> Task:
    task = Task(id=task_id, context_id="c-" + task_id, status=TaskStatus(state=state))
    if answer:
        task.artifacts.append(new_text_artifact("answer", answer))
    return task


def test_tasks_are_sealed_in_the_vault_and_the_oldest_evicted_past_the_bounds(vault):
    from node.a2a_tasks import KIND, SealedTaskStore, _context

    alice, bob = _context("did:key:z6MkAlice"), _context("did:key:z6MkBob")
    done = TaskState.TASK_STATE_COMPLETED

    async def scenario() -> None:
        store = SealedTaskStore(vault, per_caller=3, total=5)
        for i in range(4):  # one more than alice may keep: her oldest goes
            await store.save(_task(f"a{i}", done, answer=f"Miradouro answer {i}"), alice)
        assert await store.get("a0", alice) is None and await store.get("a3", alice) is not None
        assert len(vault.records(KIND)) == 3
        for i in range(3):  # bob's third task passes the total: the oldest of all (alice's a1) goes
            await store.save(_task(f"b{i}", done), bob)
        assert await store.get("a1", alice) is None
        assert [k.split()[1] for k, _ in vault.records(KIND)] == ["a2", "a3", "b0", "b1", "b2"]
        assert await store.get("b0", alice) is None  # and each caller sees only its own
        # Saving a task again (its next state) does not count it twice or move it.
        await store.save(_task("a2", TaskState.TASK_STATE_WORKING), alice)
        await store.save(_task("a2", done, answer="Miradouro final"), alice)
        assert len(vault.records(KIND)) == 5
        await store.delete("b2", bob)
        assert len(vault.records(KIND)) == 4

        # A new store on the same vault (the node restarted) has them back; a task that was
        # still working then cannot finish, and says so.
        await store.save(_task("b3", TaskState.TASK_STATE_WORKING), bob)
        again = SealedTaskStore(vault, per_caller=3, total=5)
        kept = await again.get("a2", alice)
        assert kept is not None
        assert (
            TaskState.Name(kept.status.state) == "TASK_STATE_COMPLETED"
            and get_artifact_text(kept.artifacts[0]) == "Miradouro final"
        )
        interrupted = await again.get("b3", bob)
        assert interrupted is not None
        assert TaskState.Name(interrupted.status.state) == "TASK_STATE_FAILED"
        assert "restarted" in interrupted.status.message.parts[0].text
        listed = await again.list(ListTasksRequest(), alice)
        assert sorted(t.id for t in listed.tasks) == ["a2", "a3"]
        # Lowered bounds apply at the next start.
        smaller = SealedTaskStore(vault, per_caller=1, total=5)
        assert await smaller.get("a2", alice) is None and await smaller.get("a3", alice) is not None

    asyncio.run(scenario())
    wal = vault.path.with_name(vault.path.name + "-wal")
    on_disk = vault.path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert b"Miradouro" not in on_disk and b"z6MkAlice" not in on_disk


def test_a_completed_task_survives_a_restart_of_the_node(tmp_path, models_dir, corpus):
    os.environ["FLURRY_MODELS"] = str(models_dir)
    home = Home(tmp_path / "home")
    Node.init(home, PASSPHRASE)
    node = Node.open(home, PASSPHRASE, say=lambda line: None)
    node.add(str(corpus))
    peer = Peer()
    node.grants.add(Grant(did=peer.did, allow=frozenset({"ask"})))

    async def ask(url: str) -> tuple[str, str]:
        http, plain, _ = await peer.clients(url)
        try:
            (event,) = [e async for e in plain.send_message(_message(LISBON))]
            return event.task.id, get_artifact_text(event.task.artifacts[0])
        finally:
            await http.aclose()

    served = Served(node)
    try:
        task_id, answer = asyncio.run(ask(served.url))
    finally:
        served.stop()
        node.close()
    assert answer

    node = Node.open(
        home, PASSPHRASE, say=lambda line: None
    )  # the node restarted: a new process's view
    served = Served(node)
    try:
        task = asyncio.run(_fetch_as(peer, served.url, task_id))
        assert (
            _state(task) == "TASK_STATE_COMPLETED"
            and get_artifact_text(task.artifacts[0]) == answer
        )
        with pytest.raises(TaskNotFoundError):  # still the asker's alone
            asyncio.run(_fetch_as(Peer(), served.url, task_id))
    finally:
        served.stop()
        node.close()


async def _fetch_as(peer: Peer, url: str, task_id: str):
    http, plain, _ = await peer.clients(url)
    try:
        return await plain.get_task(GetTaskRequest(id=task_id))
    finally:
        await http.aclose()
