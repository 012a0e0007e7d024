"""Identity (F6): the owner's and the node's DIDs, pinned peers, grants, tokens, and the
contracts bought and sold (issue 18: open and past, as `flurry contracts list` shows them)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from tui.format import cell
from tui.screens import AskText, Confirm, ShowSecret, WatchDelegation
from tui.widgets.contracts_table import ContractsTable
from tui.widgets.grants_table import GrantsTable
from tui.widgets.pane import Pane
from tui.widgets.peers_table import PeersTable
from tui.widgets.tokens_table import TokensTable

DELEGATE_BUDGET = 100  # credits: the TUI's terms for a delegation (the CLI sets its own)
DELEGATE_SECONDS = 15  # the bidding window


class IdentityPane(Pane):
    FIRST = "#peers"

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("", id="identity", markup=False)
            yield PeersTable(id="peers", cursor_type="row")
            yield GrantsTable(id="grants", cursor_type="row")
            yield TokensTable(id="tokens", cursor_type="row")
            yield ContractsTable(id="contracts", cursor_type="row")

    @on(PeersTable.Add)
    def add_peer(self) -> None:
        async def given(url: str | None) -> None:
            if url:
                peer = await self.api("POST", "/api/owner/peers", {"url": url})
                if peer is not None:
                    self.notify(f"pinned {peer['did']} for {peer['url']}")
                    await self.refresh_data()

        self.app.push_screen(
            AskText("A peer node's URL (its agent card is fetched and checked):"), given
        )

    @on(ContractsTable.Delegate)
    def delegate(self) -> None:
        """A task for every pinned peer, bids watched and awarded by the owner (WatchDelegation)."""

        async def asked(task: str | None) -> None:
            if not task:
                return
            peers = await self.api("GET", "/api/owner/peers")
            if not peers:
                if peers is not None:
                    self.notify("pin a peer first (N on the peers table)", severity="warning")
                return
            started = await self.api(
                "POST",
                "/api/owner/contracts/delegations",
                {
                    "task": task,
                    "peers": [p["did"] for p in peers],
                    "budget": DELEGATE_BUDGET,
                    "unit": "credits",
                    "deadline": DELEGATE_SECONDS,
                    "pick": "ask",
                },
            )
            if started is not None:

                async def closed(_: None) -> None:
                    await self.refresh_data()

                self.app.push_screen(
                    WatchDelegation(self.client, started["conversation"], self.shown), closed
                )

        self.app.push_screen(
            AskText(
                f"A task for your pinned peers (budget {DELEGATE_BUDGET} credits, bids for "
                f"{DELEGATE_SECONDS} s; you choose the winner):"
            ),
            asked,
        )

    @on(TokensTable.Add)
    def new_token(self) -> None:
        async def named(name: str | None) -> None:
            if name:
                made = await self.api(
                    "POST", "/api/owner/tokens", {"name": name, "allow": ["chat"]}
                )
                if made is not None:
                    await self.refresh_data()
                    self.app.push_screen(
                        ShowSecret(f"Token {name} (chat, for a local app's /v1 API)", made["token"])
                    )

        self.app.push_screen(AskText("A name for the new token (the app that will use it):"), named)

    @on(TokensTable.Revoke)
    def revoke_token(self, event: TokensTable.Revoke) -> None:
        if event.key is not None:
            self.withdraw(
                "/api/owner/tokens/revoke",
                {"name": event.key},
                "token",
                event.key,
                f"Revoke the token {event.key}? Apps using it stop working.",
            )

    @on(GrantsTable.Withdraw)
    def withdraw_grant(self, event: GrantsTable.Withdraw) -> None:
        if event.key is not None:
            self.withdraw(
                "/api/owner/grants/remove",
                {"did": event.key},
                "grant",
                event.key,
                f"Withdraw every grant of {event.key}?",
            )

    def withdraw(self, path: str, body: dict, kind: str, key: str, question: str) -> None:
        """Ask ``question``; on yes, post ``body`` to ``path`` and list again."""

        async def confirmed(yes: bool | None) -> None:
            if yes and await self.api("POST", path, body) is not None:
                self.notify(f"{kind} withdrawn: {key}")
                await self.refresh_data()

        self.app.push_screen(Confirm(question), confirmed)

    async def refresh_data(self) -> None:
        me = await self.api("GET", "/api/owner/identity")
        if me is None:
            return
        self.query_one("#identity", Static).update(
            self.shown(
                f"owner DID   {me['owner_did']}\nnode DID    {me['node_did']}\n"
                f"agent card  {me['agent_card']}\nhome        {me['home']}"
            )
        )
        for table_id, path, columns, row in (
            (
                "#peers",
                "/api/owner/peers",
                ("Peer", "DID", "URL"),
                lambda p: (p.get("name") or "-", p["did"], p["url"]),
            ),
            (
                "#grants",
                "/api/owner/grants",
                ("Grant to", "May", "Tags", "Quota", "Note"),
                lambda g: (
                    g["did"],
                    ", ".join(g["allow"]),
                    "all" if g.get("tags") is None else ", ".join(g["tags"]) or "none",
                    g.get("quota") or "-",
                    g.get("note") or "",
                ),
            ),
            (
                "#tokens",
                "/api/owner/tokens",
                ("Token", "Allows"),
                lambda t: (t["name"], ", ".join(t["allow"])),
            ),
            (
                "#contracts",
                "/api/owner/contracts",
                ("Contract", "State", "Price", "Peer", "Task"),
                lambda c: (
                    f"{c['side']}:{c['conversation']}",
                    c["state"] + (" (late)" if c["late"] else ""),
                    "-" if c["price"] is None else f"{c['price']['amount']} {c['price']['unit']}",
                    c["seller"] if c["side"] == "buyer" and c["seller"] else c["peer"],
                    c["task"],
                ),
            ),
        ):
            found = await self.api("GET", path)
            table = self.query_one(table_id, DataTable)
            table.clear(columns=True)
            table.add_columns(*columns)
            for item in found or []:
                values = row(item)
                table.add_row(
                    *(cell(self.shown(str(value))) for value in values), key=str(values[0])
                )
            table.border_title = f"{columns[0].split()[0].lower()}s: {len(found or [])}"
