"""The terminal home: chat, data, skills, approvals and identity in one Textual app.

It is a client of the node's signed API like any peer (DESIGN.md): it holds an
AsyncNodeClient signed with the owner's key and imports nothing of the node but its client.
The app hands each tab's pane the client and the display mask; a pane tells the app what it
needs from outside itself with a message (a failed call, a tool call waiting for approval).
Every failure reaches the owner as a notification with the node's reason, never a traceback.
Its look is in app.tcss.
"""

from __future__ import annotations

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from node.client import AsyncNodeClient
from tui.format import masked
from tui.screens import HelpScreen
from tui.widgets import ApprovalsPane, ChatPane, DataPane, IdentityPane, Pane, SkillsPane

TABS = ("chat", "data", "skills", "approvals", "identity")
TAB_IDS = {
    "chat": "chat",
    "data": "data",
    "skills": "skills-tab",
    "approvals": "approvals-tab",
    "identity": "identity-tab",
}


class FlurryApp(App):
    TITLE = "flurry"
    ENABLE_COMMAND_PALETTE = False  # the footer's room is for the keys that matter here
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("question_mark", "help", "Help", show=False),
        Binding("ctrl+t", "toggle_theme", "Theme"),
        Binding("ctrl+q", "quit", "Quit"),
        *(
            Binding(f"f{n}", f"show_tab('{tab}')", tab.title(), show=False)
            for n, tab in enumerate(TABS, start=2)
        ),
    ]

    def __init__(
        self,
        client: AsyncNodeClient,
        *,
        mask: dict[str, str] | None = None,
        tools: bool = True,
        poll_seconds: float = 2.0,
    ) -> None:
        """``mask`` replaces values on screen (real → shown): snapshot tests use it to hide the
        run's random DIDs, ports and paths. ``tools`` lets the owner's questions run skills'
        tools (their policy still applies: "ask" comes to Approvals)."""
        super().__init__()
        self.client = client
        self.mask = dict(mask or {})
        self.tools = tools
        self.poll_seconds = poll_seconds
        self.theme = "textual-dark"

    def compose(self) -> ComposeResult:
        link = (self.client, self.mask)
        yield Header()
        with TabbedContent(initial="chat"):
            with TabPane("Chat", id=TAB_IDS["chat"]):
                yield ChatPane(*link, tools=self.tools)
            with TabPane("Data", id=TAB_IDS["data"]):
                yield DataPane(*link)
            with TabPane("Skills", id=TAB_IDS["skills"]):
                yield SkillsPane(*link)
            with TabPane("Approvals", id=TAB_IDS["approvals"]):
                yield ApprovalsPane(*link)
            with TabPane("Identity", id=TAB_IDS["identity"]):
                yield IdentityPane(*link)
        yield Footer()

    async def on_mount(self) -> None:
        self.sub_title = masked(self.client.url, self.mask)
        chat = self.query_one(ChatPane)
        chat.focus_first()
        await chat.refresh_data()
        if self.poll_seconds:
            # Tool calls wait for the owner while the node works: look for them now and then.
            self.set_interval(self.poll_seconds, self.refresh_approvals)

    async def on_unmount(self) -> None:
        await self.client.aclose()  # in the loop its connections belong to

    # --- what the panes tell the app ------------------------------------------------------------

    def fail(self, error: BaseException) -> None:
        self.notify(
            str(error) or type(error).__name__, title="flurry", severity="error", timeout=10
        )

    @on(Pane.Failed)
    def pane_failed(self, event: Pane.Failed) -> None:
        self.fail(event.error)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # The last net: a worker that failed in a way no one foresaw is a notification too.
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.fail(event.worker.error)

    @on(ChatPane.ApprovalNeeded)
    def approval_needed(self) -> None:
        self.call_later(self.refresh_approvals)

    async def refresh_approvals(self) -> None:
        await self.query_one(ApprovalsPane).refresh_data(quiet=True)

    # --- tabs, help, theme --------------------------------------------------------------------

    async def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.query(Pane).first()
        await pane.refresh_data()

    def action_show_tab(self, tab: str) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = TAB_IDS[tab]
        tabs.get_pane(TAB_IDS[tab]).query_one(Pane).focus_first()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"
