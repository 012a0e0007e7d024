"""The terminal home: chat, data, skills, approvals and identity in one Textual app.

It is a client of the node's signed API like any peer (DESIGN.md): it holds an
AsyncNodeClient signed with the owner's key and imports nothing of store, agent or skills.
Every failure reaches the owner as a notification with the node's reason, never a traceback.
"""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Input, TabbedContent, TabPane
from textual.worker import WorkerState

from node.client import AsyncNodeClient, NodeUnavailable
from tui.modals import HelpScreen
from tui.panes import ApprovalsPane, ChatPane, DataPane, IdentityPane, Pane, SkillsPane

TABS = ("chat", "data", "skills", "approvals", "identity")

CSS = """
#conversations { width: 24; border-right: solid $primary-background; }
#thread { width: 1fr; }
#messages { height: 1fr; }
Message { padding: 0 1; margin-bottom: 1; }
Message.user { color: $text-accent; text-style: bold; }
#chat-status { height: 1; color: $text-muted; padding: 0 1; }
#sources { height: auto; max-height: 5; }
#source-pane { width: 40; border-left: solid $primary-background; padding: 0 1; }
#source-title { text-style: bold; }
.row { height: auto; }
.row.short { height: 1; }
#add-path { width: 2fr; }
#add-tags { width: 1fr; }
#add-status { width: 1fr; padding: 0 1; }
#add-errors { height: auto; max-height: 5; color: $text-warning; padding: 0 1; }
DataTable { height: 1fr; }
#skills, #approvals { height: 1fr; min-height: 4; }
#documents, #skills, #approvals { border: round $primary-background; border-title-color: $text-muted; }
#skill-detail, #approval-args { height: auto; max-height: 8; padding: 0 1; }
.heading { text-style: bold; padding: 0 1; }
#inbox { height: auto; max-height: 8; min-height: 3; border: round $primary-background; border-title-color: $text-muted; }
#identity { padding: 0 1; margin-bottom: 1; }
#peers, #grants, #tokens { height: auto; max-height: 8; margin-bottom: 1; }
.dialog { width: 70; max-width: 95%; height: auto; border: thick $primary; background: $surface; padding: 1 2; }
.dialog .title { text-style: bold; }
.buttons { height: auto; margin-top: 1; }
.buttons Button { margin-right: 2; }
#permissions { height: auto; max-height: 8; }
#help { width: 90%; max-width: 100; height: 90%; border: thick $primary; background: $surface; }
HelpScreen, AskText, Confirm, PermissionReview, ToolPolicy, ShowSecret { align: center middle; }
"""


class FlurryApp(App):
    TITLE = "flurry"
    ENABLE_COMMAND_PALETTE = False   # the footer's room is for the keys that matter here
    CSS = CSS
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("question_mark", "help", "Help", show=False),
        Binding("ctrl+t", "toggle_theme", "Theme"),
        Binding("ctrl+q", "quit", "Quit"),
        *(Binding(f"f{n}", f"show_tab('{tab}')", tab.title(), show=False) for n, tab in enumerate(TABS, start=2)),
    ]

    def __init__(self, client: AsyncNodeClient, *, mask: dict[str, str] | None = None, tools: bool = True, poll_seconds: float = 2.0) -> None:
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
        yield Header()
        with TabbedContent(initial="chat"):
            with TabPane("Chat", id="chat"):
                yield ChatPane()
            with TabPane("Data", id="data"):
                yield DataPane()
            with TabPane("Skills", id="skills-tab"):
                yield SkillsPane()
            with TabPane("Approvals", id="approvals-tab"):
                yield ApprovalsPane()
            with TabPane("Identity", id="identity-tab"):
                yield IdentityPane()
        yield Footer()

    async def on_mount(self) -> None:
        self.sub_title = self.shown(self.client.url)
        self.query_one("#question", Input).focus()
        await self.query_one(ChatPane).refresh_data()
        if self.poll_seconds:
            # Tool calls wait for the owner while the node works: look for them now and then.
            self.set_interval(self.poll_seconds, self.refresh_approvals)

    async def on_unmount(self) -> None:
        await self.client.aclose()   # in the loop its connections belong to

    # --- talking to the node, with failures shown, not raised -------------------------------

    async def api(self, method: str, path: str, body: dict | None = None) -> object | None:
        """One call to the node; on failure a notification with the reason, and None."""
        try:
            return await self.client.call(method, path, body)
        except NodeUnavailable as e:
            self.fail(e)
            return None

    def fail(self, error: BaseException) -> None:
        self.notify(str(error) or type(error).__name__, title="flurry", severity="error", timeout=10)

    def on_worker_state_changed(self, event) -> None:
        # The last net: a worker that failed in a way no one foresaw is a notification too.
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.fail(event.worker.error)

    def shown(self, text: str) -> str:
        for real, fake in self.mask.items():
            text = text.replace(real, fake)
        return text

    async def refresh_approvals(self) -> None:
        await self.query_one(ApprovalsPane).refresh_data(quiet=True)

    # --- tabs, help, theme --------------------------------------------------------------------

    async def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.query(Pane).first()
        await pane.refresh_data()

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = {"skills": "skills-tab", "approvals": "approvals-tab", "identity": "identity-tab"}.get(tab, tab)
        focus = {"chat": "#question", "data": "#add-path", "skills": "#skill-source", "approvals": "#approvals", "identity": "#peers"}[tab]
        self.query_one(focus).focus()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"
