"""Skills and tool approvals through the owner API of a real node served on loopback: install a
wheel built here, review and approve it, ask with tools (a stand-in model makes the call), and
answer the pending tool call from a second client the way the TUI does."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import new_node
from fake_model import FakeChatModel
from test_api import Peer
from test_skills import make_wheel
from test_skills_cli import NOTES_SKILL, PLUMBER

from identity.did_key import verification_method_id
from identity.signing_client import signed_client
from node.node import Node


@pytest.fixture(scope="module")
def node(tmp_path_factory, models_dir) -> Iterator[Node]:
    node = new_node(tmp_path_factory.mktemp("skills-api"), models_dir)
    # The approvals, the skill's process and the audit log are the subject here, not the
    # model's choice (which is not portable, issue 20): a stand-in always chooses add_note for
    # PLUMBER. The real model's tool path runs end to end in test_skills_cli.
    node._chat_model = FakeChatModel(
        call={"tool": "add_note", "arguments": {"text": "call the plumber on Monday"}}
    )
    yield node
    node.close()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return make_wheel(tmp_path_factory.mktemp("wheels"), "notes-skill", "notes_skill", NOTES_SKILL)


def _events(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def test_install_review_approve_enable_and_remove(owner, wheel):
    installed = owner.post("/api/owner/skills/install", json={"source": str(wheel)})
    assert installed.status_code == 200, installed.text
    skill = installed.json()
    assert skill["name"] == "notes" and skill["approved"] is False and skill["enabled"] is False
    assert skill["requested"] == ["notes.write"] and skill["granted"] == []
    assert skill["tools"] == [
        {
            "name": "add_note",
            "description": "Add a note to the owner's notes.",
            "policy": "ask",
            "input_schema": {
                "type": "object",
                "required": ["text"],
                "properties": {"text": {"type": "string", "description": "The note"}},
            },
            "disabled": False,
        }
    ]
    assert skill["review"] == []  # nothing changed since approval (skills.tool_pins)

    # Approving a permission it never asked for is refused, and changes nothing.
    refused = owner.post(
        "/api/owner/skills/approve", json={"name": "notes", "permissions": ["peers.send"]}
    )
    assert refused.status_code == 400 and "did not ask for" in refused.json()["detail"]
    approved = owner.post(
        "/api/owner/skills/approve", json={"name": "notes", "permissions": ["notes.write"]}
    ).json()
    assert approved["approved"] and approved["enabled"] and approved["granted"] == ["notes.write"]

    assert (
        owner.post("/api/owner/skills/disable", json={"name": "notes"}).json()["enabled"] is False
    )
    assert owner.post("/api/owner/skills/enable", json={"name": "notes"}).json()["enabled"] is True
    assert [s["name"] for s in owner.get("/api/owner/skills").json()] == ["notes"]

    again = owner.post("/api/owner/skills/install", json={"source": str(wheel)})
    assert again.status_code == 400 and "remove it first" in again.json()["detail"]
    assert owner.post("/api/owner/skills/remove", json={"name": "notes"}).json() == {
        "removed": True
    }
    assert owner.get("/api/owner/skills").json() == []


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        (
            "/api/owner/skills/install",
            {"source": "/no/such/file.whl"},
            400,
            "neither a file or folder",
        ),
        (
            "/api/owner/skills/install",
            {"source": "flurry-skill @ https://example.org/x.whl"},
            400,
            "URL is refused",
        ),
        ("/api/owner/skills/install", {}, 400, "source"),
        # a list field sent as something else: 400, not a crash (node.http.calls reads it)
        ("/api/owner/skills/install-mcp", {"name": "x", "argv": 5}, 400, "malformed field"),
        ("/api/owner/skills/approve", {"name": "x", "permissions": 5}, 400, "malformed field"),
        ("/api/owner/tokens", {"name": "x", "allow": 5}, 400, "malformed field"),
        ("/api/owner/skills/enable", {"name": "nope"}, 404, "no skill named"),
        ("/api/owner/skills/remove", {"name": "nope"}, 404, "no skill named"),
        ("/api/owner/approvals/decide", {"id": "nope", "decision": "approve"}, 404, "is waiting"),
        (
            "/api/owner/approvals/decide",
            {"id": "nope", "decision": "maybe"},
            400,
            "approve or deny",
        ),
    ],
)
def test_bad_requests_are_clear_problems(owner, path, body, status, words):
    response = owner.post(path, json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.json()["detail"]


def test_only_the_owner_manages_skills_or_asks_with_tools(served, node):
    stranger = Peer()
    with stranger.client(served.url) as http:
        assert http.get("/api/owner/skills").status_code == 403
        assert http.get("/api/owner/approvals").status_code == 403
        assert http.post("/api/ask", json={"question": PLUMBER, "tools": True}).status_code == 403
    assert httpx.get(served.url + "/api/owner/skills").status_code == 401  # unsigned


def _ask_with_tools_and_answer(
    owner: httpx.Client, served_url: str, node: Node, decision: str
) -> tuple[list[dict], list[dict]]:
    """Ask with tools on one connection; from a second client (as the TUI would), wait for the
    pending call to be listed and decide it. Returns the stream's events and what was listed."""
    listed: list[dict] = []

    def decide() -> None:
        keys = node.keys
        with signed_client(
            keys.owner_key, verification_method_id(keys.owner_did), base_url=served_url, timeout=60
        ) as other:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                pending = other.get("/api/owner/approvals").json()
                if pending:
                    listed.extend(pending)
                    answer = other.post(
                        "/api/owner/approvals/decide",
                        json={"id": pending[0]["id"], "decision": decision},
                    )
                    assert answer.status_code == 200
                    return
                time.sleep(0.1)

    decider = threading.Thread(target=decide)
    decider.start()
    response = owner.post("/api/ask", json={"question": PLUMBER, "tools": True})
    decider.join()
    assert response.status_code == 200
    return _events(response), listed


def test_a_tool_call_waits_for_the_owner_then_runs_or_not(owner, served, node, wheel):
    owner.post("/api/owner/skills/install", json={"source": str(wheel)}).raise_for_status()
    owner.post(
        "/api/owner/skills/approve", json={"name": "notes", "permissions": ["notes.write"]}
    ).raise_for_status()
    try:
        events, listed = _ask_with_tools_and_answer(owner, served.url, node, "approve")
        kinds = [e["type"] for e in events]
        assert kinds[:3] == ["conversation", "approval", "tool"] and kinds[-1] == "done", kinds
        approval, tool = events[1], events[2]
        # The owner saw the tool and every argument, exactly as it then ran.
        assert listed[0]["id"] == approval["id"] and listed[0]["arguments"] == approval["arguments"]
        assert listed[0]["requester"] == node.keys.owner_did and listed[0]["skill"] == "notes"
        assert tool["ran"] is True and tool["arguments"] == approval["arguments"]
        assert tool["result"] == "noted: " + approval["arguments"]["text"] == events[-1]["answer"]
        assert owner.get("/api/owner/approvals").json() == []

        events, _ = _ask_with_tools_and_answer(owner, served.url, node, "deny")
        tool = next(e for e in events if e["type"] == "tool")
        assert tool["ran"] is False and "refused" in tool["reason"] and "result" not in tool

        # Both decisions and the one call that ran are in the audit log, which verifies.
        entries = [e for e in node.audit.entries() if e.action in ("tool.approval", "skill.tool")]
        assert [(e.action, e.details.get("decision")) for e in entries] == [
            ("tool.approval", "approve"),
            ("skill.tool", None),
            ("tool.approval", "deny"),
        ]
        assert owner.get("/api/owner/audit").json()["ok"] is True

        # "allow" runs without asking; a question about nothing a tool does is not a tool call.
        owner.put(
            "/api/owner/skills/policy", json={"tool": "add_note", "decision": "allow"}
        ).raise_for_status()
        events = _events(owner.post("/api/ask", json={"question": PLUMBER, "tools": True}))
        assert [e["type"] for e in events][:2] == ["conversation", "tool"] and events[1][
            "ran"
        ] is True
    finally:
        owner.post("/api/owner/skills/remove", json={"name": "notes"})


def test_a_client_that_hangs_up_withdraws_its_pending_call(owner, served, node, wheel):
    owner.post("/api/owner/skills/install", json={"source": str(wheel)}).raise_for_status()
    owner.post(
        "/api/owner/skills/approve", json={"name": "notes", "permissions": ["notes.write"]}
    ).raise_for_status()
    try:
        assert (
            owner.get("/api/owner/skills").json()[0]["tools"][0]["policy"] == "ask"
        )  # removal forgot "allow"
        with owner.stream(
            "POST", "/api/ask", json={"question": PLUMBER, "tools": True}
        ) as response:
            seen = []
            for line in response.iter_lines():
                seen.append(json.loads(line)["type"])
                if seen[-1] == "approval":
                    break
        assert seen[-1] == "approval", seen
        deadline = time.monotonic() + 30
        while owner.get("/api/owner/approvals").json() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert owner.get("/api/owner/approvals").json() == []
        assert [e.details["decision"] for e in node.audit.entries() if e.action == "tool.approval"][
            -1
        ] == "withdrawn"
    finally:
        owner.post("/api/owner/skills/remove", json={"name": "notes"})
