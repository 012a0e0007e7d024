"""The loop test: two real nodes whose owners' rules auto-reply to each other. However they
are wired, the exchange stops within the loop guard: no runaway (messages counted).

By mail: each node's mail sender is a recording sender (a stand-in for the mail engineer's
SMTP sender) that hands what it was given to the other node's pipeline as a mail would arrive,
with the labels every agent mail carries (Auto-Submitted, X-Flurry-Agent) — and, in the worst
case, with those labels stripped by something in between, where the loop guard alone must stop
it. By Nostr: two served nodes on nostr-sdk's LocalRelay (as tests/test_nostr.py), replies on
the node's own wire.

The model is not what these tests test: both nodes answer with tests/fake_model.py's stand-in
(their grounded answers fall back to the evidence line itself, which is enough to send)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterator

import nostr_sdk
import pytest
from conftest import Served, new_node
from fake_model import FakeChatModel, chat_model
from test_nostr import Loop, PlainClient, _wait_for

from agent.incoming import DISCLOSURE_HEADER, Incoming, Outgoing
from node.node import Node
from node.nostr_owner import LocalNostrOwner
from node.nostr_wire import add_relay
from node.owner import LocalOwner

QUESTION = "Which airline are the Lisbon flights booked with?"
RUNAWAY = 50  # deliveries after which the exchange would be a runaway


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, models_dir) -> Iterator[tuple[Node, Node]]:
    root = tmp_path_factory.mktemp("inbox-loop")
    a, b = (
        new_node(root / "a", models_dir, notes=True),
        new_node(root / "b", models_dir, notes=True),
    )
    with chat_model(a, FakeChatModel()), chat_model(b, FakeChatModel()):
        yield a, b
    a.close()
    b.close()


# --- by mail ----------------------------------------------------------------------------------


class Post:
    """The mail between the two nodes: each node's sender is a `Mailbox` that posts what it is
    handed here; ``deliver`` hands each mail to the addressee's pipeline, until none is left."""

    def __init__(self, *, strip_labels: bool) -> None:
        self.strip_labels = strip_labels
        self.queue: deque[tuple[str, Outgoing, str]] = deque()
        self.pipelines: dict[str, Node] = {}
        self.sent: list[tuple[str, Outgoing]] = []

    def mailbox(self, address: str, node: Node) -> Mailbox:
        self.pipelines[address] = node
        return Mailbox(self, address)

    def deliver(self) -> int:
        delivered = 0
        while self.queue:
            assert delivered < RUNAWAY, f"runaway: {delivered} mails and still going"
            sender, reply, message_id = self.queue.popleft()
            headers = {"message-id": message_id}
            if reply.in_reply_to:
                headers["in-reply-to"] = reply.in_reply_to
            if reply.agent_made and not self.strip_labels:
                # What the mail engineer's SMTP sender puts on every agent's mail.
                headers["auto-submitted"] = "auto-replied"
                headers[DISCLOSURE_HEADER.lower()] = "written by an agent"
            node = self.pipelines[reply.to]
            node.inbox.on_message(
                Incoming(
                    "mail", message_id, sender, reply.text, subject=reply.subject, headers=headers
                )
            )
            delivered += 1
        return delivered


class Mailbox:
    """One node's MailSender: a recording sender that posts each reply to the other node."""

    def __init__(self, post: Post, address: str) -> None:
        self.post, self.address = post, address

    def send(self, reply: Outgoing) -> str:
        message_id = f"<{len(self.post.sent)}.{self.address}>"
        self.post.sent.append((self.address, reply))
        self.post.queue.append((self.address, reply, message_id))
        return message_id


def _wire_up(a: Node, b: Node, a_addr: str, b_addr: str, *, strip_labels: bool) -> Post:
    post = Post(strip_labels=strip_labels)
    a.inbox.connect("mail", post.mailbox(a_addr, a))
    b.inbox.connect("mail", post.mailbox(b_addr, b))
    a.inbox.add_rule("sender", b_addr, "auto-reply", ["travel"], 10)
    b.inbox.add_rule("sender", a_addr, "auto-reply", ["travel"], 10)
    return post


def _first_mail(post: Post, sender: str, to: str) -> None:
    """A person writes: the first mail, with no labels."""
    post.queue.append(
        (
            sender,
            Outgoing("mail", to, f"Hello!\n{QUESTION}", subject="Lisbon flights", agent_made=False),
            f"<first.{sender}>",
        )
    )


def test_labelled_agent_mail_is_never_answered_by_the_other_agent(nodes):
    a, b = nodes
    post = _wire_up(a, b, "ana@a.example", "bob@b.example", strip_labels=False)
    _first_mail(post, "bob@b.example", "ana@a.example")
    assert post.deliver() == 2  # the person's mail, and A's one reply
    assert [(who, r.to) for who, r in post.sent] == [("ana@a.example", "bob@b.example")]
    [at_b] = [i for i in b.inbox.items() if i["sender"] == "ana@a.example"]
    assert at_b["action"] == "ignore" and "Auto-Submitted" in at_b["why"][-1]


def test_with_the_labels_stripped_the_loop_guard_stops_it(nodes):
    a, b = nodes
    post = _wire_up(a, b, "ana2@a.example", "bob2@b.example", strip_labels=True)
    _first_mail(post, "bob2@b.example", "ana2@a.example")
    assert post.deliver() == 3  # the person's mail, A's reply, B's reply; then A waits
    assert [who for who, _ in post.sent] == ["ana2@a.example", "bob2@b.example"]
    last_at_a = max(
        (i for i in a.inbox.items() if i["sender"] == "bob2@b.example"),
        key=lambda i: i["handled_at"],
    )
    assert last_at_a["status"] == "proposed" and "loop guard" in last_at_a["why"][-1]

    # A's owner approves the draft: A wrote, so B's agent is where the guard now holds.
    a.inbox.approve(last_at_a["id"])
    assert post.deliver() == 1 and len(post.sent) == 3
    last_at_b = max(
        (i for i in b.inbox.items() if i["sender"] == "ana2@a.example"),
        key=lambda i: i["handled_at"],
    )
    assert last_at_b["status"] == "proposed" and "loop guard" in last_at_b["why"][-1]
    assert not post.queue


# --- by Nostr ---------------------------------------------------------------------------------


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

    yield loop.run(start())
    local.shutdown()


@pytest.fixture(scope="module")
def served(nodes, relay) -> Iterator[tuple[Served, Served]]:
    """A and B served, on the relay, each pinning the other, each with a rule that auto-replies
    to the other's DID from travel (and no "ask" grant: the agent answers, not the grant path)."""
    a, b = nodes
    for node in (a, b):
        add_relay(node.vault, relay)
    served_a, served_b = Served(a), Served(b)
    asyncio.run(LocalOwner(b).add_peer(served_a.url, "a"))
    asyncio.run(LocalOwner(a).add_peer(served_b.url, "b"))
    a.inbox.add_rule("did", b.keys.node_did, "auto-reply", ["travel"], 10)
    b.inbox.add_rule("did", a.keys.node_did, "auto-reply", ["travel"], 10)
    yield served_a, served_b
    served_a.stop()
    served_b.stop()


def _nostr_items(node: Node, sender: Node) -> list[dict]:
    return [
        i
        for i in node.inbox.items()
        if i["channel"] == "nostr" and i["sender"] == sender.keys.nostr_public_key_hex
    ]


def _as_b(loop: Loop, relay: str, b: Node) -> PlainClient:
    """B's owner in another Nostr app, with B's key: messages without the agent-made label."""
    client = PlainClient(loop, relay)
    client.keys = nostr_sdk.Keys(nostr_sdk.SecretKey.parse(b.keys.nostr_key.secret.hex()))
    return client


def _sent(node: Node, action: str) -> int:
    """Messages the node sent over Nostr, as its audit log has them (the mail tests' aside)."""
    return sum(
        1 for e in node.audit.entries() if e.action == action and e.target.startswith("nostr:")
    )


def test_two_agents_on_nostr_stop_within_the_loop_guard(served, loop, relay):
    served_a, served_b = served
    a, b = served_a.node, served_b.node

    # B's owner writes through B's node: labelled agent-made, so A's agent drafts, never sends.
    LocalNostrOwner(b, served_b.app.state.nostr).send("a", QUESTION)
    first = _wait_for(lambda: _nostr_items(a, b), what="B's message in A's inbox")[0]
    assert first["action"] == "draft" and "agent" in first["why"][-1]
    assert (
        first["peer_did"] == b.keys.node_did and first["draft"]["to"] == b.keys.nostr_public_key_hex
    )

    # B's owner writes again from another Nostr app with the same key (no label): A's rule
    # auto-replies, on A's wire (labelled); B's agent gets a labelled reply and only drafts.
    as_b = _as_b(loop, relay, b)
    a_key = nostr_sdk.PublicKey.parse(a.keys.nostr_public_key_hex)
    try:
        as_b.publish(nostr_sdk.nip17_make_private_msg(as_b.keys, a_key, f"Hi! {QUESTION}"))
        _wait_for(lambda: len(_nostr_items(b, a)) == 1, what="A's reply in B's inbox")
        [reply_at_b] = _nostr_items(b, a)
        assert "TAP" in reply_at_b["text"] and reply_at_b["status"] != "sent"
        assert "agent" in reply_at_b["why"][-1]

        # And once more: A already auto-replied and its owner has not written since.
        as_b.publish(nostr_sdk.nip17_make_private_msg(as_b.keys, a_key, f"Again: {QUESTION}"))
        _wait_for(lambda: len(_nostr_items(a, b)) == 3, what="B's third message in A's inbox")
    finally:
        as_b.close()
    third = max(_nostr_items(a, b), key=lambda i: i["handled_at"])
    assert third["status"] == "proposed" and "loop guard" in third["why"][-1]

    time.sleep(3)  # anything still in flight would land now
    assert len(_nostr_items(a, b)) == 3 and len(_nostr_items(b, a)) == 1
    assert (_sent(a, "inbox.reply"), _sent(a, "nostr.reply")) == (1, 1)  # A's one auto-reply
    assert (_sent(b, "inbox.reply"), _sent(b, "nostr.reply")) == (0, 0)  # B never replied

    # A's owner writes to B in person: the loop guard lets A's agent answer B once more.
    LocalNostrOwner(a, served_a.app.state.nostr).send("b", "My agent will answer you.")
    as_b = _as_b(loop, relay, b)
    try:
        as_b.publish(nostr_sdk.nip17_make_private_msg(as_b.keys, a_key, f"One more: {QUESTION}"))
        _wait_for(lambda: _sent(a, "inbox.reply") == 2, what="A's second auto-reply")
    finally:
        as_b.close()
    time.sleep(3)
    assert (_sent(a, "inbox.reply"), _sent(a, "nostr.reply"), _sent(a, "nostr.send")) == (2, 2, 1)
    assert _sent(b, "inbox.reply") == 0 and len(_nostr_items(b, a)) == 3  # two replies, one note
