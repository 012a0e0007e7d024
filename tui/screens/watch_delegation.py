"""A delegation as it runs (issue 18): the peers' bids as they arrive, the owner's pick, the
verified result. The round runs in the serving node (node.contracts_buyer.Delegations); this
screen only watches it and sends the pick, so closing it loses nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from node.client import AsyncNodeClient, NodeUnavailable
from tui.format import cell
from tui.keyed_table import KeyedTable

POLL_SECONDS = 0.3
DELEGATION = "/api/owner/contracts/delegation"


class WatchDelegation(ModalScreen[None]):
    """Enter awards the bid under the cursor, N awards nobody, Esc closes (the round goes on)."""

    BINDINGS = [  # Enter is the table's own: it selects the row (on_row_selected)
        Binding("n", "award_nobody", "Award nobody"),
        Binding("escape", "close", "Close"),
    ]

    def __init__(
        self, client: AsyncNodeClient, conversation: str, shown: Callable[[str], str]
    ) -> None:
        super().__init__()
        self.client, self.conversation, self.shown = client, conversation, shown
        self.view: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="delegation"):
            yield Label(f"Delegation {self.conversation}", classes="title", markup=False)
            yield KeyedTable(id="bids", cursor_type="row")
            yield Static("asking your peers…", id="delegation-state", markup=False)

    def on_mount(self) -> None:
        self.query_one("#bids", KeyedTable).focus()
        self.poll()
        self.set_interval(POLL_SECONDS, self.poll)

    @work(group="delegation-poll", exclusive=True, exit_on_error=False)
    async def poll(self) -> None:
        if self.view is not None and self.view["phase"] in ("done", "failed"):
            return
        try:
            view = cast(
                dict,
                await self.client.call("POST", DELEGATION, {"conversation": self.conversation}),
            )
        except NodeUnavailable as e:
            self.query_one("#delegation-state", Static).update(str(e))
            return
        self.show(view)

    def show(self, view: dict[str, Any]) -> None:
        self.view = view
        self.query_one("#bids", KeyedTable).refill(
            ("Peer", "Answer", "Price", "Expected"),
            (
                (
                    peer,
                    [
                        cell(self.shown(c))
                        for c in (
                            peer,
                            row["answer"]
                            + (
                                f": {row.get('reason') or row.get('error')}"
                                if row["answer"] in ("refused", "error")
                                else ""
                            ),
                            f"{row['price']['amount']} {row['price']['unit']}"
                            if "price" in row
                            else "",
                            f"{row['expected_seconds']} s" if "expected_seconds" in row else "",
                        )
                    ],
                )
                for peer, row in view["peers"].items()
            ),
        )
        self.query_one("#delegation-state", Static).update(self.shown(_state(view)))

    @on(DataTable.RowSelected, "#bids")
    def on_row_selected(self, event: DataTable.RowSelected) -> None:
        self.send_award(event.row_key.value)

    def action_award_nobody(self) -> None:
        self.send_award(None)

    @work(group="delegation-award", exit_on_error=False)
    async def send_award(self, peer: str | None) -> None:
        view = self.view
        if view is None or view["phase"] != "choosing":
            self.notify("the round is not waiting for your choice", severity="warning")
            return
        did = None
        if peer is not None:
            bid = next((b for b in view["bids"] if b["peer"] == peer), None)
            if bid is None:
                self.notify(f"{peer} made no bid", severity="warning")
                return
            did = bid["did"]
        try:
            self.show(
                cast(
                    dict,
                    await self.client.call(
                        "POST",
                        DELEGATION + "/award",
                        {"conversation": self.conversation, "did": did},
                    ),
                )
            )
        except NodeUnavailable as e:
            self.notify(str(e), severity="error")

    def action_close(self) -> None:
        self.dismiss(None)


def _state(view: dict[str, Any]) -> str:
    phase = view["phase"]
    if phase == "bidding":
        return "waiting for bids…"
    if phase == "choosing":
        return "choose a bid: Enter awards it, N awards nobody"
    if phase == "working":
        return "awarded; the peer is doing the work…"
    if phase == "failed":
        return f"the delegation failed: {view['error']}"
    outcome = view["outcome"]
    if outcome["winner"] is None:
        return f"no award ({outcome['state']})"
    price = outcome["price"]
    lines = [
        f"awarded to {outcome['winner']} for {price['amount']} {price['unit']}: {outcome['state']}"
    ]
    if outcome.get("text"):
        lines.append(outcome["text"])
    if outcome.get("receipt"):
        lines.append(f"receipt {outcome['receipt']} checked; the conversation is verified and kept")
    return "\n".join(lines)
