"""The owner's data routes (node/http/documents.py, conversations.py, owner.py) over real
signed HTTP: what the terminal app stands on, and the bad requests it or anyone else may send."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from conftest import CORPUS, PASSPHRASE, new_node, write_corpus
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity.did_key import did_key_from_ed25519_public, verification_method_id
from identity.signing_client import signed_client
from node.home import Home
from node.node import Node
from node.tui_launch import serve_in_thread


@pytest.fixture(scope="module")
def node(tmp_path_factory, models_dir) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("owner-data")
    node = new_node(root, models_dir)
    node.add(str(write_corpus(root / "notes") / "travel"), tags=("travel",))
    node.root = root
    yield node
    node.close()


def ndjson(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def test_add_streams_one_event_per_file_then_a_summary(owner, node):
    (node.root / "notes" / "photo.md").write_bytes(b"\xff\xfe\x00binary\x00")
    response = owner.post(
        "/api/owner/documents/add", json={"path": str(node.root / "notes"), "tags": ["home"]}
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "application/x-ndjson"
    )
    events = ndjson(response)
    progress = [e for e in events if e["type"] == "progress"]
    assert [e["done"] for e in progress] == list(range(1, len(CORPUS) + 2))
    assert all(e["total"] == len(CORPUS) + 1 for e in progress)
    summary = events[-1]
    assert summary["type"] == "summary" and summary["added"] + summary["updated"] == len(CORPUS)
    assert [s["path"].endswith("photo.md") for s in summary["skipped"]] == [True] and summary[
        "skipped"
    ][0]["reason"]
    listed = owner.get("/api/owner/documents").json()
    assert sorted(d["path"].rsplit("/notes/", 1)[1] for d in listed) == sorted(CORPUS)
    assert all(d["tags"] == ["home"] for d in listed)


def test_search_and_open_a_chunk(owner):
    found = owner.post(
        "/api/owner/documents/search", json={"query": "Lisbon flights airline", "k": 2}
    ).json()
    assert found[0]["path"].endswith("travel/lisbon.txt")
    chunk = owner.post(
        "/api/owner/documents/chunk", json={"path": found[0]["path"], "chunk": found[0]["chunk"]}
    ).json()
    assert "TAP" in chunk["text"]


def test_conversations_are_made_continued_renamed_and_deleted(owner, node):
    made = owner.post("/api/owner/conversations", json={"title": "Trip"}).json()
    events = ndjson(
        owner.post(
            "/api/ask",
            json={
                "question": "Which airline are the Lisbon flights booked with?",
                "conversation": made["id"],
            },
        )
    )
    assert events[0] == {"type": "conversation", "id": made["id"]} and events[-1]["type"] == "done"
    opened = owner.post("/api/owner/conversations/open", json={"id": made["id"]}).json()
    assert [m["role"] for m in opened["messages"]] == ["user", "assistant"] and opened[
        "title"
    ] == "Trip"
    assert (
        owner.post(
            "/api/owner/conversations/rename", json={"id": made["id"], "title": "Lisbon"}
        ).json()["title"]
        == "Lisbon"
    )
    assert any(
        c["id"] == made["id"] and c["title"] == "Lisbon"
        for c in owner.get("/api/owner/conversations").json()
    )
    assert owner.post("/api/owner/conversations/delete", json={"id": made["id"]}).json() == {
        "deleted": True
    }
    assert node.vault.messages(made["id"]) == []
    gone = owner.post("/api/ask", json={"question": "and the hotel?", "conversation": made["id"]})
    assert gone.status_code == 404


def test_identity_names_the_dids_and_the_agent_card(owner, node, served):
    me = owner.get("/api/owner/identity").json()
    assert me["owner_did"] == node.keys.owner_did and me["node_did"] == node.keys.node_did
    assert me["agent_card"] == f"{served.url}/.well-known/agent-card.json"
    assert httpx.get(me["agent_card"]).status_code == 200


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("POST", "/api/owner/documents/add", {"path": "/no/such/folder"}, 400),
        ("POST", "/api/owner/documents/add", {"path": ""}, 400),
        ("POST", "/api/owner/documents/add", {"path": "/tmp", "tags": "home"}, 400),
        ("POST", "/api/owner/documents/forget", {"path": "/no/such/folder"}, 404),
        ("POST", "/api/owner/documents/search", {"query": "x", "k": 0}, 400),
        ("POST", "/api/owner/documents/search", {"query": "x", "k": "many"}, 400),
        ("POST", "/api/owner/documents/chunk", {"path": "nope.md", "chunk": 0}, 404),
        ("POST", "/api/owner/documents/chunk", {"path": "nope.md"}, 400),
        ("POST", "/api/owner/conversations/open", {"id": "0" * 32}, 404),
        ("POST", "/api/owner/conversations/rename", {"id": "0" * 32, "title": "x"}, 404),
        ("POST", "/api/owner/conversations/rename", {"id": "0" * 32}, 400),
        ("POST", "/api/owner/conversations/delete", {"id": "0" * 32}, 404),
    ],
)
def test_bad_requests_are_problems(owner, method, path, body, status):
    response = owner.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert (
        response.headers["content-type"] == "application/problem+json" and response.json()["detail"]
    )


def test_a_peer_may_not_touch_the_owners_data(served):
    key = Ed25519PrivateKey.generate()
    did = did_key_from_ed25519_public(key.public_key().public_bytes_raw())
    with signed_client(key, verification_method_id(did), base_url=served.url) as peer:
        for method, path in (
            ("GET", "/api/owner/documents"),
            ("GET", "/api/owner/conversations"),
            ("GET", "/api/owner/identity"),
            ("POST", "/api/owner/documents/add"),
        ):
            assert peer.request(method, path, json={"path": "/tmp"}).status_code == 403, path
    assert httpx.get(f"{served.url}/api/owner/documents").status_code == 401  # unsigned


def test_the_app_launcher_serves_the_home_on_loopback_and_says_so(tmp_path, models_dir):
    """`flurry tui` without a running server: the API in a thread, named in serve.json so the
    command line reaches it; gone again when the app closes."""
    home = Home(tmp_path / "home")
    Node.init(home, PASSPHRASE)
    with Node.open(home, PASSPHRASE, say=lambda line: None) as node:
        with serve_in_thread(node) as url:
            assert home.running_node() == url and url.startswith("http://127.0.0.1:")
            with signed_client(
                node.keys.owner_key, verification_method_id(node.keys.owner_did), base_url=url
            ) as client:
                assert client.get("/api/owner/identity").json()["owner_did"] == node.keys.owner_did
        assert home.running_node() is None and not home.serve_info.exists()


def test_bare_flurry_without_a_terminal_prints_the_help(cli):
    # In process (CliRunner): argument handling; stdin and stdout are not terminals there either.
    result = cli(check=False)
    assert result.returncode == 2 and "Usage: flurry" in result.stderr and "tui" in result.stderr
