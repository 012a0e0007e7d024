"""The terminal app, driven with Textual's Pilot against a real node served on loopback.

One node (real models, real vault, real uvicorn) serves the module; each test runs the real
app, signed with the owner's key, and asserts on what the screen shows.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, PASSPHRASE, Served, new_node, write_corpus
from fake_model import FakeChatModel, chat_model
from textual import events
from textual.widgets import DataTable, Input, Label, ListView, ProgressBar, SelectionList, Static

from node.client import AsyncNodeClient
from node.home import Home
from node.node import Node
from tui.app import FlurryApp
from tui.modals import PermissionReview, ToolPolicy
from tui.panes import ChatPane, ConversationItem, DataPane, Message, SkillsPane, SourceItem


@pytest.fixture(scope="module")
def node(tmp_path_factory, models_dir) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("tui")
    node = new_node(root, models_dir)
    node.add(str(write_corpus(root / "notes")))
    node.root = root
    pace_the_model(node)
    yield node
    node.close()


def pace_the_model(node: Node, seconds: float = 0.04) -> None:
    """The 135M test model writes its one-sentence answer in a fraction of a second on an idle
    machine: faster than these tests can watch it stream (they passed under load and failed on
    a quiet box). Its real tokens are let through one every ``seconds``, the pace of a larger
    model on a CPU, so "while the answer streams" lasts long enough to act in."""
    model = node.chat_model
    stream = model.stream

    def paced(*args, **kwargs):
        for piece in stream(*args, **kwargs):
            time.sleep(seconds)
            yield piece

    model.stream = paced  # type: ignore[method-assign]  # this one real model, paced in place


def run(app_test) -> None:
    asyncio.run(app_test())


def text_of(widget) -> str:
    """What a widget shows, as plain text."""
    return str(widget.render()).strip() if not isinstance(widget, Static) else str(widget.content)


async def wait_for(pilot, condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the screen did not get there in time"
        await pilot.pause(0.05)


def new_app(served, node, **options) -> FlurryApp:
    return FlurryApp(AsyncNodeClient(served.url, node.keys), poll_seconds=0, **options)


def test_ask_streams_the_answer_and_opens_a_cited_source(served, node):
    async def go():
        app = new_app(served, node)
        async with app.run_test(size=(80, 24)) as pilot:
            chat = app.query_one(ChatPane)
            await pilot.click("#question")
            await pilot.press(*"When should I plant the tomatoes?", "enter")
            await wait_for(pilot, lambda: chat.tokens_seen > 0)
            assert chat.generating  # tokens show while the answer is still being written
            await wait_for(pilot, lambda: not chat.generating)
            messages = list(app.query(Message))
            assert text_of(messages[0]) == "you: When should I plant the tomatoes?"
            # The checked answer, then the quote it rests on (the garden note's line about May).
            shown = text_of(messages[1])
            assert shown.startswith(chat.answer_text) and len(chat.answer_text) > 10
            assert "«" in shown and "second week of May" in shown.split("«", 1)[1], shown
            sources = list(app.query(SourceItem))
            assert sources and any("garden.md" in text_of(s.query_one(Label)) for s in sources)
            # The conversation is listed under its question.
            await wait_for(
                pilot,
                lambda: any(
                    i.conversation["title"].startswith("When should I plant")
                    for i in app.query(ConversationItem)
                ),
            )
            # Open the garden source beside the chat: the whole chunk, from the vault.
            await pilot.press("ctrl+o")
            garden = next(
                i for i, s in enumerate(sources) if s.source["path"].endswith("garden.md")
            )
            for _ in range(garden):
                await pilot.press("down")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.query_one("#source-pane").display)
            assert "second week of May" in text_of(app.query_one("#source-text"))
            assert "garden.md" in text_of(app.query_one("#source-title"))
            await pilot.press("escape")
            assert not app.query_one("#source-pane").display

            # A follow-up continues the same conversation.
            conversation = chat.conversation_id
            await pilot.click("#question")
            await pilot.press(*"And the hedge?", "enter")
            await wait_for(pilot, lambda: not chat.generating and len(app.query(Message)) == 4)
            assert chat.conversation_id == conversation

    run(go)


def test_typing_while_an_answer_streams_is_handled_at_once(served, node):
    """Key presses are handled between streamed tokens: the UI never waits on the node.

    Keys go in as the terminal would send them (Key events, not Pilot's press, which waits
    for the app to go idle); each is timed until the box shows it."""

    async def go():
        app = new_app(served, node)
        async with app.run_test(size=(80, 24)) as pilot:
            chat = app.query_one(ChatPane)
            box = app.query_one("#question", Input)
            await pilot.press(*"Tell me everything about the kitchen renovation", "enter")
            await wait_for(pilot, lambda: chat.tokens_seen > 0)
            during = []  # (latency, tokens seen) of each key handled while the answer streamed
            for ch in "next question":
                before, sent = box.value, time.monotonic()
                app.post_message(events.Key("space" if ch == " " else ch, ch))
                while box.value == before:
                    assert time.monotonic() - sent < 30, "a key press was not handled"
                    await asyncio.sleep(0.001)
                if chat.generating:
                    during.append((time.monotonic() - sent, chat.tokens_seen))
                await asyncio.sleep(0.05)  # room for tokens to arrive between keys
            assert box.value == "next question"
            await wait_for(pilot, lambda: not chat.generating)
            # Keys were handled while the answer was being written, and tokens kept arriving
            # between them: neither waited for the other.
            assert len(during) >= 3, during
            assert during[-1][1] > during[0][1], during
            print(
                f"{len(during)} keys handled while streaming; slowest {max(d[0] for d in during) * 1000:.1f} ms; "
                f"tokens {during[0][1]}→{during[-1][1]} meanwhile"
            )

    run(go)


def test_stop_generation_with_escape(served, node):
    async def go():
        app = new_app(served, node)
        async with app.run_test(size=(80, 24)) as pilot:
            chat = app.query_one(ChatPane)
            await pilot.press(*"Describe the Lisbon trip in detail", "enter")
            await wait_for(pilot, lambda: chat.tokens_seen > 0)
            app.post_message(events.Key("escape", None))  # as the terminal sends it, at once
            await wait_for(pilot, lambda: not chat.generating)
            assert text_of(app.query_one("#chat-status")) == "stopped"
            assert text_of(list(app.query(Message))[-1]).endswith("… (stopped)")
            # The node stopped too: the unfinished answer was never recorded.
            await pilot.pause(0.5)
            assert [m["role"] for m in node.vault.messages(chat.conversation_id)] == ["user"]
            # The node is free again: the next question is answered.
            await pilot.press(*"When is the dentist appointment?", "enter")
            await wait_for(pilot, lambda: not chat.generating and chat.answer_text)

    run(go)


def test_the_queue_position_shows_while_the_node_is_busy(served, node):
    """Two other questions hold the model (one running, one waiting): the app says how many
    are ahead, then answers when its turn comes."""
    from node.client import NodeClient

    started = threading.Semaphore(0)

    def ask_elsewhere(question: str) -> None:
        client = NodeClient(served.url, node.keys)
        try:
            for event in client.ask(question):
                if event["type"] == "conversation":
                    started.release()
        finally:
            client.close()

    async def go():
        app = new_app(served, node)
        async with app.run_test(size=(80, 24)) as pilot:
            chat = app.query_one(ChatPane)
            await pilot.press(
                *"When is the dentist appointment?"
            )  # typed first: typing takes a while
            others = [
                threading.Thread(target=ask_elsewhere, args=(q,))
                for q in ("Describe the kitchen renovation", "Describe the garden")
            ]
            others[0].start()
            assert await asyncio.to_thread(started.acquire, True, 120)  # the first one runs
            others[1].start()
            await asyncio.sleep(0.3)  # the second one waits
            await pilot.press("enter")
            await wait_for(pilot, lambda: "ahead of you" in text_of(app.query_one("#chat-status")))
            assert (
                text_of(app.query_one("#chat-status"))
                == "the node is busy: 1 ahead of you in its queue"
            )
            await wait_for(pilot, lambda: not chat.generating, timeout=240)
            assert chat.answer_text
            for t in others:
                await asyncio.to_thread(t.join, 240)

    run(go)


def test_add_a_folder_shows_progress_to_the_end_and_per_file_errors(served, node):
    more = node.root / "more"
    (more / "sub").mkdir(parents=True)
    (more / "boat.md").write_text(
        "# Boat\n\nThe sailing boat is moored at pier seven and its engine needs new filters.\n"
    )
    (more / "sub" / "bees.txt").write_text(
        "The beehives are checked every Sunday and the honey harvest is in July.\n"
    )
    (more / "empty.md").write_text("   \n")

    async def go():
        app = new_app(served, node)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("f3")
            data = app.query_one(DataPane)
            await pilot.press(*str(more))
            await pilot.press("tab", *"hobby", "enter")
            await pilot.click("#add-path")
            await pilot.press("enter")
            await wait_for(
                pilot, lambda: not data.adding and "done:" in text_of(app.query_one("#add-status"))
            )
            bar = app.query_one("#add-progress", ProgressBar)
            assert bar.total == 3 and bar.progress == 3
            assert "added 2" in text_of(app.query_one("#add-status"))
            assert "empty.md: no text in it" in text_of(app.query_one("#add-errors"))
            table = app.query_one("#documents", DataTable)
            rows = {
                str(table.get_row_at(r)[0]): [str(c) for c in table.get_row_at(r)]
                for r in range(table.row_count)
            }
            boat = next(v for k, v in rows.items() if k.endswith("boat.md"))
            assert boat[2] == "hobby"

            # Search finds the new note's passage.
            await pilot.click("#doc-search")
            await pilot.press(*"where is the sailing boat moored", "enter")
            await wait_for(pilot, lambda: data.mode == "search")
            assert "boat.md" in str(table.get_row_at(0)[0]) and "pier seven" in str(
                table.get_row_at(0)[2]
            )

            # Forget it: back to the list, select it, Del, confirm.
            await pilot.click("#doc-search")
            await pilot.press("end", "ctrl+u", "enter")
            await wait_for(pilot, lambda: data.mode == "documents")
            keys = [
                table.coordinate_to_cell_key((r, 0)).row_key.value for r in range(table.row_count)
            ]
            table.focus()
            table.move_cursor(row=next(i for i, k in enumerate(keys) if k.endswith("boat.md")))
            await pilot.press("delete")
            await pilot.press("y")
            await wait_for(
                pilot,
                lambda: (
                    not any(
                        str(table.get_row_at(r)[0]).endswith("boat.md")
                        for r in range(table.row_count)
                    )
                ),
            )
        assert not any(d.path.endswith("boat.md") for d in node.vault.documents())

    run(go)


def test_errors_are_notifications_with_the_reason(served, node, tmp_path):
    async def go():
        app = new_app(served, node)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("f3")
            await pilot.press(*str(tmp_path / "no-such-folder"), "enter")
            await wait_for(pilot, lambda: app._notifications)
            note = list(app._notifications)[-1]
            assert note.severity == "error" and "no such file or folder" in note.message

        # A node that is not there: a notification, not a traceback, and the app keeps running.
        gone = FlurryApp(AsyncNodeClient("http://127.0.0.1:9", node.keys), poll_seconds=0)
        async with gone.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: gone._notifications)
            assert "cannot reach the node" in list(gone._notifications)[-1].message
            await pilot.press(*"hello", "enter")
            await wait_for(
                pilot, lambda: gone.query_one("#question", Input).value == "hello"
            )  # not lost
            assert gone.is_running

    run(go)


def test_conversations_rename_reopen_and_delete(served, node):
    async def go():
        app = new_app(served, node)
        async with app.run_test(size=(80, 24)) as pilot:
            chat = app.query_one(ChatPane)
            await pilot.press(*"Which airline are the Lisbon flights booked with?", "enter")
            await wait_for(pilot, lambda: not chat.generating and chat.answer_text)
            first = chat.conversation_id
            await pilot.press("ctrl+r", "ctrl+u", *"Lisbon plans", "enter")
            await wait_for(
                pilot,
                lambda: any(
                    i.conversation["title"] == "Lisbon plans" for i in app.query(ConversationItem)
                ),
            )

            # A new conversation, then back to the first one from the list: its messages return.
            await pilot.press("ctrl+n")
            assert not app.query(Message) and chat.conversation_id is None
            await pilot.press("ctrl+l")
            listing = app.query_one("#conversations", ListView)
            index = next(
                i for i, item in enumerate(listing.children) if item.conversation["id"] == first
            )
            listing.index = index
            await pilot.press("enter")
            await wait_for(
                pilot, lambda: chat.conversation_id == first and len(app.query(Message)) == 2
            )
            assert "Lisbon flights" in text_of(app.query(Message).first())

            # Delete it (Del in the list, then yes): gone from the list and the vault.
            listing.focus()
            listing.index = next(
                i for i, item in enumerate(listing.children) if item.conversation["id"] == first
            )
            await pilot.press("delete", "y")
            await wait_for(
                pilot,
                lambda: all(i.conversation["id"] != first for i in app.query(ConversationItem)),
            )
        assert all(c["id"] != first for c in node.vault.conversations())

    run(go)


def test_a_stored_conversation_continues_after_the_node_restarts(served, node):
    """The API keeps live conversations in memory; one stored in the vault is reopened."""
    conv_id = node.vault.create_conversation("before the restart")
    node.vault.append_message(
        conv_id, {"role": "user", "content": "When should I plant the tomatoes?", "at": 0}
    )
    node.vault.append_message(
        conv_id,
        {"role": "assistant", "content": "In the second week of May [1].", "sources": [], "at": 0},
    )

    async def go():
        app = new_app(served, node)
        async with app.run_test(size=(80, 24)) as pilot:
            chat = app.query_one(ChatPane)
            chat.open_conversation(conv_id)
            await wait_for(
                pilot, lambda: chat.conversation_id == conv_id and len(app.query(Message)) == 2
            )
            await pilot.click("#question")
            await pilot.press(*"And what about the hedge?", "enter")
            await wait_for(pilot, lambda: not chat.generating and len(app.query(Message)) == 4)
        stored = node.vault.messages(conv_id)
        assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
        assert stored[2]["content"] == "And what about the hedge?"

    run(go)


def test_identity_help_and_theme(served, node):
    from agent.grants import Grant

    node.grants.add(Grant(PEER_DID, frozenset({"ask"}), note="Ana's agent"))

    async def go():
        app = new_app(served, node)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("f6")
            await wait_for(
                pilot, lambda: node.keys.owner_did in text_of(app.query_one("#identity"))
            )
            shown = text_of(app.query_one("#identity"))
            assert (
                node.keys.node_did in shown and f"{served.url}/.well-known/agent-card.json" in shown
            )
            # A token for a local app: N, a name, shown once; then revoked with Del.
            tokens = app.query_one("#tokens", DataTable)
            tokens.focus()
            await pilot.press("n", *"phone", "enter")
            await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ShowSecret")
            secret = app.screen.query_one("#secret", Input).value
            assert node.tokens.verify(secret).allow == frozenset({"chat"})
            await pilot.press("escape")
            await wait_for(
                pilot,
                lambda: any(
                    str(tokens.get_row_at(r)[0]) == "phone" for r in range(tokens.row_count)
                ),
            )
            tokens.focus()
            tokens.move_cursor(
                row=next(
                    r for r in range(tokens.row_count) if str(tokens.get_row_at(r)[0]) == "phone"
                )
            )
            await pilot.press("delete", "y")
            await wait_for(
                pilot,
                lambda: all(
                    str(tokens.get_row_at(r)[0]) != "phone" for r in range(tokens.row_count)
                ),
            )
            assert all(t.name != "phone" for t in node.tokens.list())

            # A peer by URL: its agent card is fetched and its DID pinned (this node serves one).
            app.query_one("#peers", DataTable).focus()
            await pilot.press("n", *served.url, "enter")
            peers = app.query_one("#peers", DataTable)
            await wait_for(pilot, lambda: peers.row_count == 1)
            assert str(peers.get_row_at(0)[1]) == node.keys.node_did

            # Withdraw a peer's grant: Del on its row.
            grants = app.query_one("#grants", DataTable)
            grants.focus()
            await pilot.press("delete", "y")
            await wait_for(pilot, lambda: grants.row_count == 0)
            assert node.grants.list() == []

            await pilot.press("f1")
            assert app.screen.__class__.__name__ == "HelpScreen"
            await pilot.press("escape")
            assert app.theme == "textual-dark"
            await pilot.press("ctrl+t")
            assert app.theme == "textual-light"

    run(go)


def screen_text(app) -> str:
    """Everything the active screen shows in its labels and statics, joined."""
    return "\n".join(text_of(w) for w in app.screen.query(Static))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    from test_skills import make_wheel
    from test_skills_cli import NOTES_SKILL

    return make_wheel(tmp_path_factory.mktemp("wheels"), "notes-skill", "notes_skill", NOTES_SKILL)


def test_install_a_skill_after_reviewing_its_permissions(served, node, wheel):
    async def go():
        app = new_app(served, node)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("f4", *str(wheel), "enter")
            # The screen is pushed before it has composed its text: wait for both.
            await wait_for(
                pilot,
                lambda: (
                    isinstance(app.screen, PermissionReview) and "Install notes" in screen_text(app)
                ),
            )
            review = screen_text(app)
            assert (
                "Install notes 0.1.0?" in review and "tool add_note" in review and "[ask]" in review
            )
            assert list(app.screen.query_one(SelectionList).selected) == ["notes.write"]
            await pilot.press("ctrl+a")
            table = app.query_one("#skills", DataTable)
            await wait_for(
                pilot, lambda: table.row_count == 1 and str(table.get_row_at(0)[2]) == "enabled"
            )
            assert [str(c) for c in table.get_row_at(0)] == [
                "notes",
                "0.1.0",
                "enabled",
                "notes.write",
            ]
            assert "granted: notes.write" in text_of(app.query_one("#skill-detail"))

            # Let add_note run unasked: P, then choose "allow" for it and save.
            table.focus()
            await pilot.press("p")
            await wait_for(pilot, lambda: isinstance(app.screen, ToolPolicy))
            await pilot.press("enter", "up", "enter", "ctrl+s")  # its current "ask" → "allow"
            await wait_for(
                pilot, lambda: "tool add_note [allow]" in text_of(app.query_one("#skill-detail"))
            )
            assert node.tool_policy().rule("add_note") == "allow"

            table.focus()
            await pilot.press("e")
            await wait_for(pilot, lambda: str(table.get_row_at(0)[2]) == "disabled")
            await pilot.press("e")
            await wait_for(pilot, lambda: str(table.get_row_at(0)[2]) == "enabled")
            await pilot.press("delete", "y")
            await wait_for(pilot, lambda: table.row_count == 0)

            # Rejected at the review: nothing stays installed.
            await pilot.click("#skill-source")
            await pilot.press(*str(wheel), "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, PermissionReview))
            await pilot.press("escape")
            await wait_for(
                pilot, lambda: any("rejected" in str(n.message) for n in app._notifications)
            )
            await pilot.pause(0.3)
            assert table.row_count == 0
        assert node.skills.list() == []

    run(go)


def test_approve_and_deny_a_pending_tool_call(served, node, wheel):
    from test_skills_cli import PLUMBER

    from node.owner import LocalOwner

    owner = LocalOwner(node)
    owner.install_skill(str(wheel))
    owner.approve_skill("notes", ["notes.write"])

    async def ask_and_decide(app, pilot, key: str) -> tuple[str, Any]:
        chat = app.query_one(ChatPane)
        await pilot.press("f2", *PLUMBER, "enter")
        # The node waits for the owner: the chat says so, and Approvals lists the call.
        await wait_for(
            pilot,
            lambda: "waiting for you to approve add_note" in text_of(app.query_one("#chat-status")),
            timeout=240,
        )
        await pilot.press("f5")
        table = app.query_one("#approvals", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        assert [str(c) for c in table.get_row_at(0)][:2] == ["add_note", "notes"]
        arguments = text_of(app.query_one("#approval-args"))
        assert arguments.startswith("add_note wants to run with:\n")
        shown = json.loads(arguments.split("\n", 1)[1])  # every argument, in full
        table.focus()
        await pilot.press(key)
        await wait_for(pilot, lambda: not chat.generating and table.row_count == 0, timeout=120)
        return text_of(list(app.query(Message))[-1]), shown

    async def go():
        app = new_app(served, node)
        async with app.run_test(size=(80, 24)) as pilot:
            ran, shown = await ask_and_decide(app, pilot, "a")
            # It ran with exactly the arguments the owner was shown.
            assert ran == f"[notes · add_note] ran\nnoted: {shown['text']}"
            refused, _ = await ask_and_decide(app, pilot, "d")
            assert refused.startswith("[notes · add_note] did not run") and "noted:" not in refused

    try:
        # The screens are the subject, not the model's choice (not portable, issue 20): a
        # stand-in chooses add_note for PLUMBER.
        plumber = {"tool": "add_note", "arguments": {"text": "call the plumber on Monday"}}
        with chat_model(node, FakeChatModel(call=plumber)):
            run(go)
        decisions = [
            e.details.get("decision") for e in node.audit.entries() if e.action == "tool.approval"
        ]
        assert decisions[-2:] == ["approve", "deny"]
    finally:
        owner.remove_skill("notes")


def test_a_skills_question_to_the_owner_is_answered_in_approvals(served, node):
    """A skill's owner.ask waits in the node's approvals like a tool call; the app shows the
    question itself and A answers yes."""
    from agent.tools import ToolCall

    pending = node.approvals.open(
        ToolCall("owner.ask", {"question": "Share the shopping list with Ana?"}),
        "notes",
        "skill:notes",
    )
    answered: list[bool] = []
    waiter = threading.Thread(target=lambda: answered.append(node.approvals.wait(pending)))
    waiter.start()

    async def go():
        app = new_app(served, node)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("f5")
            table = app.query_one("#approvals", DataTable)
            await wait_for(pilot, lambda: table.row_count == 1)
            assert (
                text_of(app.query_one("#approval-args"))
                == "notes asks you (A yes, D no):\nShare the shopping list with Ana?"
            )
            await pilot.press("a")
            await wait_for(pilot, lambda: table.row_count == 0)

    try:
        run(go)
    finally:
        node.approvals.withdraw(pending)
        waiter.join(10)
    assert answered == [True]


def test_the_inbox_lists_peers_messages_and_removes_one(served, node):
    """A private message the node kept for the owner (the Nostr wire writes these records as
    messages arrive from relays; here one is written the same way, the relay being the edge)."""
    from node.nostr_wire import INBOX_KIND

    node.vault.put_record(
        INBOX_KIND,
        "wrap1",
        {
            "id": "wrap1",
            "message_id": "rumor1",
            "from": "ab" * 32,
            "npub": "npub1stranger",
            "peer_did": None,
            "text": "Hello, can your agent share the garden plan?",
            "sent_at": 0,
            "received_at": 1.0,
            "reply_to": None,
            "agent_made": False,
            "why": "no grant for this sender",
        },
    )

    async def go():
        app = new_app(served, node)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("f5")
            inbox = app.query_one("#inbox", DataTable)
            await wait_for(pilot, lambda: inbox.row_count == 1)
            assert [str(c) for c in inbox.get_row_at(0)] == [
                "npub1stranger",
                "Hello, can your agent share the garden plan?",
                "no grant for this sender",
            ]
            inbox.focus()
            await pilot.press("delete")
            await wait_for(pilot, lambda: inbox.row_count == 0)
        assert node.vault.records(INBOX_KIND) == []

    run(go)


def test_the_agents_drafts_are_sent_edited_and_discarded_in_one_key(served, node):
    """The inbox agent's items (node.inbox_agent) in the Approvals tab: E edits a draft and
    sends it to the sender, D discards one. The model is not what is tested (tests/fake_model.py's
    stand-in summarises); mail leaves through a recording sender, the SMTP sender's stand-in."""
    from textual.widgets import TextArea

    from agent.incoming import Incoming, Outgoing
    from tui.modals import EditText
    from tui.widgets import ApprovalsPane

    class RecordingSender:
        def __init__(self) -> None:
            self.sent: list[Outgoing] = []

        def send(self, reply: Outgoing) -> str:
            self.sent.append(reply)
            return "<tui-1@test>"

    outbox = RecordingSender()
    node.inbox.connect("mail", outbox)
    with chat_model(node, FakeChatModel(reply="Asks about the flights.")):
        one = node.inbox.on_message(
            Incoming(
                "mail", "<tui1@x>", "tui-friend@example.org", "Which airline?", subject="flights"
            )
        )
        two = node.inbox.on_message(
            Incoming("mail", "<tui2@x>", "tui-other@example.org", "hello", subject="hi")
        )
        assert node.inbox.wait_read(60)  # served: read in the background, by the stand-in

    async def go():
        app = new_app(served, node)
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.press("f5")
            drafts = app.query_one("#drafts", DataTable)
            await wait_for(pilot, lambda: drafts.row_count >= 2)
            drafts.focus()
            drafts.move_cursor(row=drafts.get_row_index(one["id"]))
            await pilot.pause()
            assert "Asks about the flights." in str(app.query_one("#draft-text", Static).render())
            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, EditText))
            app.screen.query_one(TextArea).text = "TAP, as agreed."
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: outbox.sent)
            await wait_for(pilot, lambda: node.inbox.item(one["id"])["status"] == "sent")
            drafts.move_cursor(row=drafts.get_row_index(two["id"]))
            # mail arriving while the owner chooses: the refresh rebuilds the table, and the
            # cursor stays on the row they chose (D must not discard another draft)
            with chat_model(node, FakeChatModel(reply="A third one.")):
                node.inbox.on_message(
                    Incoming("mail", "<tui3@x>", "tui-third@example.org", "hey", subject="3rd")
                )
                assert node.inbox.wait_read(60)
            await app.query_one(ApprovalsPane).refresh_drafts()
            assert drafts.row_count == 3 and drafts.cursor_key == two["id"]
            await pilot.press("d")
            await wait_for(pilot, lambda: node.inbox.item(two["id"])["status"] == "discarded")

    run(go)
    [reply] = outbox.sent
    assert reply.to == "tui-friend@example.org" and reply.text.startswith("TAP, as agreed.")


def _on_a_terminal(
    flurry, args: list[str], until: bytes, then: bytes, timeout: float = 90
) -> tuple[int, str, bool]:
    """Run `flurry ARGS` on a pseudo-terminal (80x24) until ``until`` shows, send ``then``;
    returns the exit status, everything it drew, and whether serve.json existed meanwhile."""
    import pty
    import re
    import select
    import struct
    import sys
    from fcntl import ioctl
    from termios import TIOCSWINSZ

    pid, fd = pty.fork()
    if pid == 0:  # the child: the real command line on a terminal
        os.execve(
            sys.executable,
            [sys.executable, "-m", "node.cli", *args],
            {**flurry.env, "TERM": "xterm-256color"},
        )
    ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    out, served_meanwhile, sent = b"", False, False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break  # the child closed the terminal: it has ended
        if not sent and until in re.sub(rb"\x1b\[[0-9;?]*[a-zA-Z]", b"", out):
            served_meanwhile = (flurry.home / "serve.json").exists()
            os.write(fd, then)
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert sent, out.decode("utf-8", "replace")[-2000:]
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace"), served_meanwhile


def test_flurry_on_a_terminal_opens_the_app_and_plain_keeps_the_line_chat(flurry):
    flurry("init")
    # Bare `flurry`: the app, on an API served from this process for as long as it runs.
    code, drawn, served_meanwhile = _on_a_terminal(flurry, [], b"Identity", b"\x11")  # Ctrl+Q
    assert code == 0 and served_meanwhile and "Traceback" not in drawn
    assert not (flurry.home / "serve.json").exists()
    # With `flurry serve` holding the home, the app is one more client of it.
    with flurry.serving() as url:
        code, drawn, _ = _on_a_terminal(
            flurry, ["tui"], url.encode(), b"\x11"
        )  # its URL in the header
        assert code == 0 and "Traceback" not in drawn
        assert flurry.home.joinpath("serve.json").exists()  # still the server's
    # `flurry chat --plain`: the line chat, even on a terminal.
    code, drawn, _ = _on_a_terminal(flurry, ["chat", "--plain"], b"you>", b"/quit\r")
    assert (
        code == 0
        and "Ask about your notes. /new starts a new conversation" in drawn
        and "Identity" not in drawn
    )


# --- snapshots ---------------------------------------------------------------------------
#
# A node of its own, filled the same way each run. Its DIDs, port and folder are random per
# run, so the app's display option `mask` swaps exactly those values for fixed stand-ins on
# screen (the keyring has no fixed-seed path, and one only for tests would be a back door).


@dataclass
class SnapNode:
    """The node the snapshots picture, the folder it lives in (masked in the pictures) and the
    one conversation it holds."""

    node: Node
    root: Path
    conv: str


@pytest.fixture(scope="module")
def snap_node(tmp_path_factory, models_dir, wheel) -> Iterator[SnapNode]:
    root = tmp_path_factory.mktemp("snap")
    os.environ["FLURRY_MODELS"] = str(models_dir)
    notes = root / "notes"
    for name, text in CORPUS.items():
        (notes / name).parent.mkdir(parents=True, exist_ok=True)
        (notes / name).write_text(text)
    home = Home(root / "home")
    Node.init(home, PASSPHRASE)
    node = Node.open(home, PASSPHRASE, say=lambda line: None)
    node.add(str(notes))
    conv = node.vault.create_conversation("Tomatoes")
    node.vault.append_message(
        conv, {"role": "user", "content": "When should I plant the tomatoes?", "at": 0}
    )
    node.vault.append_message(
        conv,
        {
            "role": "assistant",
            "content": "In the second week of May, after the last frost [1].",
            "sources": [],
            "at": 0,
        },
    )
    from agent.grants import Grant

    node.grants.add(
        Grant(PEER_DID, frozenset({"ask"}), tags=frozenset({"travel"}), note="Ana's agent")
    )
    node.tokens.create("notes-app", {"chat"})
    from node.owner import LocalOwner

    LocalOwner(node).install_skill(str(wheel))
    LocalOwner(node).approve_skill("notes", ["notes.write"])
    yield SnapNode(node, root, conv)
    node.close()


# did:key of the Ed25519 key with the 32-byte seed 00…01 (a fixed, public test peer).
PEER_DID = "did:key:z6MkjchhfUsD6mmvni8mCdXHw216Xrm9bQe2mBH1P5RDjVJG"


@pytest.fixture(scope="module")
def snap_served(snap_node: SnapNode) -> Iterator[Served]:
    served = Served(snap_node.node)
    yield served
    served.stop()


def snap_app(snap_served: Served, snap_node: SnapNode) -> FlurryApp:
    keys = snap_node.node.keys
    mask = {
        keys.owner_did: "did:key:z6MkOWNER",
        keys.node_did: "did:key:z6MkNODE",
        snap_served.url: "http://127.0.0.1:8765",
        str(snap_node.root): "/home/owner",
    }
    return FlurryApp(AsyncNodeClient(snap_served.url, keys), mask=mask, poll_seconds=0)


async def _settle(pilot, condition) -> None:
    await wait_for(pilot, condition, timeout=30)
    await pilot.pause(0.2)


SCREENS = {
    "chat": ("f2", lambda app: len(app.query(Message)) == 2),
    "data": ("f3", lambda app: app.query_one("#documents", DataTable).row_count == len(CORPUS)),
    "skills": ("f4", lambda app: app.query_one("#skills", DataTable).row_count == 1),
    "approvals": (
        "f5",
        lambda app: app.query_one("#approvals", DataTable).border_title is not None,
    ),
    "identity": ("f6", lambda app: app.query_one("#tokens", DataTable).row_count == 1),
    "help": ("f1", lambda app: app.screen.__class__.__name__ == "HelpScreen"),
    "review": ("f4", lambda app: isinstance(app.screen, PermissionReview)),
    "chat-light": (
        "ctrl+t",
        lambda app: app.theme == "textual-light" and len(app.query(Message)) == 2,
    ),
}


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("screen", list(SCREENS))
def test_snapshot(snap_compare, snap_served, snap_node, screen, size):
    key, ready = SCREENS[screen]
    app = snap_app(snap_served, snap_node)

    async def before(pilot) -> None:
        for box in app.query(Input):
            box.cursor_blink = (
                False  # a blinking cursor would make the picture depend on the moment
            )
        if screen.startswith("chat"):
            app.query_one(ChatPane).open_conversation(snap_node.conv)
        await pilot.press(key)
        if screen == "review":  # the permission review, as an install shows it
            await _settle(pilot, lambda: app.query_one(SkillsPane).skills)
            app.push_screen(PermissionReview(app.query_one(SkillsPane).skills["notes"]))
        await _settle(pilot, lambda: ready(app))

    assert snap_compare(app, terminal_size=size, run_before=before)
