"""What a newly installed skill is and asks for, before it may run."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, SelectionList, Static


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
            yield Label(
                f"Install {s.get('name')} {s.get('version', '')}?", classes="title", markup=False
            )
            yield Static(s.get("description") or "", markup=False)
            yield Static(f"author: {s.get('author') or '(not given)'}", markup=False)
            tools = "\n".join(
                f"  tool {t['name']}: {t.get('description', '')} [{t.get('policy', 'ask')}]"
                for t in s.get("tools", [])
            )
            yield Static(tools or "  (no tools)", markup=False, id="review-tools")
            requested = s.get("requested", [])
            yield Label(
                "It asks for (untick what you refuse):"
                if requested
                else "It asks for no permissions."
            )
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
