"""The capability broker, end to end: real skill processes ask a real node (vault, indexes,
embedder, audit log) for what the owner granted, and nothing more. The built-in skills are
exercised the same way, as ordinary skills. The one HTTP server here stands in for the
internet (a host a skill was granted), on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import new_node
from fake_model import FakeChatModel, chat_model
from test_skills import make_wheel

from agent.tools import ToolCall
from node.node import Node
from skills.host import ToolFailed

# A test skill that tries every capability; each tool returns what happened, as JSON.
PROBE = """
import json
from skills.sdk import CapabilityDenied, CapabilityFailed, Skill, node

def attempt(fn):
    try:
        return json.dumps({"ok": fn()})
    except (CapabilityDenied, CapabilityFailed) as e:
        return json.dumps({"refused": type(e).__name__, "why": str(e)})

def search(query, tags=None):
    return attempt(lambda: node.search(query, k=2, tags=tags))

def note(text):
    return attempt(lambda: node.write_note("probe", text))

def fetch(url):
    return attempt(lambda: node.http(url))

def peer(text):
    return attempt(lambda: node.ask_peer("nobody", text))

def confirm(text):
    return attempt(lambda: node.ask_owner(text))

def skill():
    text = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
    return Skill(
        manifest={
            "name": "probe", "version": "0.1.0", "description": "Tries every capability.",
            "permissions": ["vault.read:tags=travel", "http:host=127.0.0.1", "http:origin=http://127.0.0.1:PORT",
                            "http:origin=http://api.example.com:PORT", "notes.write", "peers.send", "owner.ask"],
            "tools": [
                {"name": "search", "description": "search", "parameters": {"type": "object", "required": ["query"],
                 "properties": {"query": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}}},
                {"name": "note", "description": "note", "parameters": text},
                {"name": "fetch", "description": "fetch", "parameters": {"type": "object", "required": ["url"],
                 "properties": {"url": {"type": "string"}}}},
                {"name": "peer", "description": "peer", "parameters": text},
                {"name": "confirm", "description": "confirm", "parameters": text},
            ],
        },
        tools={"search": search, "note": note, "fetch": fetch, "peer": peer, "confirm": confirm},
    )
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory, models_dir) -> Iterator[Node]:
    node = new_node(tmp_path_factory.mktemp("broker"), models_dir, notes=True)
    yield node
    node.close()


class Internet:
    """A web host on loopback that records what reached it (the edge of the world, mocked)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append({"path": self.path, "headers": dict(self.headers)})
                body = b"the weather is mild"
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def probe(port: int = 8080) -> str:
    """The probe skill's source, asking for grants on ``port`` (the loopback Internet's)."""
    return PROBE.replace("PORT", str(port))


def _call(node: Node, skill: str, tool: str, arguments: dict) -> dict:
    return json.loads(node._skill_process(skill).call_tool(tool, arguments))


def test_a_skill_gets_what_was_granted_and_nothing_more(node, tmp_path):
    internet = Internet()
    loopback = f"http:origin=http://127.0.0.1:{internet.port}"  # the owner names the address itself
    wheel = make_wheel(tmp_path, "probe", "probe_skill", probe(internet.port))
    node.skills.install(wheel)
    node.skills.approve(
        "probe", ["vault.read:tags=travel", loopback]
    )  # not notes.write, not peers.send
    try:
        # Searching: only documents with the granted tag, whatever the question.
        found = _call(
            node, "probe", "search", {"query": "Which airline are the Lisbon flights booked with?"}
        )["ok"]
        assert found and all(hit["path"].endswith("lisbon.txt") for hit in found)
        dentist = _call(node, "probe", "search", {"query": "When is the dentist appointment?"})[
            "ok"
        ]
        assert all(hit["path"].endswith("lisbon.txt") for hit in dentist)
        widened = _call(node, "probe", "search", {"query": "dentist", "tags": ["health"]})
        assert widened["refused"] == "CapabilityDenied" and "tagged travel" in widened["why"]

        # Permissions it asked for but the owner did not grant are refused, by name.
        note = _call(node, "probe", "note", {"text": "sneaky"})
        assert note["refused"] == "CapabilityDenied" and "notes.write" in note["why"]
        peer = _call(node, "probe", "peer", {"text": "hello"})
        assert peer["refused"] == "CapabilityDenied" and "peers.send" in peer["why"]
        asked = _call(node, "probe", "confirm", {"text": "May I?"})
        assert (
            asked["refused"] == "CapabilityDenied"
            and "owner.ask" in asked["why"]
            and not node.approvals.pending()
        )

        # HTTP: the node makes the call for it, signed and labelled agent-made, and audits it.
        fetched = _call(
            node, "probe", "fetch", {"url": f"http://127.0.0.1:{internet.port}/weather"}
        )["ok"]
        assert fetched == {
            "status": 200,
            "content_type": "text/plain",
            "body": "the weather is mild",
        }
        headers = {k.lower(): v for k, v in internet.requests[-1]["headers"].items()}
        assert "signature" in headers and "flurry-agent" in headers["signature-input"]
        assert node.keys.owner_did in headers["flurry-agent"]
        other = _call(node, "probe", "fetch", {"url": "https://example.org/"})
        assert other["refused"] == "CapabilityDenied" and "http:host=example.org" in other["why"]
        assert len(internet.requests) == 1
        audited = [e for e in node.audit.entries() if e.action == "skill.http"]
        assert audited[-1].details == {
            "skill": "probe",
            "method": "GET",
            "url": f"http://127.0.0.1:{internet.port}/weather",
            "status": 200,
        }

        # Granting takes effect on the next call, and so does a revocation: no restart needed.
        node.skills.approve("probe", ["vault.read:tags=travel", loopback, "peers.send"])
        unknown_peer = _call(node, "probe", "peer", {"text": "hello"})
        assert (
            unknown_peer["refused"] == "CapabilityFailed"
            and "no pinned peer 'nobody'" in unknown_peer["why"]
        )
        node.skills.revoke("probe", loopback)
        revoked = _call(
            node, "probe", "fetch", {"url": f"http://127.0.0.1:{internet.port}/weather"}
        )
        assert revoked["refused"] == "CapabilityDenied" and len(internet.requests) == 1
    finally:
        internet.close()
        node.stop_skill("probe")
        node.skills.remove("probe")


def test_http_grants_name_one_origin_and_no_private_address(node, tmp_path):
    """Issue 12, item 9: `http:host=H` allowed any port and scheme of H, and any address H
    resolved to. Now it is https://H:443; another origin must be named whole; and a name that
    resolves to a loopback, private or link-local address is refused (only a grant naming the
    address reaches it). The DNS here is the test's (the edge of the world): it answers
    api.example.com with the loopback address the node itself listens on."""
    internet = Internet()
    port = internet.port
    node.skills.install(make_wheel(tmp_path, "probe", "probe_skill", probe(port)))
    node.skills.approve(
        "probe", ["http:host=127.0.0.1", f"http:origin=http://api.example.com:{port}"]
    )
    broker = node._skill_broker()
    answers = {"api.example.com": ["127.0.0.1"]}
    system_resolver, broker.resolve = broker.resolve, lambda host, _port: answers[host]
    try:
        # http:host=127.0.0.1 is https on 443: not plain http, not another port.
        plain = _call(node, "probe", "fetch", {"url": f"http://127.0.0.1:{port}/weather"})
        assert (
            plain["refused"] == "CapabilityDenied"
            and f"http:origin=http://127.0.0.1:{port}" in plain["why"]
        )
        other_port = _call(node, "probe", "fetch", {"url": f"https://127.0.0.1:{port}/weather"})
        assert (
            other_port["refused"] == "CapabilityDenied"
            and f"http:host=127.0.0.1:{port}" in other_port["why"]
        )
        # A granted name that resolves to loopback (or to a mix with one private address).
        for resolved in (
            ["127.0.0.1"],
            ["93.184.216.34", "10.0.0.8"],
            ["::ffff:127.0.0.1"],
            ["169.254.169.254"],
        ):
            answers["api.example.com"] = resolved
            rebound = _call(
                node, "probe", "fetch", {"url": f"http://api.example.com:{port}/weather"}
            )
            assert (
                rebound["refused"] == "CapabilityDenied"
                and "not a public address" in rebound["why"]
            ), resolved
        assert internet.requests == []  # the listener never heard a thing

        # The node connects to the address the broker checked, and to no other: here (only the
        # node's side, called directly) the pinned address is the loopback Internet, and the
        # name it was given never reaches a resolver; the Host header still names it.
        from node.skill_capabilities import SkillCapabilities

        fetched = SkillCapabilities(node).http_request(
            "probe", "GET", f"http://api.example.com:{port}/pinned", None, address="127.0.0.1"
        )
        assert fetched["status"] == 200
        assert internet.requests[-1]["path"] == "/pinned"
        assert internet.requests[-1]["headers"]["Host"] == f"api.example.com:{port}"
    finally:
        broker.resolve = system_resolver
        internet.close()
        node.stop_skill("probe")
        node.skills.remove("probe")


def test_a_skill_question_waits_for_the_owner(node, tmp_path):
    """owner.ask: at the terminal when the command line is asking, else a pending approval
    that the TUI or `flurry approvals` answers (here: a second thread, as the owner)."""
    node.skills.install(make_wheel(tmp_path, "probe", "probe_skill", probe()))
    node.skills.approve("probe", ["owner.ask"])
    try:
        for decision in (True, False):

            def owner(decision: bool = decision) -> None:  # this round's, bound now
                while not node.approvals.pending():
                    time.sleep(0.05)
                pending = node.approvals.pending()[0]
                assert (
                    pending.call.arguments == {"question": "Book the table for eight?"}
                    and pending.skill == "probe"
                )
                node.approvals.decide(pending.id, decision)

            answering = threading.Thread(target=owner)
            answering.start()
            assert _call(node, "probe", "confirm", {"text": "Book the table for eight?"}) == {
                "ok": decision
            }
            answering.join()
        decisions = [
            e.details["decision"] for e in node.audit.entries() if e.action == "tool.approval"
        ]
        assert decisions[-2:] == ["approve", "deny"]

        seen = []
        node.terminal_prompt = lambda call: seen.append(call) or True
        try:
            assert _call(node, "probe", "confirm", {"text": "At the terminal?"}) == {"ok": True}
        finally:
            node.terminal_prompt = None
        assert seen[0].arguments == {"question": "At the terminal?"}
    finally:
        node.stop_skill("probe")
        node.skills.remove("probe")


@pytest.mark.parametrize(
    "line, code",
    [
        (b"not json\n", "bad_request"),
        (b'{"capability": "vault.search"}\n', "bad_request"),
        (
            b'{"token": "guessed", "capability": "vault.search", "arguments": {"query": "x"}}\n',
            "unknown_skill",
        ),
        (b'{"token": 7, "capability": "vault.search"}\n', "unknown_skill"),
        (b"x" * (1024 * 1024 + 10), "bad_request"),
    ],
)
def test_the_broker_refuses_malformed_or_unknown_requests(node, line, code):
    broker = node._skill_broker()
    assert broker.answer(line)["error"]["code"] == code


def test_a_stopped_skill_token_stops_working(node, tmp_path):
    broker = node._skill_broker()
    env = broker.environment("ghost")
    request = json.dumps(
        {
            "token": env["FLURRY_BROKER_TOKEN"],
            "capability": "vault.search",
            "arguments": {"query": "x"},
        }
    )
    assert (
        broker.answer(request.encode())["error"]["code"] == "failed"
    )  # known token, but no such skill installed
    node.stop_skill("ghost")
    assert broker.answer(request.encode())["error"]["code"] == "unknown_skill"


def test_builtin_notes_remembers_and_recalls_through_the_broker(node):
    node.skills.install("builtin:notes")
    info = node.skills.info("notes")
    assert (
        info.managed
        and info.target is None
        and set(info.requested) == {"notes.write", "vault.read:tags=notes"}
    )
    node.skills.approve("notes", list(info.requested))
    try:
        kept = node._skill_process("notes").call_tool(
            "remember", {"text": "Call the plumber on Monday about the boiler."}
        )
        assert kept.startswith("Noted in notes/")
        # The note is a sealed document like any other: the owner's own questions find it.
        sources = node.retrieve("When should I call the plumber?", 3)
        assert sources[0].path.startswith("notes/") and "plumber" in sources[0].text
        recalled = node._skill_process("notes").call_tool("recall", {"query": "plumber"})
        assert "Call the plumber on Monday" in recalled
        # recall reads only notes: the owner's other documents stay out of its reach.
        assert (
            "lisbon"
            not in node._skill_process("notes")
            .call_tool("recall", {"query": "Lisbon flights TAP"})
            .lower()
        )

        # The issue's own example, through the node's tool path and the owner's policy. The
        # model's choice is not the subject (and not portable, issue 20): a stand-in makes the
        # call; bench/bench_tool_choice.py scores the real model on this request.
        node.set_tool_policy("remember", "allow")
        plumber = {"tool": "remember", "arguments": {"text": "call the plumber on Monday"}}
        with chat_model(node, FakeChatModel(call=plumber)):
            turn = node.ask_with_tools(
                "add a note: call the plumber on Monday", ask_owner=lambda call: False
            )
        assert (
            turn is not None
            and turn.ran
            and turn.call == ToolCall("remember", plumber["arguments"])
        )
        assert turn.result.startswith("Noted in notes/")
        assert len([d for d in node.vault.documents() if d.path.startswith("notes/")]) == 2

        node.skills.revoke("notes", "notes.write")
        with pytest.raises(ToolFailed, match="not granted notes.write"):
            node._skill_process("notes").call_tool("remember", {"text": "one more"})
    finally:
        node.stop_skill("notes")
        node.skills.remove("notes")


def test_builtin_lookup_and_ask_a_peer_install_as_ordinary_skills(node):
    for name, permissions in (
        ("lookup", ["vault.read:tags=calendar,contacts"]),
        ("ask-a-peer", ["peers.send"]),
    ):
        node.skills.install(f"builtin:{name}")
        assert list(node.skills.info(name).requested) == permissions
        node.skills.approve(name, permissions)
    try:
        # No calendar documents yet: the lookup says so rather than reading other documents.
        assert (
            node._skill_process("lookup").call_tool("find_event", {"query": "dentist"})
            == "Nothing in the calendar matches that."
        )
        with pytest.raises(ToolFailed, match="no pinned peer 'alice'"):
            node._skill_process("ask-a-peer").call_tool(
                "ask_peer", {"peer": "alice", "question": "free on Monday?"}
            )
    finally:
        for name in ("lookup", "ask-a-peer"):
            node.stop_skill(name)
            node.skills.remove(name)
    with pytest.raises(Exception, match="no built-in skill 'weather'"):
        node.skills.install("builtin:weather")
