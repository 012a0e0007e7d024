"""The app's small screens: help, a one-line question, a yes/no, and the permission review."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Markdown, Select, SelectionList, Static

HELP = """\
# flurry — keys

| key | where | does |
|---|---|---|
| **F1** or **?** | anywhere | this help |
| **F2 … F6** | anywhere | Chat, Data, Skills, Approvals, Identity |
| **Tab / Shift+Tab** | anywhere | next / previous field |
| **Ctrl+T** | anywhere | dark or light theme |
| **Ctrl+Q** | anywhere | quit (the node keeps your data sealed) |
| **Enter** | chat box | ask |
| **Esc** | chat | stop the answer being written |
| **Ctrl+N** | chat | new conversation |
| **Ctrl+R** | chat | rename this conversation |
| **Ctrl+O** | chat | the sources of the last answer; **Enter** opens one beside the chat |
| **Ctrl+L** | chat | the list of conversations; **Enter** opens, **Del** deletes |
| **Enter** | data: path box | add that file or folder |
| **Enter** | data: search box | search your notes (empty: list the documents) |
| **Del** | data: documents | forget the document |
| **Enter** | skills: source box | install a skill (you review its permissions first) |
| **E** / **P** / **Del** | skills list | enable or disable / when its tools may run / remove |
| **A** / **D** | approvals list | approve / deny the tool call |
| **Del** | inbox | remove a peer's message |
| **N** / **Del** | identity: peers, tokens | add a peer by URL, make a token / revoke a token, withdraw a grant |

Errors show as notifications with the reason; nothing you typed is lost.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(HELP)

    def action_dismiss(self) -> None:
        self.dismiss(None)


class AskText(ModalScreen[str | None]):
    """One line of text from the owner (a new title); Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, value: str = "") -> None:
        super().__init__()
        self._prompt, self._value = prompt, value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._prompt)
            yield Input(value=self._value, id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Confirm(ModalScreen[bool]):
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self._question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._question, markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PermissionReview(ModalScreen[list[str] | None]):
    """What a newly installed skill is and asks for; the owner grants all, some or none.

    Dismisses with the permissions to grant, or None to reject (the skill is removed again)."""

    BINDINGS = [Binding("ctrl+a", "approve", "Approve"), Binding("escape", "reject", "Reject")]

    def __init__(self, skill: dict) -> None:
        super().__init__()
        self.skill = skill

    def compose(self) -> ComposeResult:
        s = self.skill
        with Vertical(classes="dialog", id="review"):
            yield Label(f"Install {s.get('name')} {s.get('version', '')}?", classes="title", markup=False)
            yield Static(s.get("description") or "", markup=False)
            yield Static(f"author: {s.get('author') or '(not given)'}", markup=False)
            tools = "\n".join(f"  tool {t['name']}: {t.get('description', '')} [{t.get('policy', 'ask')}]" for t in s.get("tools", []))
            yield Static(tools or "  (no tools)", markup=False, id="review-tools")
            requested = s.get("requested", [])
            yield Label("It asks for (untick what you refuse):" if requested else "It asks for no permissions.")
            yield SelectionList[str](*[(p, p, True) for p in requested], id="permissions")
            with Horizontal(classes="buttons"):
                yield Button("Approve (Ctrl+A)", id="approve", variant="success")
                yield Button("Reject (Esc)", id="reject", variant="error")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "approve":
            self.action_approve()
        else:
            self.action_reject()

    def action_approve(self) -> None:
        self.dismiss(list(self.query_one("#permissions", SelectionList).selected))

    def action_reject(self) -> None:
        self.dismiss(None)


DECISIONS = ("allow", "ask", "deny")


class ToolPolicy(ModalScreen[dict[str, str] | None]):
    """Whether each of a skill's tools runs unasked, after the owner approves its arguments,
    or never. Dismisses with the changed tools ({tool: decision}), or None."""

    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "cancel", "Cancel")]

    def __init__(self, skill: dict) -> None:
        super().__init__()
        self.skill = skill

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="policy"):
            yield Label(f"When may {self.skill.get('name')}'s tools run?", classes="title", markup=False)
            yield Static("allow: unasked · ask: after you approve its arguments · deny: never", markup=False)
            for tool in self.skill.get("tools", []):
                yield Label(f"{tool['name']}: {tool.get('description', '')}", markup=False)
                yield Select([(d, d) for d in DECISIONS], value=tool.get("policy", "ask"), allow_blank=False, id=f"policy-{tool['name']}")
            with Horizontal(classes="buttons"):
                yield Button("Save (Ctrl+S)", id="save", variant="success")
                yield Button("Cancel (Esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_save() if event.button.id == "save" else self.action_cancel()

    def action_save(self) -> None:
        changed = {}
        for tool in self.skill.get("tools", []):
            chosen = self.query_one(f"#policy-{tool['name']}", Select).value
            if chosen != tool.get("policy", "ask"):
                changed[tool["name"]] = chosen
        self.dismiss(changed)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ShowSecret(ModalScreen[None]):
    """A secret shown once (a new token), in a box the owner can select and copy from."""

    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, title: str, secret: str) -> None:
        super().__init__()
        self._title, self._secret = title, secret

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="title", markup=False)
            yield Input(value=self._secret, id="secret")
            yield Static("It is shown only now: copy it, then Esc.", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
