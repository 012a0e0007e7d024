"""The app's five tabs: Chat, Data, Skills, Approvals, Identity.

Each pane talks to the node only through the app's signed client (``self.app.api`` for one
call, ``self.app.client`` for a stream), in workers, so the screen never waits on the node.
"""

from __future__ import annotations

import asyncio
import json
import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import (
    DataTable,
    Input,
    Label,
    ListItem,
    ListView,
    ProgressBar,
    Static,
)

from node.client import NodeUnavailable
from tui.modals import AskText, Confirm, PermissionReview, ShowSecret, ToolPolicy


def cited_numbers(answer: str) -> set[int]:
    """The [n] an answer cites (the node numbers its sources from 1)."""
    import re

    return {int(n) for n in re.findall(r"\[(\d+)\]", answer)}


def answer_view(text: str, sources: list[dict], dropped: list[str] = ()) -> Text:
    """An answer as the chat shows it: the verified sentences, then the quote each source
    gives for them, then any sentence the node's verifier refused, struck through and marked
    so it is never read as the answer."""
    view = Text(text)
    for number, s in enumerate(sources, start=1):
        if s.get("quote"):
            where = short_path(s["path"]) if s.get("path") else ""
            view.append(f"\n  [{number}] «{s['quote']}»", style="italic")
            if where:
                view.append(f" — {where}", style="dim")
    for sentence in dropped:
        view.append("\n  ✗ not in your data: ", style="bold red")
        view.append(sentence, style="strike dim")
    return view


def cell(value: object) -> Text:
    """A table cell shown as it is: no markup, no emoji codes (":key:" in a DID stays text)."""
    return Text(str(value))


def short_path(path: str, keep: int = 2) -> str:
    """The last ``keep`` parts of a path: enough to recognise a note in a narrow list."""
    parts = path.replace("\\", "/").split("/")
    return path if len(parts) <= keep + 1 else "…/" + "/".join(parts[-keep:])


class Pane(Vertical):
    async def refresh_data(self) -> None:
        """Fetch what the pane shows; called when its tab opens."""

    def shown(self, text: str) -> str:
        return self.app.shown(text)


# --- chat ----------------------------------------------------------------------------------


class ConversationItem(ListItem):
    def __init__(self, conversation: dict, label: str) -> None:
        super().__init__(Label(label, markup=False))
        self.conversation = conversation


class ConversationList(ListView):
    BINDINGS = [Binding("delete,x", "delete", "Delete chat"), Binding("r", "rename", "Rename")]

    def action_delete(self) -> None:
        self.app.query_one(ChatPane).delete_highlighted()

    def action_rename(self) -> None:
        self.app.query_one(ChatPane).action_rename()


class SourceItem(ListItem):
    def __init__(self, source: dict, number: int, cited: bool, label: str) -> None:
        super().__init__(Label(label, markup=False))
        self.source, self.number, self.cited = source, number, cited


class Message(Static):
    """One message in the thread; an answer is updated in place as its tokens come."""


class ChatPane(Pane):
    BINDINGS = [
        Binding("ctrl+n", "new", "New chat"),
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+o", "sources", "Sources"),
        Binding("ctrl+r", "rename", "Rename", show=False),
        Binding("ctrl+l", "conversations", "Chats", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.conversation_id: str | None = None
        self.title = ""
        self.generating = False
        self.answer_text = ""
        self.answer_prefix = ""   # what a skill's tool did, above the answer
        self.draft = ""           # the model's words the node has not checked yet
        self.tokens_seen = 0
        self.sources: list[dict] = []

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield ConversationList(id="conversations")
            with Vertical(id="thread"):
                yield VerticalScroll(id="messages")
                yield Static("Ask about your notes. F1 shows the keys.", id="chat-status", markup=False)
                yield ListView(id="sources")
                yield Input(placeholder="Ask about your notes… (Enter asks, Esc stops)", id="question")
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
        found = await self.app.api("GET", "/api/owner/conversations")
        if found is None:
            return
        listing = self.query_one("#conversations", ConversationList)
        await listing.clear()
        await listing.extend(
            ConversationItem(c, ("▸ " if c["id"] == self.conversation_id else "  ") + (c.get("title") or "chat"))
            for c in reversed(found)
        )

    # --- asking --------------------------------------------------------------------------

    @on(Input.Submitted, "#question")
    async def ask(self, event: Input.Submitted) -> None:
        question = event.value.strip()
        if not question:
            return
        if self.generating:
            self.app.notify("an answer is still being written: wait, or press Esc to stop it", severity="warning")
            return
        event.input.value = ""
        self.generating = True
        self.stream_answer(question)

    @work(exclusive=True, group="answer", exit_on_error=False)
    async def stream_answer(self, question: str) -> None:
        messages = self.query_one("#messages", VerticalScroll)
        answer = Message("…", classes="assistant", markup=False)
        self.answer_text, self.tokens_seen, self.sources, self.answer_prefix, self.draft = "", 0, [], "", ""
        self.query_one("#sources").display = False
        try:
            if self.conversation_id is None:
                made = await self.app.api("POST", "/api/owner/conversations", {"title": question[:80]})
                if made is None:
                    self.restore(question)
                    return
                self.conversation_id, self.title = made["id"], made["title"]
            await messages.mount(Message(f"you: {question}", classes="user", markup=False))
            await messages.mount(answer)
            messages.scroll_end(animate=False)
            self.status("asking the node…")
            for attempt in (1, 2):
                try:
                    async for event in self.app.client.ask(question, conversation=self.conversation_id, tools=self.app.tools):
                        self.on_answer_event(event, answer)
                    break
                except NodeUnavailable as e:
                    # The node forgets live conversations when it restarts: reopen the stored one once.
                    if attempt == 1 and "forgotten" in str(e):
                        if await self.app.api("POST", "/api/owner/conversations/open", {"id": self.conversation_id}) is None:
                            return
                        continue
                    raise
        except NodeUnavailable as e:
            answer.update(self.answer_text + "\n(no answer: the node failed)")
            self.status("")
            self.restore(question)
            self.app.fail(e)
        except asyncio.CancelledError:   # Esc: the stream is closed, and the node stops generating
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

    def on_answer_event(self, event: dict, answer: Message) -> None:
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
            self.app.notify(f"{event.get('skill')} wants to run {event.get('tool')}: approve or deny it in Approvals (F5)", title="approval needed")
            self.app.call_later(self.app.refresh_approvals)
        elif kind == "tool":
            ran = "ran" if event.get("ran") else f"did not run: {event.get('reason', '')}"
            self.answer_prefix = f"[{event.get('skill') or 'skill'} · {event.get('tool')}] {ran}\n"
            answer.update(self.answer_prefix)
            self.status("")
        elif kind == "done":
            self.answer_text = event.get("answer", self.answer_text)
            self.sources = event.get("sources", self.sources)
            view = answer_view(self.answer_text or "(an empty answer)", self.sources, event.get("dropped", []))
            answer.update(Text(self.answer_prefix) + view)
            self.show_sources()

    def show_sources(self) -> None:
        listing = self.query_one("#sources", ListView)
        listing.clear()
        if not self.sources:
            self.status("" if self.answer_prefix else "no notes matched; add some in Data (F3)")
            return
        cited = cited_numbers(self.answer_text) | {n for n, s in enumerate(self.sources, start=1) if s.get("quote")}
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
        found = await self.app.api("POST", "/api/owner/documents/chunk", {"path": source["path"], "chunk": source["chunk"]})
        if found is None:
            return
        self.query_one("#source-title", Label).update(f"[{number}] {self.shown(source['path'])} · chunk {source['chunk']}  (Esc closes)")
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
        found = await self.app.api("POST", "/api/owner/conversations/open", {"id": conv_id})
        if found is None:
            return
        self.conversation_id, self.title = conv_id, found.get("title", "")
        messages = self.query_one("#messages", VerticalScroll)
        await messages.remove_children()
        for m in found.get("messages", []):
            if m.get("role") == "user":
                await messages.mount(Message(f"you: {m.get('content', '')}", classes="user", markup=False))
            else:
                view = answer_view(m.get("content", ""), m.get("sources") or [])
                await messages.mount(Message(view, classes="assistant", markup=False))
        messages.scroll_end(animate=False)
        self.status(f"continuing “{self.title}”")
        self.query_one("#question", Input).focus()
        await self.refresh_data()

    def action_rename(self) -> None:
        listing = self.query_one("#conversations", ConversationList)
        item = listing.highlighted_child if listing.has_focus else None
        conv = item.conversation if isinstance(item, ConversationItem) else {"id": self.conversation_id, "title": self.title}
        if not conv["id"]:
            self.app.notify("nothing to rename yet: ask something first", severity="warning")
            return

        async def renamed(title: str | None) -> None:
            if title and await self.app.api("POST", "/api/owner/conversations/rename", {"id": conv["id"], "title": title}) is not None:
                if conv["id"] == self.conversation_id:
                    self.title = title
                await self.refresh_data()

        self.app.push_screen(AskText("New title:", conv.get("title") or ""), renamed)

    def delete_highlighted(self) -> None:
        item = self.query_one("#conversations", ConversationList).highlighted_child
        if not isinstance(item, ConversationItem):
            return
        conv = item.conversation

        async def confirmed(yes: bool | None) -> None:
            if yes and await self.app.api("POST", "/api/owner/conversations/delete", {"id": conv["id"]}) is not None:
                if conv["id"] == self.conversation_id:
                    await self.action_new()
                await self.refresh_data()
                self.app.notify(f"deleted “{conv.get('title')}”")

        self.app.push_screen(Confirm(f"Delete the conversation “{conv.get('title')}” and all its messages?"), confirmed)


# --- data ----------------------------------------------------------------------------------


class DocumentsTable(DataTable):
    BINDINGS = [Binding("delete,x", "forget", "Forget")]

    def action_forget(self) -> None:
        self.app.query_one(DataPane).forget_selected()


class DataPane(Pane):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.adding = False
        self.mode = "documents"

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Input(placeholder="File or folder to add (Enter)", id="add-path")
            yield Input(placeholder="tags, comma-separated", id="add-tags")
        with Horizontal(classes="row short", id="add-row"):
            yield ProgressBar(id="add-progress", show_eta=False)
            yield Static("", id="add-status", markup=False)
        yield Static("", id="add-errors", markup=False)
        yield Input(placeholder="Search your notes (Enter; empty lists the documents)", id="doc-search")
        yield DocumentsTable(id="documents", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#add-row").display = False   # shown from the first add on

    async def refresh_data(self) -> None:
        found = await self.app.api("GET", "/api/owner/documents")
        if found is None:
            return
        self.mode = "documents"
        table = self.query_one("#documents", DataTable)
        table.clear(columns=True)
        table.add_columns("Document", "Chunks", "Tags")
        for d in found:
            table.add_row(cell(self.shown(d["path"])), d["chunks"], cell(", ".join(d["tags"])), key=d["path"])
        table.border_title = f"{len(found)} documents"

    @on(Input.Submitted, "#add-path")
    def add_submitted(self, event: Input.Submitted) -> None:
        path = event.value.strip()
        if not path:
            return
        if self.adding:
            self.app.notify("an add is already running; wait for it to finish", severity="warning")
            return
        tags = [t.strip() for t in self.query_one("#add-tags", Input).value.split(",") if t.strip()]
        self.adding = True
        self.add(path, tags)

    @work(exclusive=True, group="add", exit_on_error=False)
    async def add(self, path: str, tags: list[str]) -> None:
        bar = self.query_one("#add-progress", ProgressBar)
        status = self.query_one("#add-status", Static)
        errors = self.query_one("#add-errors", Static)
        self.query_one("#add-row").display = True
        bar.update(total=None, progress=0)
        status.update(f"adding {self.shown(path)}…")
        errors.update("")
        failed: list[str] = []
        try:
            async for event in self.app.client.add(path, tags):
                if event["type"] == "queued":
                    status.update(f"waiting: {event['ahead']} ahead in the node's queue")
                elif event["type"] == "progress":
                    bar.update(total=event["total"], progress=event["done"])
                    status.update(f"{event['done']}/{event['total']} {event['outcome']}: {self.shown(event['path'])}")
                elif event["type"] == "summary":
                    if bar.total is None:   # nothing to read (every file skipped): still finish the bar
                        bar.update(total=1, progress=1)
                    status.update(
                        f"done: added {event['added']}, updated {event['updated']}, unchanged {event['unchanged']}, "
                        f"skipped {len(event['skipped'])} ({event['chunks']} new chunks)"
                    )
                    failed = [f"skipped {self.shown(s['path'])}: {s['reason']}" for s in event["skipped"]]
            errors.update("\n".join(failed[:5] + ([f"… and {len(failed) - 5} more"] if len(failed) > 5 else [])))
            self.query_one("#add-path", Input).value = ""
        except NodeUnavailable as e:
            status.update("the add failed (see the notification); what was reported done is saved")
            self.app.fail(e)
        finally:
            self.adding = False
        await self.refresh_data()

    @on(Input.Submitted, "#doc-search")
    def search_submitted(self, event: Input.Submitted) -> None:
        self.search(event.value.strip())

    @work(exclusive=True, group="search", exit_on_error=False)
    async def search(self, query: str) -> None:
        if not query:
            await self.refresh_data()
            return
        found = await self.app.api("POST", "/api/owner/documents/search", {"query": query, "k": 10})
        if found is None:
            return
        self.mode = "search"
        table = self.query_one("#documents", DataTable)
        table.clear(columns=True)
        table.add_columns("Document", "Chunk", "Snippet")
        for n, s in enumerate(found):
            table.add_row(cell(self.shown(s["path"])), s["chunk"], cell(s["snippet"][:80]), key=f"{n}:{s['path']}")
        table.border_title = f"{len(found)} passages for “{query}” (empty search lists the documents)"

    def forget_selected(self) -> None:
        table = self.query_one("#documents", DataTable)
        if self.mode != "documents" or not table.row_count:
            self.app.notify("select a document in the list (clear the search first)", severity="warning")
            return
        path = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value

        async def confirmed(yes: bool | None) -> None:
            if yes:
                gone = await self.app.api("POST", "/api/owner/documents/forget", {"path": path})
                if gone is not None:
                    self.app.notify(f"forgot {self.shown(path)}")
                    await self.refresh_data()

        self.app.push_screen(Confirm(f"Forget {self.shown(path)}? Its text and index entries are removed."), confirmed)


# --- skills --------------------------------------------------------------------------------


class SkillsTable(DataTable):
    BINDINGS = [Binding("e", "toggle", "Enable/disable"), Binding("p", "policy", "Tool policy"), Binding("delete,x", "remove", "Remove")]

    def action_policy(self) -> None:
        self.app.query_one(SkillsPane).policy_selected()

    def action_toggle(self) -> None:
        self.app.query_one(SkillsPane).toggle_selected()

    def action_remove(self) -> None:
        self.app.query_one(SkillsPane).remove_selected()


class SkillsPane(Pane):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.skills: dict[str, dict] = {}

    def compose(self) -> ComposeResult:
        yield Input(placeholder="A skill's wheel or project folder to install (Enter)", id="skill-source")
        yield SkillsTable(id="skills", cursor_type="row")
        yield Static("", id="skill-detail", markup=False)

    async def refresh_data(self) -> None:
        found = await self.app.api("GET", "/api/owner/skills")
        if found is None:
            self.query_one("#skills", DataTable).border_title = "cannot list the skills"
            return
        self.skills = {s["name"]: s for s in found}
        table = self.query_one("#skills", DataTable)
        table.clear(columns=True)
        table.add_columns("Skill", "Version", "State", "Granted")
        for s in found:
            state = ("enabled" if s["enabled"] else "disabled") if s["approved"] else "not approved"
            table.add_row(*map(cell, (s["name"], s.get("version", ""), state, ", ".join(s.get("granted", [])) or "-")), key=s["name"])
        table.border_title = f"{len(found)} skills installed" if found else "no skills installed yet"
        self.show_detail()

    def selected(self) -> dict | None:
        table = self.query_one("#skills", DataTable)
        if not table.row_count:
            return None
        return self.skills.get(table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value)

    @on(DataTable.RowHighlighted, "#skills")
    def show_detail(self) -> None:
        s = self.selected()
        if s is None:
            self.query_one("#skill-detail", Static).update("")
            return
        lines = [f"{s['name']} {s.get('version', '')}: {s.get('description', '')}", f"author: {s.get('author') or '(not given)'}"]
        lines += [f"tool {t['name']} [{t.get('policy', 'ask')}]: {t.get('description', '')}" for t in s.get("tools", [])]
        lines += [f"{'granted' if p in s.get('granted', []) else 'asked, not granted'}: {p}" for p in s.get("requested", [])]
        self.query_one("#skill-detail", Static).update("\n".join(lines))

    @on(Input.Submitted, "#skill-source")
    def install_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.install(event.value.strip())

    @work(exclusive=True, group="skills", exit_on_error=False)
    async def install(self, source: str) -> None:
        self.app.notify(f"installing {self.shown(source)}…")
        skill = await self.app.api("POST", "/api/owner/skills/install", {"source": source})
        if skill is None:
            return
        self.query_one("#skill-source", Input).value = ""
        await self.refresh_data()
        self.app.push_screen(PermissionReview(skill), lambda granted: self.reviewed(skill, granted))

    @work(group="skills", exit_on_error=False)
    async def reviewed(self, skill: dict, granted: list[str] | None) -> None:
        if granted is None:
            if await self.app.api("POST", "/api/owner/skills/remove", {"name": skill["name"]}) is not None:
                self.app.notify(f"rejected: {skill['name']} was removed again")
        elif await self.app.api("POST", "/api/owner/skills/approve", {"name": skill["name"], "permissions": granted}) is not None:
            self.app.notify(f"approved {skill['name']}; its tools ask you before they run")
        await self.refresh_data()

    def toggle_selected(self) -> None:
        s = self.selected()
        if s is not None:
            self.change(s["name"], "disable" if s["enabled"] else "enable")

    @work(group="skills", exit_on_error=False)
    async def change(self, name: str, verb: str) -> None:
        if await self.app.api("POST", f"/api/owner/skills/{verb}", {"name": name}) is not None:
            self.app.notify(f"{verb}d {name}")
        await self.refresh_data()

    def policy_selected(self) -> None:
        s = self.selected()
        if s is None or not s.get("tools"):
            self.app.notify("this skill lists no tools", severity="warning")
            return
        self.app.push_screen(ToolPolicy(s), self.set_policy)

    @work(group="skills", exit_on_error=False)
    async def set_policy(self, changed: dict[str, str] | None) -> None:
        for tool, decision in (changed or {}).items():
            if await self.app.api("PUT", "/api/owner/skills/policy", {"tool": tool, "decision": decision}) is not None:
                self.app.notify(f"{tool}: {decision}")
        await self.refresh_data()

    def remove_selected(self) -> None:
        s = self.selected()
        if s is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.change(s["name"], "remove")

        self.app.push_screen(Confirm(f"Remove the skill {s['name']}?"), confirmed)


# --- approvals and the inbox ---------------------------------------------------------------


OWNER_QUESTION = "owner.ask"   # how the node lists a skill's question to the owner among the approvals


class ApprovalsTable(DataTable):
    BINDINGS = [Binding("a", "decide('approve')", "Approve"), Binding("d", "decide('deny')", "Deny")]

    def action_decide(self, decision: str) -> None:
        self.app.query_one(ApprovalsPane).decide_selected(decision)


class InboxTable(DataTable):
    BINDINGS = [Binding("delete,x", "remove", "Remove message")]

    def action_remove(self) -> None:
        self.app.query_one(ApprovalsPane).remove_message()


class ApprovalsPane(Pane):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pending: dict[str, dict] | None = None   # None until first listed
        self.inbox_ids: list[str] | None = None

    def compose(self) -> ComposeResult:
        yield Label("Tool calls waiting for you (A approves, D denies)", classes="heading")
        yield ApprovalsTable(id="approvals", cursor_type="row")
        yield Static("", id="approval-args", markup=False)
        yield Label("Messages from peers waiting for you (Del removes one)", classes="heading")
        yield InboxTable(id="inbox", cursor_type="row")

    async def refresh_data(self, quiet: bool = False) -> None:
        """``quiet``: a background poll, which shows a failure in the pane instead of notifying
        every few seconds."""
        try:
            found = await self.app.client.call("GET", "/api/owner/approvals")
        except NodeUnavailable as e:
            if not quiet:
                self.app.fail(e)
            self.query_one("#approvals", DataTable).border_title = "cannot list the tool calls waiting"
            self.query_one("#approval-args", Static).update(self.shown(str(e)))
            return
        ids = [a["id"] for a in found]
        if self.pending is None or ids != list(self.pending):
            self.pending = {a["id"]: a for a in found}
            table = self.query_one("#approvals", DataTable)
            table.clear(columns=True)
            table.add_columns("Tool", "Skill", "Asked by", "Waiting")
            for a in found:
                waited = f"{max(0, int(time.time() - a.get('created', time.time())))} s"
                table.add_row(*map(cell, (a["tool"], a.get("skill", ""), self.shown(a.get("requester", "")), waited)), key=a["id"])
            table.border_title = f"{len(found)} waiting" if found else "nothing waiting"
            self.show_arguments()
        await self.refresh_inbox()

    async def refresh_inbox(self) -> None:
        """Private messages (Nostr) the node kept for the owner: from strangers, or what a
        grant did not cover."""
        table = self.query_one("#inbox", DataTable)
        try:
            items = await self.app.client.call("GET", "/api/owner/inbox")
        except NodeUnavailable as e:
            table.border_title = "the inbox failed"
            self.query_one("#approval-args", Static).update(self.shown(str(e)))
            return
        if [m["id"] for m in items] == self.inbox_ids:
            return
        self.inbox_ids = [m["id"] for m in items]
        table.clear(columns=True)
        table.add_columns("From", "Message", "Why it waits")
        for m in items:
            sender = m.get("peer_did") or m.get("npub") or m.get("from", "")
            table.add_row(*map(cell, (self.shown(sender), m.get("text", ""), m.get("why", ""))), key=m["id"])
        table.border_title = f"{len(items)} messages" if items else "no messages waiting"

    @work(group="inbox", exit_on_error=False)
    async def remove_message(self) -> None:
        table = self.query_one("#inbox", DataTable)
        if not table.row_count:
            return
        message_id = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        if await self.app.api("POST", "/api/owner/inbox/remove", {"id": message_id}) is not None:
            self.app.notify("removed the message from the inbox")
        await self.refresh_inbox()

    def selected(self) -> dict | None:
        table = self.query_one("#approvals", DataTable)
        if not table.row_count:
            return None
        return (self.pending or {}).get(table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value)

    @on(DataTable.RowHighlighted, "#approvals")
    def show_arguments(self) -> None:
        a = self.selected()
        if a is None:
            text = ""
        elif a["tool"] == OWNER_QUESTION:   # a skill's own yes/no question: A is yes, D is no
            text = f"{a.get('skill')} asks you (A yes, D no):\n{a.get('arguments', {}).get('question', '')}"
        else:
            text = f"{a['tool']} wants to run with:\n" + json.dumps(a.get("arguments", {}), indent=2, ensure_ascii=False)
        self.query_one("#approval-args", Static).update(self.shown(text))

    def decide_selected(self, decision: str) -> None:
        a = self.selected()
        if a is not None:
            self.decide(a, decision)

    @work(group="approvals", exit_on_error=False)
    async def decide(self, approval: dict, decision: str) -> None:
        if await self.app.api("POST", "/api/owner/approvals/decide", {"id": approval["id"], "decision": decision}) is not None:
            self.app.notify(f"{decision}d {approval['tool']} (recorded in the audit log)")
        await self.refresh_data()


# --- identity ------------------------------------------------------------------------------


class PeersTable(DataTable):
    BINDINGS = [Binding("n", "add", "Add peer")]

    def action_add(self) -> None:
        self.app.query_one(IdentityPane).add_peer()


class GrantsTable(DataTable):
    BINDINGS = [Binding("delete,x", "remove", "Withdraw grant")]

    def action_remove(self) -> None:
        self.app.query_one(IdentityPane).remove_selected(self, "grant")


class TokensTable(DataTable):
    BINDINGS = [Binding("n", "add", "New token"), Binding("delete,x", "remove", "Revoke")]

    def action_add(self) -> None:
        self.app.query_one(IdentityPane).new_token()

    def action_remove(self) -> None:
        self.app.query_one(IdentityPane).remove_selected(self, "token")


class IdentityPane(Pane):
    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("", id="identity", markup=False)
            yield PeersTable(id="peers", cursor_type="row")
            yield GrantsTable(id="grants", cursor_type="row")
            yield TokensTable(id="tokens", cursor_type="row")

    def add_peer(self) -> None:
        async def given(url: str | None) -> None:
            if url:
                peer = await self.app.api("POST", "/api/owner/peers", {"url": url})
                if peer is not None:
                    self.app.notify(f"pinned {peer['did']} for {peer['url']}")
                    await self.refresh_data()

        self.app.push_screen(AskText("A peer node's URL (its agent card is fetched and checked):"), given)

    def new_token(self) -> None:
        async def named(name: str | None) -> None:
            if name:
                made = await self.app.api("POST", "/api/owner/tokens", {"name": name, "allow": ["chat"]})
                if made is not None:
                    await self.refresh_data()
                    self.app.push_screen(ShowSecret(f"Token {name} (chat, for a local app's /v1 API)", made["token"]))

        self.app.push_screen(AskText("A name for the new token (the app that will use it):"), named)

    def remove_selected(self, table: DataTable, kind: str) -> None:
        if not table.row_count:
            return
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value   # the real value, not as shown
        path, field, question = {
            "token": ("/api/owner/tokens/revoke", "name", f"Revoke the token {key}? Apps using it stop working."),
            "grant": ("/api/owner/grants/remove", "did", f"Withdraw every grant of {key}?"),
        }[kind]

        async def confirmed(yes: bool | None) -> None:
            if yes and await self.app.api("POST", path, {field: key}) is not None:
                self.app.notify(f"{kind} withdrawn: {key}")
                await self.refresh_data()

        self.app.push_screen(Confirm(question), confirmed)

    async def refresh_data(self) -> None:
        me = await self.app.api("GET", "/api/owner/identity")
        if me is None:
            return
        self.query_one("#identity", Static).update(
            self.shown(
                f"owner DID   {me['owner_did']}\nnode DID    {me['node_did']}\n"
                f"agent card  {me['agent_card']}\nhome        {me['home']}"
            )
        )
        for table_id, path, columns, row in (
            ("#peers", "/api/owner/peers", ("Peer", "DID", "URL"), lambda p: (p.get("name") or "-", p["did"], p["url"])),
            ("#grants", "/api/owner/grants", ("Grant to", "May", "Tags", "Quota", "Note"), lambda g: (
                g["did"], ", ".join(g["allow"]), "all" if g.get("tags") is None else ", ".join(g["tags"]) or "none", g.get("quota") or "-", g.get("note") or "")),
            ("#tokens", "/api/owner/tokens", ("Token", "Allows"), lambda t: (t["name"], ", ".join(t["allow"]))),
        ):
            found = await self.app.api("GET", path)
            table = self.query_one(table_id, DataTable)
            table.clear(columns=True)
            table.add_columns(*columns)
            for item in found or []:
                values = row(item)
                table.add_row(*(cell(self.shown(str(value))) for value in values), key=str(values[0]))
            table.border_title = f"{columns[0].split()[0].lower()}s: {len(found or [])}"
