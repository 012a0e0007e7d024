"""Chat (F2): ask, watch the answer stream, open its sources, keep conversations."""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, ListView, Static

from node.client import NodeUnavailable
from tui.format import answer_view, cited_numbers, short_path
from tui.screens import AskText, Confirm
from tui.widgets.chat_message import ChatMessage
from tui.widgets.conversation_item import ConversationItem
from tui.widgets.conversation_list import ConversationList
from tui.widgets.pane import Pane
from tui.widgets.source_item import SourceItem


class ChatPane(Pane):
    FIRST = "#question"
    BINDINGS = [
        Binding("ctrl+n", "new", "New chat"),
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+o", "sources", "Sources"),
        Binding("ctrl+r", "rename", "Rename", show=False),
        Binding("ctrl+l", "conversations", "Chats", show=False),
    ]

    class ApprovalNeeded(Message):
        """The node waits for the owner to approve a tool call this answer asked for."""

    def __init__(self, *args, tools: bool = True, **kwargs) -> None:
        """``tools``: the owner's questions may run skills' tools (see FlurryApp)."""
        super().__init__(*args, **kwargs)
        self.tools = tools
        self.conversation_id: str | None = None
        self.title = ""
        self.generating = False
        self.answer_text = ""
        self.answer_prefix = ""  # what a skill's tool did, above the answer
        self.draft = ""  # the model's words the node has not checked yet
        self.tokens_seen = 0
        self.sources: list[dict] = []

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield ConversationList(id="conversations")
            with Vertical(id="thread"):
                yield VerticalScroll(id="messages")
                yield Static(
                    "Ask about your notes. F1 shows the keys.", id="chat-status", markup=False
                )
                yield ListView(id="sources")
                yield Input(
                    placeholder="Ask about your notes… (Enter asks, Esc stops)", id="question"
                )
            with Vertical(id="source-pane"):
                yield Label("", id="source-title", markup=False)
                with VerticalScroll():
                    yield Static("", id="source-text", markup=False)

    def on_mount(self) -> None:
        self.query_one("#sources").display = False
        self.query_one("#source-pane").display = False

    def status(self, text: str) -> None:
        self.query_one("#chat-status", Static).update(text)

    async def refresh_data(self) -> None:
        found = await self.api("GET", "/api/owner/conversations")
        if found is None:
            return
        listing = self.query_one("#conversations", ConversationList)
        await listing.clear()
        await listing.extend(
            ConversationItem(
                c, ("▸ " if c["id"] == self.conversation_id else "  ") + (c.get("title") or "chat")
            )
            for c in reversed(found)
        )

    # --- asking --------------------------------------------------------------------------

    @on(Input.Submitted, "#question")
    async def ask(self, event: Input.Submitted) -> None:
        question = event.value.strip()
        if not question:
            return
        if self.generating:
            self.notify(
                "an answer is still being written: wait, or press Esc to stop it",
                severity="warning",
            )
            return
        event.input.value = ""
        self.generating = True
        self.stream_answer(question)

    @work(exclusive=True, group="answer", exit_on_error=False)
    async def stream_answer(self, question: str) -> None:
        messages = self.query_one("#messages", VerticalScroll)
        answer = ChatMessage("…", classes="assistant", markup=False)
        self.answer_text, self.tokens_seen, self.sources, self.answer_prefix, self.draft = (
            "",
            0,
            [],
            "",
            "",
        )
        self.query_one("#sources").display = False
        try:
            if self.conversation_id is None:
                made = await self.api("POST", "/api/owner/conversations", {"title": question[:80]})
                if made is None:
                    self.restore(question)
                    return
                self.conversation_id, self.title = made["id"], made["title"]
            await messages.mount(ChatMessage(f"you: {question}", classes="user", markup=False))
            await messages.mount(answer)
            messages.scroll_end(animate=False)
            self.status("asking the node…")
            for attempt in (1, 2):
                try:
                    async for event in self.client.ask(
                        question, conversation=self.conversation_id, tools=self.tools
                    ):
                        self.on_answer_event(event, answer)
                    break
                except NodeUnavailable as e:
                    # The node forgets live conversations when it restarts: reopen the stored one once.
                    if attempt == 1 and "forgotten" in str(e):
                        if (
                            await self.api(
                                "POST",
                                "/api/owner/conversations/open",
                                {"id": self.conversation_id},
                            )
                            is None
                        ):
                            return
                        continue
                    raise
        except NodeUnavailable as e:
            answer.update(self.answer_text + "\n(no answer: the node failed)")
            self.status("")
            self.restore(question)
            self.fail(e)
        except asyncio.CancelledError:  # Esc: the stream is closed, and the node stops generating
            answer.update(self.answer_text + " … (stopped)")
            raise
        finally:
            self.generating = False
            messages.scroll_end(animate=False)
        await self.refresh_data()

    def restore(self, question: str) -> None:
        """Put an unanswered question back in the box (unless the owner typed anew meanwhile)."""
        box = self.query_one("#question", Input)
        if not box.value:
            box.value = question

    def on_answer_event(self, event: dict, answer: ChatMessage) -> None:
        kind = event.get("type")
        if kind == "queued":
            self.status(f"the node is busy: {event['ahead']} ahead of you in its queue")
        elif kind == "sources":
            self.sources = event.get("sources", [])
            self.status("writing…")
        elif kind in ("token", "draft"):
            # "token": a sentence the node checked, part of the answer; "draft": the model's words
            # not yet checked, shown dimmed after it until the check settles them.
            self.tokens_seen += 1
            if kind == "token":
                self.answer_text += event.get("text", "")
            else:
                self.draft = event.get("text", "")
            view = Text(self.answer_prefix + self.answer_text)
            if self.draft:
                view.append((" " if self.answer_text else "") + self.draft, style="dim italic")
            answer.update(view)
            self.query_one("#messages", VerticalScroll).scroll_end(animate=False)
        elif kind == "approval":
            self.status(f"waiting for you to approve {event.get('tool')} (Approvals, F5)")
            self.notify(
                f"{event.get('skill')} wants to run {event.get('tool')}: approve or deny it in Approvals (F5)",
                title="approval needed",
            )
            self.post_message(self.ApprovalNeeded())
        elif kind == "tool":
            ran = "ran" if event.get("ran") else f"did not run: {event.get('reason', '')}"
            self.answer_prefix = f"[{event.get('skill') or 'skill'} · {event.get('tool')}] {ran}\n"
            answer.update(self.answer_prefix)
            self.status("")
        elif kind == "done":
            self.answer_text = event.get("answer", self.answer_text)
            self.sources = event.get("sources", self.sources)
            view = answer_view(
                self.answer_text or "(an empty answer)", self.sources, event.get("dropped", [])
            )
            answer.update(Text(self.answer_prefix) + view)
            self.show_sources()

    def show_sources(self) -> None:
        listing = self.query_one("#sources", ListView)
        listing.clear()
        if not self.sources:
            self.status("" if self.answer_prefix else "no notes matched; add some in Data (F3)")
            return
        cited = cited_numbers(self.answer_text) | {
            n for n, s in enumerate(self.sources, start=1) if s.get("quote")
        }
        for number, s in enumerate(self.sources, start=1):
            mark = "*" if number in cited else " "
            label = f"{mark}[{number}] {short_path(self.shown(s['path']))} · chunk {s['chunk']}"
            listing.append(SourceItem(s, number, number in cited, label))
        listing.display = True
        self.status(f"{len(self.sources)} sources, * cited: Ctrl+O then Enter opens one")

    @on(ListView.Selected, "#sources")
    def source_selected(self, event: ListView.Selected) -> None:
        if isinstance(event.item, SourceItem):
            self.open_source(event.item.source, event.item.number)

    @work(group="source", exit_on_error=False)
    async def open_source(self, source: dict, number: int) -> None:
        found = await self.api(
            "POST", "/api/owner/documents/chunk", {"path": source["path"], "chunk": source["chunk"]}
        )
        if found is None:
            return
        self.query_one("#source-title", Label).update(
            f"[{number}] {self.shown(source['path'])} · chunk {source['chunk']}  (Esc closes)"
        )
        self.query_one("#source-text", Static).update(found["text"])
        self.query_one("#conversations").display = False
        self.query_one("#source-pane").display = True

    def action_stop(self) -> None:
        if self.query_one("#source-pane").display:
            self.query_one("#source-pane").display = False
            self.query_one("#conversations").display = True
            return
        if self.generating:
            self.workers.cancel_group(self, "answer")
            self.generating = False
            self.status("stopped")

    # --- conversations -------------------------------------------------------------------

    async def action_new(self) -> None:
        if self.generating:
            self.action_stop()
        self.conversation_id, self.title = None, ""
        await self.query_one("#messages", VerticalScroll).remove_children()
        self.query_one("#sources").display = False
        self.status("new conversation")
        self.query_one("#question", Input).focus()
        await self.refresh_data()

    def action_sources(self) -> None:
        listing = self.query_one("#sources", ListView)
        if listing.display:
            listing.focus()
            if listing.index is None:
                listing.index = 0

    def action_conversations(self) -> None:
        self.query_one("#conversations").display = True
        self.query_one("#source-pane").display = False
        listing = self.query_one("#conversations", ListView)
        listing.focus()
        if listing.index is None and listing.children:
            listing.index = 0

    @on(ListView.Selected, "#conversations")
    def conversation_selected(self, event: ListView.Selected) -> None:
        if isinstance(event.item, ConversationItem):
            self.open_conversation(event.item.conversation["id"])

    @work(exclusive=True, group="answer", exit_on_error=False)
    async def open_conversation(self, conv_id: str) -> None:
        found = await self.api("POST", "/api/owner/conversations/open", {"id": conv_id})
        if found is None:
            return
        self.conversation_id, self.title = conv_id, found.get("title", "")
        messages = self.query_one("#messages", VerticalScroll)
        await messages.remove_children()
        for m in found.get("messages", []):
            if m.get("role") == "user":
                await messages.mount(
                    ChatMessage(f"you: {m.get('content', '')}", classes="user", markup=False)
                )
            else:
                view = answer_view(m.get("content", ""), m.get("sources") or [])
                await messages.mount(ChatMessage(view, classes="assistant", markup=False))
        messages.scroll_end(animate=False)
        self.status(f"continuing “{self.title}”")
        self.query_one("#question", Input).focus()
        await self.refresh_data()

    def action_rename(self) -> None:
        listing = self.query_one("#conversations", ConversationList)
        self.rename(listing.highlighted_conversation if listing.has_focus else None)

    @on(ConversationList.Rename)
    def rename_asked(self, event: ConversationList.Rename) -> None:
        self.rename(event.conversation)

    def rename(self, conv: dict | None) -> None:
        """Ask for a new title of ``conv`` (None: the conversation open now)."""
        conv = conv or {"id": self.conversation_id, "title": self.title}
        if not conv["id"]:
            self.notify("nothing to rename yet: ask something first", severity="warning")
            return

        async def renamed(title: str | None) -> None:
            if (
                title
                and await self.api(
                    "POST", "/api/owner/conversations/rename", {"id": conv["id"], "title": title}
                )
                is not None
            ):
                if conv["id"] == self.conversation_id:
                    self.title = title
                await self.refresh_data()

        self.app.push_screen(AskText("New title:", conv.get("title") or ""), renamed)

    @on(ConversationList.Delete)
    def delete_asked(self, event: ConversationList.Delete) -> None:
        conv = event.conversation

        async def confirmed(yes: bool | None) -> None:
            if (
                yes
                and await self.api("POST", "/api/owner/conversations/delete", {"id": conv["id"]})
                is not None
            ):
                if conv["id"] == self.conversation_id:
                    await self.action_new()
                await self.refresh_data()
                self.notify(f"deleted “{conv.get('title')}”")

        self.app.push_screen(
            Confirm(f"Delete the conversation “{conv.get('title')}” and all its messages?"),
            confirmed,
        )
