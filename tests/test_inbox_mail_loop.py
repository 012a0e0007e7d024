"""The loop test over real mail servers (issue 17): two nodes, each with its own mailbox on a
real IMAP server on loopback (pymap) and its own SMTP server (aiosmtpd), and rules that
auto-reply to each other. A relay carries what each SMTP server received into the other's
mailbox, as the internet would; each node's mail watcher fetches it and hands it to its agent.
With the labels every agent mail carries the exchange stops after one reply; with them stripped
by something in between, the loop guard alone stops it. Every mail the servers received is
counted and its labels checked.

The model is not what is tested here: both nodes answer with tests/fake_model.py's stand-in
(its grounded answer falls back to the evidence line itself, which is enough to send)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import new_node
from fake_model import FakeChatModel, chat_model
from mail_servers import HOST, PASSWORD, USER, MailServers, Received

from agent.incoming import DISCLOSURE_HEADER
from node.mail_account import MailAccount, MailWatcher, save_account
from node.node import Node

A, B = "ana@a.test", "bo@b.test"
QUESTION = "Which airline are the Lisbon flights booked with?"
RUNAWAY = 20  # mails after which the exchange would be a runaway
QUIET_SECONDS = 4.0  # no new mail for this long: the exchange has stopped


class Side:
    """One node with its mailbox, its SMTP server and its watcher."""

    def __init__(self, root: Path, models_dir: Path, address: str, other: str) -> None:
        self.address = address
        self.servers = MailServers(root / "servers")
        self.node: Node = new_node(root, models_dir, notes=True)
        self.node.inbox.add_rule("sender", other, "auto-reply", ["travel"], 10)
        save_account(
            self.node,
            MailAccount(
                name=address,
                imap_host=HOST,
                imap_port=self.servers.imap_port,
                user=USER,
                password=PASSWORD,
                address=address,
                smtp_host=HOST,
                smtp_port=self.servers.smtp_port,
                tls="none-loopback-only",
                owner_name=address.split("@")[0].title(),
            ),
        )
        self.watcher = MailWatcher(self.node, self.node.inbox.on_message)
        self.relayed = 0  # how many of its SMTP server's messages the relay carried

    def outgoing(self) -> list[Received]:
        return self.servers.sink.received

    def close(self) -> None:
        self.watcher.stop()
        self.node.close()
        self.servers.stop()


@pytest.fixture
def sides(tmp_path, models_dir) -> Iterator[tuple[Side, Side]]:
    a, b = Side(tmp_path / "a", models_dir, A, B), Side(tmp_path / "b", models_dir, B, A)
    try:
        with chat_model(a.node, FakeChatModel()), chat_model(b.node, FakeChatModel()):
            a.watcher.start()
            b.watcher.start()
            yield a, b
    finally:
        a.close()
        b.close()


def _strip_labels(raw: bytes) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [
        line
        for line in head.split(b"\r\n")
        if not re.match(rb"(?i)(auto-submitted|" + DISCLOSURE_HEADER.encode() + rb"):", line)
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _run_post(a: Side, b: Side, *, strip_labels: bool) -> int:
    """Carry each side's sent mail into the other's mailbox until nothing moves; how many."""
    carried, last_move = 0, time.monotonic()
    while time.monotonic() - last_move < QUIET_SECONDS:
        for source, target in ((a, b), (b, a)):
            for received in source.outgoing()[source.relayed :]:
                source.relayed += 1
                assert received.rcpt_tos == [target.address], received.rcpt_tos
                raw = _strip_labels(received.raw) if strip_labels else received.raw
                target.servers.deliver(raw)
                carried += 1
                last_move = time.monotonic()
                assert carried < RUNAWAY, f"runaway: {carried} mails and still going"
        time.sleep(0.1)
    return carried


def _labelled(received: Received) -> bool:
    message = received.message
    return (
        message["Auto-Submitted"] == "auto-replied"
        and bool(message[DISCLOSURE_HEADER])
        and "personal AI agent" in message.get_content()
    )


def _first_question(a: Side, b: Side) -> None:
    """A's owner writes to B by hand (not the agent): it lands in B's mailbox."""
    b.servers.deliver(
        (
            f"From: {A}\r\nTo: {B}\r\nSubject: Lisbon\r\nMessage-ID: <start@a.test>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{QUESTION}\r\n"
        ).encode()
    )


def test_labelled_agent_mail_stops_after_one_reply(sides):
    a, b = sides
    _first_question(a, b)
    carried = _run_post(a, b, strip_labels=False)
    # B's agent answered A's owner once; A's agent read a labelled agent mail: no reply.
    assert len(b.outgoing()) == 1 and len(a.outgoing()) == 0, (carried, b.outgoing())
    assert all(_labelled(r) for r in b.outgoing())  # checked on what the server received
    assert b.outgoing()[0].message["In-Reply-To"] == "<start@a.test>"


def test_with_the_labels_stripped_the_loop_guard_alone_stops_it(sides):
    a, b = sides
    _first_question(a, b)
    carried = _run_post(a, b, strip_labels=True)
    # B answers; A (seeing no label) answers B's reply; B's loop guard holds: it already
    # auto-replied to A and A's owner has not written since, so B only drafts.
    assert len(b.outgoing()) == 1 and len(a.outgoing()) == 1, carried
    sent = b.outgoing() + a.outgoing()
    assert all(_labelled(r) for r in sent)  # each server received every label
    held = [i for i in b.node.inbox.items() if i["status"] == "proposed"]
    assert held and "loop guard" in held[0]["why"][-1]
