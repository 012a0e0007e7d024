"""Approvals (F5): tool calls and skills' questions waiting for the owner, what the inbox
agent did or proposes (its drafts: send, edit, discard), and the inbox of peers' messages the
node kept for the owner."""

from __future__ import annotations

import json
import time
from typing import cast

from textual import on, work
from textual.app import ComposeResult
from textual.widgets import DataTable, Label, Static

from node.client import NodeUnavailable
from tui.format import cell
from tui.screens import EditText
from tui.widgets.approvals_table import ApprovalsTable
from tui.widgets.drafts_table import DraftsTable
from tui.widgets.inbox_table import InboxTable
from tui.widgets.pane import Pane

OWNER_QUESTION = (
    "owner.ask"  # how the node lists a skill's question to the owner among the approvals
)


class ApprovalsPane(Pane):
    FIRST = "#approvals"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pending: dict[str, dict] | None = None  # None until first listed
        self.inbox_ids: list[str] | None = None
        self.items: dict[str, dict] | None = None  # the inbox agent's, by id

    def compose(self) -> ComposeResult:
        yield Label("Tool calls waiting for you (A approves, D denies)", classes="heading")
        yield ApprovalsTable(id="approvals", cursor_type="row")
        yield Static("", id="approval-args", markup=False)
        yield Label(
            "Your agent's inbox (A sends the draft, E edits it, D discards it)", classes="heading"
        )
        yield DraftsTable(id="drafts", cursor_type="row")
        yield Static("", id="draft-text", markup=False)
        yield Label("Messages from peers waiting for you (Del removes one)", classes="heading")
        yield InboxTable(id="inbox", cursor_type="row")

    async def refresh_data(self, quiet: bool = False) -> None:
        """``quiet``: a background poll, which shows a failure in the pane instead of notifying
        every few seconds."""
        try:
            found = cast(list[dict], await self.client.call("GET", "/api/owner/approvals"))
        except NodeUnavailable as e:
            if not quiet:
                self.fail(e)
            self.query_one(
                "#approvals", DataTable
            ).border_title = "cannot list the tool calls waiting"
            self.query_one("#approval-args", Static).update(self.shown(str(e)))
            return
        ids = [a["id"] for a in found]
        if self.pending is None or ids != list(self.pending):
            self.pending = {a["id"]: a for a in found}
            table = self.query_one("#approvals", ApprovalsTable)
            table.refill(
                ("Tool", "Skill", "Asked by", "Waiting"),
                (
                    (
                        a["id"],
                        [
                            cell(c)
                            for c in (
                                a["tool"],
                                a.get("skill", ""),
                                self.shown(a.get("requester", "")),
                                f"{max(0, int(time.time() - a.get('created', time.time())))} s",
                            )
                        ],
                    )
                    for a in found
                ),
            )
            table.border_title = f"{len(found)} waiting" if found else "nothing waiting"
            self.show_arguments()
        await self.refresh_drafts()
        await self.refresh_inbox()

    async def refresh_drafts(self) -> None:
        """The inbox agent's items: who wrote, what it did or proposes, and why."""
        table = self.query_one("#drafts", DraftsTable)
        try:
            items = cast(list[dict], await self.client.call("GET", "/api/owner/inbox/items"))
        except NodeUnavailable as e:
            table.border_title = "the agent's inbox failed"
            self.query_one("#draft-text", Static).update(self.shown(str(e)))
            return
        if self.items is not None and [(i["id"], i["status"]) for i in items] == [
            (i["id"], i["status"]) for i in self.items.values()
        ]:
            return
        self.items = {i["id"]: i for i in items}
        table.refill(
            ("From", "Subject", "Agent", "Status"),
            (
                (
                    i["id"],
                    [
                        cell(c)
                        for c in (
                            self.shown(i["sender"]),
                            i["subject"] or i["text"][:60],
                            i["action"],
                            i["status"],
                        )
                    ],
                )
                for i in items
            ),
        )
        waiting = sum(1 for i in items if i["status"] == "proposed")
        table.border_title = f"{waiting} drafts waiting" if items else "nothing came in"
        self.show_draft()

    @on(DataTable.RowHighlighted, "#drafts")
    def show_draft(self) -> None:
        key = self.query_one("#drafts", DraftsTable).cursor_key
        item = (self.items or {}).get(key) if key is not None else None
        text = ""
        if item is not None:
            draft = item.get("draft") or {}
            lines = [f"why: {'; '.join(item['why'])}"]
            if item["summary"]:
                lines.append(f"summary: {item['summary']}")
            if item.get("sent"):
                lines.append(f"sent: {item['sent']['text']}")
            elif draft.get("body"):
                lines.append(f"draft to {draft['to']}: {draft['body']}")
            lines += [f"  [{e['number']}] «{e['quote']}»" for e in draft.get("evidence", [])]
            text = "\n".join(lines)
        self.query_one("#draft-text", Static).update(self.shown(text))

    @on(DraftsTable.Act)
    def draft_asked(self, event: DraftsTable.Act) -> None:
        item = (self.items or {}).get(event.key) if event.key is not None else None
        if item is None:
            return
        if event.action == "edit":
            body = (item.get("draft") or {}).get("body", "")

            def edited(text: str | None) -> None:
                if text:
                    self.act_on_draft(item, "approve", text)

            self.app.push_screen(
                EditText(f"Your reply to {item['sender']} (Ctrl+S sends, Esc cancels)", body),
                edited,
            )
        else:
            self.act_on_draft(item, event.action, None)

    @work(group="drafts", exit_on_error=False)
    async def act_on_draft(self, item: dict, action: str, body: str | None) -> None:
        path = "/api/owner/inbox/approve" if action == "approve" else "/api/owner/inbox/discard"
        done = await self.api("POST", path, {"id": item["id"], **({"body": body} if body else {})})
        if done is not None:
            self.notify(
                f"sent to {item['sender']}" if action == "approve" else "discarded the draft"
            )
        await self.refresh_drafts()

    async def refresh_inbox(self) -> None:
        """Private messages (Nostr) the node kept for the owner: from strangers, or what a
        grant did not cover."""
        table = self.query_one("#inbox", InboxTable)
        try:
            items = cast(list[dict], await self.client.call("GET", "/api/owner/inbox"))
        except NodeUnavailable as e:
            table.border_title = "the inbox failed"
            self.query_one("#approval-args", Static).update(self.shown(str(e)))
            return
        if [m["id"] for m in items] == self.inbox_ids:
            return
        self.inbox_ids = [m["id"] for m in items]
        table.refill(
            ("From", "Message", "Why it waits"),
            (
                (
                    m["id"],
                    [
                        cell(c)
                        for c in (
                            self.shown(m.get("peer_did") or m.get("npub") or m.get("from", "")),
                            m.get("text", ""),
                            m.get("why", ""),
                        )
                    ],
                )
                for m in items
            ),
        )
        table.border_title = f"{len(items)} messages" if items else "no messages waiting"

    @on(InboxTable.Remove)
    def remove_asked(self, event: InboxTable.Remove) -> None:
        if event.key is not None:
            self.remove_message(event.key)

    @work(group="inbox", exit_on_error=False)
    async def remove_message(self, message_id: str) -> None:
        if await self.api("POST", "/api/owner/inbox/remove", {"id": message_id}) is not None:
            self.notify("removed the message from the inbox")
        await self.refresh_inbox()

    def approval(self, key: str | None) -> dict | None:
        return (self.pending or {}).get(key) if key is not None else None

    @on(DataTable.RowHighlighted, "#approvals")
    def show_arguments(self) -> None:
        a = self.approval(self.query_one("#approvals", ApprovalsTable).cursor_key)
        if a is None:
            text = ""
        elif a["tool"] == OWNER_QUESTION:  # a skill's own yes/no question: A is yes, D is no
            text = f"{a.get('skill')} asks you (A yes, D no):\n{a.get('arguments', {}).get('question', '')}"
        else:
            text = f"{a['tool']} wants to run with:\n" + json.dumps(
                a.get("arguments", {}), indent=2, ensure_ascii=False
            )
        self.query_one("#approval-args", Static).update(self.shown(text))

    @on(ApprovalsTable.Decide)
    def decide_asked(self, event: ApprovalsTable.Decide) -> None:
        a = self.approval(event.key)
        if a is not None:
            self.decide(a, event.decision)

    @work(group="approvals", exit_on_error=False)
    async def decide(self, approval: dict, decision: str) -> None:
        if (
            await self.api(
                "POST", "/api/owner/approvals/decide", {"id": approval["id"], "decision": decision}
            )
            is not None
        ):
            self.notify(f"{decision}d {approval['tool']} (recorded in the audit log)")
        await self.refresh_data()
