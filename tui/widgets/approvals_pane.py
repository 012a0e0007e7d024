"""Approvals (F5): tool calls and skills' questions waiting for the owner, and the inbox of
peers' messages the node kept for the owner."""

from __future__ import annotations

import json
import time
from typing import cast

from textual import on, work
from textual.app import ComposeResult
from textual.widgets import DataTable, Label, Static

from node.client import NodeUnavailable
from tui.format import cell
from tui.widgets.approvals_table import ApprovalsTable
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
            table = self.query_one("#approvals", DataTable)
            table.clear(columns=True)
            table.add_columns("Tool", "Skill", "Asked by", "Waiting")
            for a in found:
                waited = f"{max(0, int(time.time() - a.get('created', time.time())))} s"
                table.add_row(
                    *map(
                        cell,
                        (a["tool"], a.get("skill", ""), self.shown(a.get("requester", "")), waited),
                    ),
                    key=a["id"],
                )
            table.border_title = f"{len(found)} waiting" if found else "nothing waiting"
            self.show_arguments()
        await self.refresh_inbox()

    async def refresh_inbox(self) -> None:
        """Private messages (Nostr) the node kept for the owner: from strangers, or what a
        grant did not cover."""
        table = self.query_one("#inbox", DataTable)
        try:
            items = cast(list[dict], await self.client.call("GET", "/api/owner/inbox"))
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
            table.add_row(
                *map(cell, (self.shown(sender), m.get("text", ""), m.get("why", ""))), key=m["id"]
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
