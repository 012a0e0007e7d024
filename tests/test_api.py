"""The node's HTTP API, served by uvicorn on loopback: signed requests, grants, the attack
matrix, the OpenAI-compatible endpoint with the official client, and back-pressure."""

from __future__ import annotations

import concurrent.futures
import importlib
import json
import pkgutil
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from conftest import CORPUS, PASSPHRASE, Served, new_node
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.grants import Grant, Quota
from agent.grounding import NOT_FOUND
from identity.did_key import (
    did_document,
    did_key_from_ed25519_public,
    verification_method_id,
)
from identity.http_signatures import sign_request
from identity.keyring import Keyring
from identity.signing_client import signed_client
from node.client import NodeClient
from node.node import Node


class Peer:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.did = did_key_from_ed25519_public(self.key.public_key().public_bytes_raw())
        self.keyid = verification_method_id(self.did)

    def client(self, url: str) -> httpx.Client:
        return signed_client(self.key, self.keyid, base_url=url, timeout=120)


@pytest.fixture(scope="module")
def node(tmp_path_factory, models_dir) -> Iterator[Node]:
    node = new_node(tmp_path_factory.mktemp("api"), models_dir, notes=True)
    yield node
    node.close()


def _ask(client: httpx.Client, question: str, **extra) -> tuple[int, list[dict], httpx.Headers]:
    response = client.post("/api/ask", json={"question": question, **extra})
    events = (
        [json.loads(line) for line in response.text.splitlines() if line.strip()]
        if response.status_code == 200
        else []
    )
    return response.status_code, events, response.headers


def test_discovery_documents_are_public(served, node):
    response = httpx.get(served.url + "/.well-known/did.json")
    assert response.status_code == 200
    # The did:key document, plus the node's Nostr key as a NIP-21 URI (alsoKnownAs).
    assert response.json() == {
        **did_document(node.keys.node_did),
        "alsoKnownAs": [node.keys.nostr_key.uri],
    }


def test_owner_asks_and_continues_a_conversation_over_the_signed_api(served, node):
    client = NodeClient(served.url, node.keys)
    try:
        events = list(client.ask("When is the dentist appointment?"))
        kinds = [e["type"] for e in events]
        assert (
            kinds[0] == "conversation"
            and kinds[1] == "sources"
            and kinds[-1] == "done"
            and "token" in kinds
        )
        sources = events[1]["sources"]
        assert sources[0]["path"].endswith("health/dentist.md")
        answer = events[-1]["answer"]
        assert (
            answer and answer == "".join(e["text"] for e in events if e["type"] == "token").strip()
        )
        # The owner gets every source in full, and the quote the answer rests on.
        done = events[-1]
        assert done["grounded"] is True and "dropped" in done
        assert any("Doctor Almeida" in s["quote"] for s in done["sources"]), done
        assert all({"path", "chunk", "snippet", "meta", "quote"} <= set(s) for s in done["sources"])
        again = list(client.ask("Who is it with?", conversation=events[0]["id"]))
        assert again[0] == events[0] and again[-1]["answer"]
        assert node.status()["documents"] == len(CORPUS)
        assert client.status()["owner_did"] == node.keys.owner_did
    finally:
        client.close()


def _flat(text: str) -> str:
    return " ".join(text.split())


def _peer_sees_no_metadata(response_text: str) -> None:
    """Issue 12 item 8: a peer gets the verified answer and quotes, never a file's path, a
    chunk number, a snippet, the metadata or the sentences the verifier dropped."""
    for event in (json.loads(line) for line in response_text.splitlines() if line.strip()):
        for source in event.get("sources", []):
            assert set(source) == {"number", "quote"}, source
        assert not {"dropped", "meta", "snippet", "path", "chunk"} & set(event), event
    assert ".txt" not in response_text and ".md" not in response_text


def test_a_peer_needs_a_grant_and_sees_only_its_tags_within_its_quota(served, node):
    peer = Peer()
    lisbon = _flat(CORPUS["travel/lisbon.txt"])
    with peer.client(served.url) as client:
        status, _, _ = _ask(client, "Which airline are the Lisbon flights booked with?")
        assert status == 403
        node.grants.add(
            Grant(
                did=peer.did,
                allow=frozenset({"ask"}),
                tags=frozenset({"travel"}),
                quota=Quota(2, "day"),
            )
        )
        for question in (
            "Which airline are the Lisbon flights booked with?",
            "When is the dentist appointment?",
        ):
            response = client.post("/api/ask", json={"question": question})
            assert response.status_code == 200
            _peer_sees_no_metadata(response.text)
            events = [json.loads(line) for line in response.text.splitlines() if line.strip()]
            done = events[-1]
            assert done["type"] == "done" and isinstance(done["grounded"], bool)
            # Only documents tagged "travel" may answer this peer, whatever it asks: every quote is
            # a line of the Lisbon note, and nothing of the dentist note reaches it.
            assert all(_flat(s["quote"]) in lisbon for s in done["sources"]), done
            assert "Almeida" not in response.text and "November" not in response.text
        status, _, headers = _ask(client, "One more?")
        assert status == 429 and int(headers["retry-after"]) > 0
        assert client.get("/api/status").status_code == 403  # owner only
    node.grants.remove(peer.did)


def test_narrowing_a_grant_reaches_a_peers_open_conversation(served, node):
    """Issue 12 item 2: every turn reads the grant as it is now. A conversation opened under a
    grant to "travel" must stop drawing on it once the owner narrows the grant."""
    peer = Peer()
    question = "Which airline are the Lisbon flights booked with?"
    node.grants.add(Grant(did=peer.did, allow=frozenset({"ask"}), tags=frozenset({"travel"})))
    try:
        with peer.client(served.url) as client:
            status, events, _ = _ask(client, question)
            assert status == 200 and "TAP" in json.dumps(
                events
            )  # the quote: "Flights are booked with TAP…"
            conversation = events[0]["id"]
            node.grants.add(
                Grant(did=peer.did, allow=frozenset({"ask"}), tags=frozenset({"health"}))
            )  # travel withdrawn
            response = client.post(
                "/api/ask", json={"question": question, "conversation": conversation}
            )
            assert response.status_code == 200
            events = [json.loads(line) for line in response.text.splitlines() if line.strip()]
            assert events[0] == {"type": "conversation", "id": conversation}
            for word in ("TAP", "Alfama", "Ines", "lisbon"):
                assert word not in response.text, response.text
            assert events[-1]["answer"] == NOT_FOUND and events[-1]["grounded"] is False
            # Withdrawn altogether: the next turn of the same conversation is refused.
            node.grants.remove(peer.did)
            assert _ask(client, question, conversation=conversation)[0] == 403
    finally:
        node.grants.remove(peer.did)


def _raw(url: str, headers: dict, body: bytes = b'{"question": "hi"}') -> httpx.Response:
    return httpx.post(
        url + "/api/ask", content=body, headers={"content-type": "application/json", **headers}
    )


def _signed_headers(
    url: str, key, keyid: str, body: bytes = b'{"question": "hi"}', **options
) -> dict:
    return sign_request(
        "POST", url + "/api/ask", {"content-type": "application/json"}, body, key, keyid, **options
    )


def test_attack_matrix_is_401_or_403_and_never_5xx(served, node):
    peer, other = Peer(), Peer()
    url = served.url
    body = b'{"question": "hi"}'
    good = _signed_headers(url, peer.key, peer.keyid)
    cases = {
        "missing_signature": ({}, body),
        "malformed_signature": ({"signature-input": "sig1=(", "signature": "sig1=:!!:"}, body),
        "body_tampered": (good, b'{"question": "give me everything"}'),
        "expired": (_signed_headers(url, peer.key, peer.keyid, now=time.time() - 3600), body),
        "created_in_future": (
            _signed_headers(url, peer.key, peer.keyid, now=time.time() + 3600),
            body,
        ),
        "signature_invalid": (
            _signed_headers(url, other.key, peer.keyid),
            body,
        ),  # another key, this keyid
        "unsupported_keyid": (_signed_headers(url, peer.key, "did:web:example.com#key-1"), body),
        "missing_content_digest": (
            {k: v for k, v in good.items() if k.lower() != "content-digest"},
            body,
        ),
    }
    seen = {}
    for reason, (headers, sent) in cases.items():
        response = _raw(url, headers, sent)
        assert response.headers["content-type"].startswith("application/problem+json"), reason
        problem = response.json()
        assert problem["status"] == response.status_code
        seen[reason] = (response.status_code, problem.get("reason"))
    assert seen == {reason: (401, reason) for reason in cases}

    # A valid signature from a DID without a grant is 403; the same signature again is a replay.
    fresh = _signed_headers(url, peer.key, peer.keyid)
    assert _raw(url, fresh).status_code == 403
    replay = _raw(url, fresh)
    assert (replay.status_code, replay.json()["reason"]) == (401, "replayed_nonce")
    # Bad bodies from the owner are 400, not 500.
    owner = signed_client(
        node.keys.owner_key, verification_method_id(node.keys.owner_did), base_url=url
    )
    with owner:
        for bad in (b"not json", b"[]", b'{"question": ""}', b'{"question": "x", "k": 999}'):
            assert (
                owner.post(
                    "/api/ask", content=bad, headers={"content-type": "application/json"}
                ).status_code
                == 400
            )


def test_every_owner_route_refuses_a_signed_peer_before_reading_its_body(served, node):
    """ "Owner only" is declared once per router (node.http.app): every route under /api/owner,
    whichever router it is in, answers a validly signed peer 403 before it parses the body,
    and a route added to one of those routers is covered without saying so again."""
    from fastapi import APIRouter
    from fastapi.routing import APIRoute

    import node.http

    # Every router of every module of node.http, whichever one a new route goes to.
    routers = {
        id(r): r
        for m in pkgutil.iter_modules(node.http.__path__, "node.http.")
        for r in vars(importlib.import_module(m.name)).values()
        if isinstance(r, APIRouter)
    }
    peer = Peer()
    routes = [
        (method, route.path)
        for router in routers.values()
        for route in router.routes
        if isinstance(route, APIRoute) and route.path.startswith("/api/owner")
        for method in sorted(route.methods)
    ]
    assert len(routes) > 40  # documents, conversations, grants, skills, pod, nostr, …
    with peer.client(served.url) as client:
        for method, path in routes:
            response = client.request(
                method, path, content=b"not json", headers={"content-type": "application/json"}
            )
            assert (response.status_code, response.json()["title"]) == (403, "owner only"), (
                method,
                path,
                response.text,
            )


def test_openai_client_with_an_owner_made_token(served, node):
    token = node.tokens.create("editor", {"chat"})
    client = openai.OpenAI(base_url=served.url + "/v1", api_key=token, max_retries=0)
    reply = client.chat.completions.create(
        model="flurry",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=16,
        temperature=0,
    )
    assert reply.choices[0].message.content and reply.usage.completion_tokens > 0
    stream = client.chat.completions.create(
        model="flurry",
        messages=[{"role": "user", "content": "Count to three."}],
        max_tokens=16,
        stream=True,
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=served.url + "/v1", api_key="flurry_wrong", max_retries=0
        ).models.list()
    reader = node.tokens.create("reader", {"ask"})
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(
            base_url=served.url + "/v1", api_key=reader, max_retries=0
        ).chat.completions.create(model="flurry", messages=[{"role": "user", "content": "hi"}])
    node.tokens.revoke("editor")
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_v1_flurry_data_answers_from_the_owners_data_through_the_grounded_path(served, node):
    token = node.tokens.create("data-app", {"chat"})
    client = openai.OpenAI(base_url=served.url + "/v1", api_key=token, max_retries=0)
    assert {"flurry", "flurry-data"} <= {m.id for m in client.models.list()}
    asked = [
        {"role": "user", "content": "Hello."},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "What did I decide about the kitchen renovation cabinets?"},
    ]
    text = (
        client.chat.completions.create(model="flurry-data", messages=asked)
        .choices[0]
        .message.content
    )
    # What the evidence guarantees, whatever the model's own words: the quote the answer rests on.
    assert "«We decided to go with oak cabinets and a white quartz countertop" in text, text
    streamed = client.chat.completions.create(model="flurry-data", messages=asked, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices).strip() == text
    nothing = client.chat.completions.create(
        model="flurry-data", messages=[{"role": "user", "content": "What is my passport number?"}]
    )
    assert nothing.choices[0].message.content == NOT_FOUND
    node.tokens.revoke("data-app")


def test_a_full_queue_answers_503_and_a_disconnect_cancels(node):
    busy = Served(node, max_waiting=1)
    try:
        owner = signed_client(
            node.keys.owner_key,
            verification_method_id(node.keys.owner_did),
            base_url=busy.url,
            timeout=300,
        )

        def one(i: int) -> tuple[int, str | None]:
            response = owner.post(
                "/api/ask", json={"question": f"Tell me everything about the garden, take {i}."}
            )
            return response.status_code, response.headers.get("retry-after")

        # Hold the model with a job of our own, so that what the six see does not hang on how
        # fast the worker thread picks up a job: one of them waits (max_waiting=1), five are
        # refused. (Left to timing, the second could find the first not yet started, still
        # waiting, and be refused too: CI saw that once.)
        model_queue = busy.app.state.model_queue
        release = threading.Event()

        def hold() -> Iterator[str]:
            release.wait(timeout=120)
            yield ""

        holder = model_queue.submit(hold, lane="owner")
        assert holder.started.wait(timeout=10)
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(one, i) for i in range(6)]
            deadline = time.monotonic() + 60
            while sum(f.done() for f in futures) < 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert model_queue.waiting == 1
            release.set()
            results = [f.result() for f in futures]
        codes = [code for code, _ in results]
        assert sorted(codes) == [200, 503, 503, 503, 503, 503], codes
        assert all(int(retry) >= 1 for code, retry in results if code == 503)

        # Read the first token of an answer, then hang up: the job must stop, not run to the end.
        with owner.stream(
            "POST", "/api/ask", json={"question": "Write a long story about the garden."}
        ) as response:
            for line in response.iter_lines():
                if '"token"' in line:
                    break
        deadline = time.monotonic() + 10
        while model_queue.busy and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not model_queue.busy, "the disconnected job kept the model busy"
        owner.close()
    finally:
        busy.stop()


def test_a_running_node_serves_the_command_line(flurry, corpus):
    """`flurry serve` holds the home; `flurry ask` goes through its signed API instead."""
    flurry("init")
    flurry("add", str(corpus))
    with flurry.serving() as url:
        result = json.loads(flurry("ask", "When should I plant the tomatoes?", "--json").stdout)
        assert result["sources"][0]["path"].endswith("garden.md") and result["answer"]
        wrong = flurry("ask", "anything", check=False, FLURRY_PASSPHRASE="wrong")
        assert wrong.returncode == 1 and "wrong passphrase" in wrong.stderr
        # A request signed for another server (here: another port) is refused, nonce or not.
        keys = Keyring.unlock(flurry.home / "keyring.json", PASSPHRASE)
        elsewhere = "http://127.0.0.1:1/api/whoami"
        headers = sign_request(
            "GET", elsewhere, {}, b"", keys.owner_key, verification_method_id(keys.owner_did)
        )
        response = httpx.get(url + "/api/whoami", headers={**headers, "host": "127.0.0.1:1"})
        assert (response.status_code, response.json().get("reason")) == (401, "wrong_host"), (
            response.text
        )
        with signed_client(
            keys.owner_key, verification_method_id(keys.owner_did), base_url=url
        ) as owner:
            assert owner.get("/api/whoami").json() == {"did": keys.owner_did, "owner": True}
    assert not (flurry.home / "serve.json").exists()


# --- /v1: what OpenAI's clients send and expect --------------------------------------------------


def test_openai_content_arrays_are_read_as_text_and_other_parts_refused():
    from node.http.openai import OpenAIRequestError, chat_request

    request = {
        "model": "flurry",
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Say hello."},
                    {"type": "text", "text": "Then stop."},
                ],
            },
        ],
    }
    chat = chat_request(json.dumps(request).encode())
    # Text, as the model's chat template reads it; never a Python repr of the list.
    assert chat.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello.\nThen stop."},
    ]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    request["messages"][1]["content"].append(image)
    with pytest.raises(OpenAIRequestError) as refused:
        chat_request(json.dumps(request).encode())
    assert refused.value.status == 400 and refused.value.param == "messages[1].content[2].type"
    assert "image_url" in refused.value.detail and "text only" in refused.value.detail


def test_openai_client_content_arrays_finish_reasons_and_usage(served, node):
    token = node.tokens.create("v1-shapes", {"chat"})
    client = openai.OpenAI(base_url=served.url + "/v1", api_key=token, max_retries=0)
    try:
        parts = [
            {"type": "text", "text": "Count from one to fifty, in words,"},
            {"type": "text", "text": "separated by commas."},
        ]
        cut = client.chat.completions.create(
            model="flurry",
            messages=[{"role": "user", "content": parts}],
            max_tokens=3,
            temperature=0,
        )
        # (usage counts what llama.cpp evaluated: the last token of a cut answer is not, so it may say one less)
        assert cut.choices[0].finish_reason == "length" and 2 <= cut.usage.completion_tokens <= 3
        assert cut.choices[0].message.content  # the array was read: the model answered it

        short = client.chat.completions.create(
            model="flurry",
            messages=[{"role": "user", "content": "Say hi."}],
            max_tokens=200,
            temperature=0,
        )
        assert short.choices[0].finish_reason == (
            "length" if short.usage.completion_tokens >= 200 else "stop"
        )

        chunks = list(
            client.chat.completions.create(
                model="flurry",
                messages=[{"role": "user", "content": parts}],
                max_tokens=4,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        finishes = [
            c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
        ]
        assert finishes == ["length"]
        # The last chunk has no choices and the usage; every other chunk says usage null.
        assert (
            chunks[-1].choices == []
            and 3 <= chunks[-1].usage.completion_tokens <= 4
            and chunks[-1].usage.prompt_tokens >= 0
        )
        assert all(c.usage is None for c in chunks[:-1])

        plain = list(
            client.chat.completions.create(
                model="flurry",
                messages=[{"role": "user", "content": parts}],
                max_tokens=4,
                stream=True,
            )
        )
        assert all(c.usage is None and c.choices for c in plain)
        assert plain[-1].choices[0].finish_reason == "length"
    finally:
        node.tokens.revoke("v1-shapes")


def test_openai_errors_come_in_openai_shape_on_v1_only(served, node, owner):
    token = node.tokens.create("v1-errors", {"chat"})
    client = openai.OpenAI(base_url=served.url + "/v1", api_key=token, max_retries=0)
    try:
        image = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(
                model="flurry", messages=[{"role": "user", "content": image}]
            )
        error = refused.value
        assert (error.type, error.param, error.code) == (
            "invalid_request_error",
            "messages[0].content[0].type",
            "unsupported_content_type",
        )
        assert "text only" in error.body["message"]
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="flurry", messages=[])
        assert refused.value.param == "messages" and refused.value.type == "invalid_request_error"
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(
                model="flurry", messages=[{"role": "user", "content": "hi"}], max_tokens=100_000
            )
        assert refused.value.param == "max_tokens"

        with pytest.raises(openai.AuthenticationError) as refused:
            openai.OpenAI(
                base_url=served.url + "/v1", api_key="flurry_wrong", max_retries=0
            ).models.list()
        assert refused.value.code == "invalid_api_key" and refused.value.body["message"]
        reader = node.tokens.create("v1-reader", {"ask"})
        with pytest.raises(openai.PermissionDeniedError) as refused:
            openai.OpenAI(
                base_url=served.url + "/v1", api_key=reader, max_retries=0
            ).chat.completions.create(model="flurry", messages=[{"role": "user", "content": "hi"}])
        assert refused.value.type == "permission_error"
        node.tokens.revoke("v1-reader")
        with pytest.raises(openai.NotFoundError) as refused:
            client.completions.create(model="flurry", prompt="hi")  # not served here
        assert refused.value.type == "invalid_request_error"

        raw = httpx.post(
            served.url + "/v1/chat/completions",
            content=b"not json",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert raw.status_code == 400 and raw.headers["content-type"] == "application/json"
        assert set(raw.json()) == {"error"} and set(raw.json()["error"]) == {
            "message",
            "type",
            "param",
            "code",
        }
    finally:
        node.tokens.revoke("v1-errors")
    # The rest of the API keeps RFC 9457 problems.
    refused = owner.post(
        "/api/ask", content=b"not json", headers={"content-type": "application/json"}
    )
    assert (
        refused.status_code == 400 and refused.headers["content-type"] == "application/problem+json"
    )
    assert httpx.get(served.url + "/api/nothing-here").json() == {"detail": "Not Found"}


def test_a_model_failing_mid_stream_is_reported_in_band_as_openai_does(served, node, monkeypatch):
    class Failing:
        """Stands in for the chat model (what is tested is the stream, not the model): one piece, then a crash."""

        last_finish_reason, last_prompt_tokens_read, last_tokens_generated = None, 0, 0

        def stream(self, messages, **options):
            yield "Hel"
            raise RuntimeError("the GPU fell off")

    monkeypatch.setattr(node, "_chat_model", Failing())
    token = node.tokens.create("v1-failing", {"chat"})
    try:
        client = openai.OpenAI(base_url=served.url + "/v1", api_key=token, max_retries=0)
        pieces = []
        with pytest.raises(openai.APIError) as failed:
            for chunk in client.chat.completions.create(
                model="flurry", messages=[{"role": "user", "content": "hi"}], stream=True
            ):
                pieces += (
                    [chunk.choices[0].delta.content]
                    if chunk.choices and chunk.choices[0].delta.content
                    else []
                )
        assert (
            pieces == ["Hel"]
            and failed.value.type == "server_error"
            and "GPU" not in str(failed.value.body)
        )
    finally:
        node.tokens.revoke("v1-failing")
